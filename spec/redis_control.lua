-- redis_control.lua - start and stop a real redis-server (Debian's
-- redis-server 7) on 127.0.0.1 for a spec, on a free port with its own temp
-- directory. Talks to it over raw LuaSocket, never through ksms.
--
--   local rc = require "redis_control"
--   local srv = rc.start{ password = "s3cret", aof = true }   -- raises if it won't start
--   srv.port, srv.url, srv.dir, srv.pid
--   srv:command("SET", "k", "v")   -- one command, the raw reply text
--   srv:kill("KILL")               -- a signal (KILL, STOP, CONT, TERM)
--   srv:stop()                     -- SHUTDOWN NOSAVE / kill -9, waits, removes the dir
--   rc.stop_all()                  -- for teardown
--
-- opts: port (a free one), password (requirepass), aof (appendonly yes,
-- appendfsync always), dir (reuse a directory: a restart with the same data).
local socket = require "socket"
local helper = require "helper"

local _M = {}
local running = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Server = {}
Server.__index = Server

-- One command over a fresh connection (AUTH first when there is a
-- password); the reply's raw text, or nil, err.
function Server:command(...)
  local sock = socket.tcp()
  sock:settimeout(2)
  local ok, err = sock:connect("127.0.0.1", self.port)
  if not ok then sock:close(); return nil, err end
  local function send(args)
    local parts = { "*" .. #args .. "\r\n" }
    for _, a in ipairs(args) do
      a = tostring(a)
      parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
    end
    sock:send(table.concat(parts))
  end
  if self.password then
    send { "AUTH", self.password }
    sock:receive("*l")
  end
  send { ... }
  local line, rerr = sock:receive("*l")
  sock:close()
  return line, rerr
end

-- Running (a zombie is not: the server's parent shell is gone, and
-- whoever adopts it may reap it late).
function Server:alive()
  local f = io.open("/proc/" .. self.pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

function Server:kill(sig)
  os.execute("kill -" .. (sig or "KILL") .. " " .. self.pid .. " 2>/dev/null")
end

local function wait(pred, seconds)
  local deadline = socket.gettime() + seconds
  while not pred() do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.02)
  end
  return true
end

-- Stops the server (and removes its directory unless keep_dir).
function Server:stop(keep_dir)
  if self.stopped then return end
  self.stopped = true
  running[self] = nil
  if self:alive() then
    self:kill("CONT")
    self:command("SHUTDOWN", "NOSAVE")
    if not wait(function() return not self:alive() end, 3) then
      self:kill("KILL")
      wait(function() return not self:alive() end, 3)
    end
  end
  if not keep_dir and self.own_dir and self.dir:match("^/tmp/") then
    os.execute("rm -rf " .. q(self.dir))
  end
end

function _M.start(opts)
  opts = opts or {}
  local port = opts.port or helper.free_port()
  local dir = opts.dir
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    assert(helper.exec_ok("mkdir -m 700 " .. q(dir)), "redis_control: cannot create " .. dir)
  end
  local args = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir,
    "--save", "''", "--daemonize", "no", "--logfile", "redis.log", "--protected-mode", "no" }
  if opts.aof then
    args[#args + 1] = "--appendonly yes --appendfsync always"
  else
    args[#args + 1] = "--appendonly no"
  end
  if opts.password then args[#args + 1] = "--requirepass " .. q(opts.password) end
  local cmd = {}
  for i, a in ipairs(args) do cmd[i] = tostring(a) end
  -- The shell's pid is redis-server's (exec); it runs in the background.
  local pidfile = dir .. "/spec.pid"
  assert(helper.exec_ok("sh -c " .. q("echo $$ > " .. q(pidfile) .. "; exec " .. table.concat(cmd, " ")
    .. " >/dev/null 2>&1") .. " &"))
  local srv = setmetatable({ port = port, dir = dir, password = opts.password,
    url = "redis://127.0.0.1:" .. port .. "/0", own_dir = opts.dir == nil }, Server)
  local ok = wait(function()
    local f = io.open(pidfile)
    if not f then return false end
    srv.pid = tonumber(f:read("*l") or "")
    f:close()
    if not srv.pid then return false end
    local line = srv:command("PING")
    return line == "+PONG"
  end, 10)
  if not ok then
    local f = io.open(dir .. "/redis.log")
    local log = f and f:read("*a") or ""
    if f then f:close() end
    if srv.pid then srv:kill("KILL") end
    error("redis-server did not start on port " .. port .. ": " .. log, 2)
  end
  running[srv] = true
  return srv
end

function _M.stop_all()
  for srv in pairs(running) do srv:stop() end
end

return _M
