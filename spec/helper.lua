-- Loaded by busted before every spec (tools/run-specs.sh passes --helper).
-- Keeps specs independent of the caller's cjson settings and gives them a
-- few shared tools.
local cjson = require "cjson"

local H = {}

function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- The document's example frames, copied from shared/vectors (see spec/data/README.md).
function H.doc_frames()
  return cjson.decode(H.read_file("spec/data/oneshot_doc_frames.json")).frames
end

-- Runs a shell command, returns its stdout and whether it exited 0.
function H.run(cmd)
  local p = assert(io.popen(cmd .. "; echo \"::$?\""))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.*)::(%d+)%s*$")
  return body, tonumber(status) == 0
end

function H.tmpname()
  return os.tmpname()
end

package.loaded["spec_helper"] = H
return H
