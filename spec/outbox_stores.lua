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

-- Starts a redis-server on 127.0.0.1 (opts.port, or a free one; opts.aof:
-- appendonly with appendfsync always, in opts.dir; opts.remove_dir: the
-- temp dir goes with the server), watched by a shell loop
-- that stops it when this process is gone (a spec that crashes leaves
-- nothing running). Returns { port, url, dir, pid, stop = fn }.
function M.start_redis(opts)
  opts = opts or {}
  local core = require "ksms.core"
  local socket = require "socket"
  local dir = opts.dir
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end
  local port = opts.port or free_port()
  local persist = opts.aof and "--appendonly yes --appendfsync always" or "--appendonly no"
  local cmd = string.format("exec redis-server --bind 127.0.0.1 --port %d --dir %s --save '' %s "
    .. "--daemonize no --logfile %s/redis.log", port, dir, persist, dir)
  os.execute(string.format("sh -c '(%s) & r=$!; echo $r > %s/pid.%d; while kill -0 %d 2>/dev/null && kill -0 $r 2>/dev/null; "
    .. "do sleep 0.5; done; kill $r 2>/dev/null; %s' >/dev/null 2>&1 &", (cmd:gsub("'", "'\\''")), dir, port, core.getpid(),
    opts.remove_dir and ("sleep 1; rm -rf " .. dir) or ":"))
  local deadline = socket.gettime() + 10
  while true do
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then break end
    assert(socket.gettime() < deadline, "redis-server did not start on port " .. port)
    socket.sleep(0.02)
  end
  local pid
  while not pid do
    local f = io.open(dir .. "/pid." .. port)
    if f then pid = tonumber(f:read("*a")); f:close() end
    if not pid then assert(socket.gettime() < deadline, "no redis-server pid"); socket.sleep(0.01) end
  end
  local srv = { port = port, dir = dir, pid = pid, url = "redis://127.0.0.1:" .. port .. "/0" }
  -- kill -9 (nothing flushed beyond what AOF always wrote), then wait for the port to close.
  function srv.stop()
    os.execute("kill -9 " .. pid .. " 2>/dev/null")
    local until_t = socket.gettime() + 5
    while socket.gettime() < until_t do
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect("127.0.0.1", port)
      c:close()
      if not ok then break end
      socket.sleep(0.02)
    end
  end
  return srv
end

-- The shared server of this spec process, started the first time.
function M.redis()
  if not redis_server then redis_server = M.start_redis { remove_dir = true } end
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
local has = os.execute("command -v redis-server >/dev/null 2>&1")
M.has_redis = has == true or has == 0
M.redis_client = redis_client
if M.has_redis then
  M.list[#M.list + 1] = { name = "redis", file = true, new = function()
      redis_client()
      local srv = M.redis()
      namespaces = namespaces + 1
      local ns = string.format("t%d-%d", require("ksms.core").getpid(), namespaces)
      return srv.url .. "?namespace=" .. ns, function() end
    end }
end

return M
