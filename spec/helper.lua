-- Loaded by busted before every spec (tools/run-specs.sh passes --helper).
-- Keeps specs independent of the caller's cjson settings and gives them a
-- few shared tools.
local cjson = require "cjson"

local H = {}

function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
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
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)::(%d+)%s*$")
  return body, tonumber(status) == 0
end

-- A fake's recorded form as its names in order and a name -> value map.
function H.form_of(req)
  local names, values = {}, {}
  for i, pair in ipairs(req.form) do names[i] = pair[1]; values[pair[1]] = pair[2] end
  return names, values
end

-- One HTTP/1.1 response read from a LuaSocket: status, headers
-- (lowercased), body; or nil, err.
function H.read_response(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.1 (%d%d%d)"))
  if not status then return nil, "not HTTP: " .. line end
  local headers = {}
  while true do
    local h, herr = sock:receive("*l")
    if not h then return nil, herr end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.*)$")
    headers[name:lower()] = value
  end
  local body = ""
  local length = tonumber(headers["content-length"] or "0")
  if length > 0 then
    local berr
    body, berr = sock:receive(length)
    if not body then return nil, berr end
  end
  return status, headers, body
end

-- os.execute's success under Lua 5.4 (true) and Lua 5.1 / LuaJIT (0).
function H.exec_ok(cmd)
  local a = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true
end

-- A TCP port on 127.0.0.1 that nothing listens on (just now).
function H.free_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Runs the Lua file `script` (with args, a string for the shell) under
-- interpreter `lua` with ksms.core built by clang with UBSan, which sees
-- what GCC's UBSan in `make asan-run` does not (NULL + 0 pointer
-- arithmetic, float-to-integer casts out of range). Returns its output
-- and whether it exited 0, or nothing when clang is not installed. The
-- build goes to build/ubsan-clang-<lua> and is incremental.
function H.run_ubsan_clang(lua, script, args)
  local rt = H.run("clang -print-file-name=libclang_rt.ubsan_standalone-x86_64.so 2>/dev/null")
  rt = rt and rt:match("^(/%S+)")
  if not rt then return end
  local build = "build/ubsan-clang-" .. lua
  local log, built = H.run(("env -u LD_PRELOAD make -s LUA=%s BUILD=%s CC=clang "
    .. "OPTFLAGS='-O1 -g -fno-omit-frame-pointer -fsanitize=undefined -fno-sanitize-recover=all' build 2>&1")
    :format(lua, build))
  assert(built, log)
  return H.run(("env -u LD_PRELOAD LD_PRELOAD=%s UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "
    .. "LUA_CPATH='%s/?.so;;' %s %s %s 2>&1"):format(rt, build, lua, script, args or ""))
end

-- Calls pred every `interval` seconds (0.01) until it returns a true
-- value, which it returns; raises "timed out waiting for <what>" after
-- `seconds`.
function H.wait_until(what, seconds, pred, interval)
  local socket = require "socket"
  local deadline = socket.gettime() + seconds
  while true do
    local v = pred()
    if v then return v end
    if socket.gettime() > deadline then error("timed out waiting for " .. what, 2) end
    socket.sleep(interval or 0.01)
  end
end

-- base with overrides applied (an override of false removes the key).
function H.merged(base, overrides)
  local map = {}
  for k, v in pairs(base) do map[k] = v end
  for k, v in pairs(overrides or {}) do map[k] = v or nil end
  return map
end

-- A map as a list of { key, value } pairs sorted by key (a form's fields).
function H.sorted_pairs(map)
  local list = {}
  for k, v in pairs(map) do list[#list + 1] = { k, v } end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end

function H.tmpname()
  return os.tmpname()
end

-- s quoted for sh (single quotes).
function H.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A new empty directory under /tmp.
function H.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(H.exec_ok("mkdir -p " .. H.shell_quote(d)))
  return d
end

-- A file's bytes, or "" when it cannot be read.
function H.file_or_empty(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Starts `lua script args...` in the background (sh -c ... &), its output
-- in dir/name.log; the password, when given, comes from password_file into
-- KSMS_ONESHOT_PASSWORD (never on a command line). Returns { name, pid,
-- log } once the process wrote its pid. (The fleet's bench and demo.)
function H.spawn_logged(dir, name, lua, script, args, password_file)
  local q = H.shell_quote
  local log, pidfile = dir .. "/" .. name .. ".log", dir .. "/" .. name .. ".pid"
  local argv = { q(lua), q(script) }
  for _, a in ipairs(args) do argv[#argv + 1] = q(a) end
  local env = "LUA_PATH=" .. q(package.path) .. " LUA_CPATH=" .. q(package.cpath)
  if password_file then env = env .. ' KSMS_ONESHOT_PASSWORD="$(cat ' .. q(password_file) .. ')"' end
  local inner = "echo $$ > " .. q(pidfile) .. "; " .. env .. " exec " .. table.concat(argv, " ")
    .. " > " .. q(log) .. " 2>&1"
  assert(os.execute("sh -c " .. q(inner) .. " &"))
  local core = require "ksms.core"
  local deadline, pid = core.monotonic() + 5, nil
  repeat
    pid = tonumber(H.file_or_empty(pidfile))
    if not pid then core.sleep(0.01) end
  until pid or core.monotonic() > deadline
  assert(pid, name .. " did not start")
  return { name = name, pid = pid, log = log }
end

-- Whether pid runs (a zombie, exited and not yet reaped, does not).
function H.alive(pid)
  local state = H.file_or_empty("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Every form a secret can take in an output, computed here (not by the
-- masker): raw, Base64 (padded or not, URL-safe), hex, each percent-encoded
-- the ways encoders do it (WHATWG forms, RFC 3986, "/" kept as Python's
-- quote does; upper- or lower-case hex), encoded twice, and JSON-escaped.
local function pct(s, keep, lower)
  return (s:gsub("[^%w" .. keep .. "]", function(c)
    local h = ("%%%02X"):format(c:byte())
    return lower and h:lower() or h
  end))
end
function H.secret_encodings(secret)
  local b64 = require("ksms.core").b64encode(secret)
  local bare = b64:gsub("=+$", "")
  local hex = secret:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  local list = { secret, b64, bare, (bare:gsub("%+", "-"):gsub("/", "_")), hex, hex:upper(),
    (b64:gsub("/", "\\/")), (secret:gsub("/", "\\/")) }
  for _, base in ipairs({ secret, b64 }) do
    for _, lower in ipairs({ false, true }) do
      list[#list + 1] = (pct(base, "%-%._%*", lower):gsub("%%20", "+")) -- WHATWG form
      list[#list + 1] = pct(base, "%-%._~", lower)                        -- RFC 3986
      list[#list + 1] = pct(base, "%-%._~/", lower)                       -- "/" kept
    end
  end
  list[#list + 1] = pct(pct(b64, "%-%._~"), "%-%._~") -- encoded twice
  return list
end

-- Every run of 8 bytes of every form of secret, Base64 padding left off:
-- none may appear in an output (a quoted answer may be cut inside a form,
-- and forms that share a start must not leave each other's tails).
-- Returns a list of { piece, form }.
function H.secret_pieces(secret)
  local out = {}
  for _, form in ipairs(H.secret_encodings(secret)) do
    local bare = form
    repeat
      local before = bare
      bare = bare:gsub("=$", ""):gsub("%%3[Dd]$", ""):gsub("%%253D$", "")
    until bare == before
    for i = 1, #bare - 7 do out[#out + 1] = { bare:sub(i, i + 7), form } end
  end
  return out
end

-- A deep copy of plain data (the fakes' own, for specs that mutate seeds).
function H.deep_copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = H.deep_copy(x) end
  return t
end

-- The OneShot specs' session options against a fake (short reconnect and
-- connect timeouts), with extra merged in; and their usual message.
function H.oneshot_options(fake, extra)
  local o = fake:session_options { reconnect_delay = 0.2, connect_timeout = 2 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

function H.oneshot_msg(id, text)
  return { to = "01012345678", from = "15666639", text = text or ("메시지 " .. id), user_msg_id = id }
end

-- How many times each text reached a Senders fake's sms_send: text ->
-- count; with pattern, keyed by its capture instead (texts that do not
-- match are left out).
function H.senders_texts(fake, pattern)
  local seen = {}
  for _, r in ipairs(fake:requests("/APIV2/sms_send")) do
    local _, fields = H.form_of(r)
    local k = fields.msg
    if pattern then k = (k or ""):match(pattern) end
    if k then seen[k] = (seen[k] or 0) + 1 end
  end
  return seen
end

-- Specs know it as spec_helper; fake_control and nginx_control, which the
-- benchmarks load too (no busted helper there), require it as helper.
package.loaded["spec_helper"] = H
package.loaded["helper"] = H
return H
