-- outbox_stores.lua - the stores every outbox spec runs against, as a list,
-- so another store joins by adding an entry. Each entry:
--   name        shown in the spec's describe
--   new()       -> store spec for ksms.outbox.open, and a cleanup function
--   file        true when the store outlives its object (a file, a server)
--               so another outbox can open the same spec
-- The Redis entry starts one real redis-server on 127.0.0.1 (a temp dir, no
-- persistence) the first time a store is asked for, and gives each store a
-- fresh namespace. The server ends when the spec process does.
local M = {}

local function tmp_path()
  local p = os.tmpname() -- creates the file: the outbox wants its own name
  os.remove(p)
  return p .. ".outbox.db"
end

local redis_server -- the shared server of this spec process
local namespaces = 0

-- The shared redis-server (spec/redis_control.lua), started the first time
-- a store is asked for, and a watcher that stops it once this process is
-- gone (busted runs every spec file in one process; none stops it).
function M.redis()
  -- (a spec's redis_control.stop_all may have stopped it: then a new one)
  if redis_server and redis_server:command("PING") == "+PONG" then return redis_server end
  local core = require "ksms.core"
  redis_server = require("redis_control").start()
  os.execute(string.format("sh -c 'while kill -0 %d 2>/dev/null; do sleep 0.5; done; kill -9 %d; sleep 0.2; rm -rf %s' "
    .. ">/dev/null 2>&1 &", core.getpid(), redis_server.pid, redis_server.dir))
  return redis_server
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
local has = os.execute("command -v redis-server >/dev/null 2>&1")
M.has_redis = has == true or has == 0
if M.has_redis then
  M.list[#M.list + 1] = { name = "redis", file = true, new = function()
      local srv = M.redis()
      namespaces = namespaces + 1
      local ns = string.format("t%d-%d", require("ksms.core").getpid(), namespaces)
      return srv.url .. "?namespace=" .. ns, function() end
    end }
end

return M
