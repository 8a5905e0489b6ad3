--- ksms.oneshot.sockets.cosocket: the socket adapter over an OpenResty
-- cosocket (ngx.socket.tcp), for one nginx timer or handler (a cosocket
-- lives and dies with the light thread that made it). Every wait yields
-- to nginx; nothing blocks the worker. The interface every adapter has is
-- described in ksms.oneshot.driver.
--
-- Reading: a light thread blocks in receiveany(65536) and hands the bytes
-- over through a semaphore, because a cosocket read timeout, although it
-- leaves the cosocket open, is logged at error level on every expiry;
-- waiting on the semaphore with a timeout logs nothing. The cosocket is
-- full-duplex, so the caller writes while the reader waits. The reader's
-- own read timeout (read_timeout) is only a backstop: the protocol's
-- keepalive makes the server answer at least every keepalive_interval.
-- close() must run in the light thread that called connect (it kills the
-- reader, which only its parent may do).
-- @module ksms.oneshot.sockets.cosocket
-- @alias _M

-- Loads outside nginx too (every module of ksms does); ngx is looked up
-- when used.
local setmetatable, tostring, floor, require = setmetatable, tostring, math.floor, require
local concat = table.concat
local semaphore

-- At least 1 ms: nginx rounds a shorter sleep to ngx.sleep(0), which
-- does not wait (a caller's loop spins) and, without OpenResty's delayed
-- events patch, logs a warning each time.
local _M = { sleep = function(seconds) return ngx.sleep(seconds < 0.001 and 0.001 or seconds) end }

local C = {}
C.__index = C

--- new{ read_timeout, write_timeout } -> an unconnected socket
function _M.new(opts)
  return setmetatable({ sock = nil, reader = nil, sema = nil, inbox = {}, err = nil,
    read_ms = floor((opts.read_timeout or 95) * 1000), send_ms = floor((opts.write_timeout or 10) * 1000) }, C)
end

local function reader(self, sock)
  while true do
    local data, err = sock:receiveany(65536)
    if data then
      local inbox = self.inbox
      inbox[#inbox + 1] = data
      self.sema:post(1)
    elseif err ~= "timeout" then
      self.err = err
      self.sema:post(1)
      return
    end
  end
end

--- Connects an OpenResty cosocket and starts its reader thread.
-- @tparam string host
-- @tparam integer port
-- @tparam number timeout
-- @return true, or nil, err
function C:connect(host, port, timeout)
  local sock = ngx.socket.tcp()
  self.connect_ms = floor(timeout * 1000)
  sock:settimeouts(self.connect_ms, self.send_ms, self.read_ms)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, tostring(err) end
  self.sock, self.err, self.inbox = sock, nil, {}
  semaphore = semaphore or require "ngx.semaphore"
  self.sema = semaphore.new(0)
  self.reader = ngx.thread.spawn(reader, self, sock)
  return true
end

--- Writes all of bytes within timeout.
-- @tparam string bytes
-- @tparam[opt] number timeout
-- @return true, or nil, err
function C:send(bytes, timeout)
  local sock = self.sock
  if not sock then return nil, "closed" end
  local ms = timeout and floor(timeout * 1000) or self.send_ms
  if ms ~= self.send_ms then
    self.send_ms = ms
    sock:settimeouts(self.connect_ms, ms, self.read_ms)
  end
  local ok, err = sock:send(bytes)
  if ok then return true end
  return nil, tostring(err)
end

--- Waits up to timeout for what the reader thread got.
-- @tparam integer max
-- @tparam number timeout
-- @return data, or nil, "timeout" or an error
function C:receive(max, timeout)
  if not self.inbox[1] and not self.err and timeout > 0 then
    -- At least 1 ms: shorter rounds to 0, which returns without yielding.
    local t = timeout < 0.001 and 0.001 or timeout
    -- The reader posts once per chunk and a read takes every chunk there
    -- is, so a count can be stale (its chunk went with an earlier read):
    -- waking on one with nothing come, wait again. Stale counts return at
    -- once, so the whole wait stays about t.
    local ok = self.sema:wait(t)
    while ok and not self.inbox[1] and not self.err do ok = self.sema:wait(t) end
  end
  local inbox = self.inbox
  if inbox[1] then
    local data = #inbox == 1 and inbox[1] or concat(inbox)
    if #data > max then
      self.inbox = { data:sub(max + 1) }
      return data:sub(1, max)
    end
    self.inbox = {}
    return data
  end
  if self.err then return nil, self.err end
  return nil, "timeout"
end

--- Stops the reader thread and closes the cosocket.
function C:close()
  if self.reader then ngx.thread.kill(self.reader); self.reader = nil end
  if self.sock then self.sock:close(); self.sock = nil end
end

return _M
