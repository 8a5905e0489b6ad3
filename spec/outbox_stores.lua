-- outbox_stores.lua - the stores every outbox spec runs against, as a list,
-- so another store joins by adding an entry. Each entry:
--   name        shown in the spec's describe
--   new()       -> store spec for ksms.outbox.open, and a cleanup function
--   file        true when the store outlives its object (a file, a server)
--               so another outbox can open the same spec
-- The Redis entry starts one real redis-server on 127.0.0.1 (a temp dir, no
-- persistence) the first time a spec file asks for a store, and gives each
-- store a fresh namespace. The server ends when the spec process does.
local M = {}

local function tmp_path()
  local p = os.tmpname() -- creates the file: the outbox wants its own name
  os.remove(p)
  return p .. ".outbox.db"
end

local redis_server -- { port, dir, pid }
local namespaces = 0

local function free_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Starts redis-server once, watched by a shell loop that stops it when this
-- process is gone (a spec that crashes leaves nothing running).
function M.redis()
  if redis_server then return redis_server end
  local core = require "ksms.core"
  local socket = require "socket"
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local port = free_port()
  local cmd = string.format("redis-server --bind 127.0.0.1 --port %d --dir %s --save '' --appendonly no "
    .. "--daemonize no --logfile %s/redis.log", port, dir, dir)
  os.execute(string.format("sh -c '%s & r=$!; echo $r > %s/pid; while kill -0 %d 2>/dev/null && kill -0 $r 2>/dev/null; "
    .. "do sleep 0.5; done; kill $r 2>/dev/null; rm -rf %s' >/dev/null 2>&1 &", cmd:gsub("'", "'\\''"), dir, core.getpid(), dir))
  local deadline = socket.gettime() + 10
  while true do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then c:close(); break end
    c:close()
    assert(socket.gettime() < deadline, "redis-server did not start on port " .. port)
    socket.sleep(0.05)
  end
  redis_server = { port = port, dir = dir, url = "redis://127.0.0.1:" .. port .. "/0" }
  return redis_server
end

-- ksms.redis when it is there; the specs' LuaSocket stand-in until then.
local function redis_client()
  local rs = require "ksms.outbox.redis"
  local ok, lib = pcall(require, "ksms.redis")
  if not (ok and type(lib) == "table" and type(lib.connect) == "function") then
    rs.client = require "redis_stand_in"
  end
end

M.list = {
  { name = "memory", new = function() return "memory", function() end end },
  { name = "sqlite", file = true, new = function()
      local path = tmp_path()
      return "sqlite:" .. path, function()
        for _, s in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(path .. s) end
      end, path
    end },
}

-- The Redis store, where redis-server is installed (make test installs it).
if os.execute("command -v redis-server >/dev/null 2>&1") == true or os.execute("command -v redis-server >/dev/null 2>&1") == 0 then
  M.list[#M.list + 1] = { name = "redis", file = true, new = function()
      redis_client()
      local srv = M.redis()
      namespaces = namespaces + 1
      local ns = string.format("t%d-%d", require("ksms.core").getpid(), namespaces)
      return srv.url .. "?namespace=" .. ns, function() end
    end }
end

return M
