--- ksms.oneshot.sockets.core: the socket adapter over the core's blocking
-- TCP client (core.tcp_connect: every wait bounded by its timeout). The
-- interface every adapter has is described in ksms.oneshot.driver.
-- @module ksms.oneshot.sockets.core
-- @alias _M

local core = require "ksms.core"

local setmetatable = setmetatable
local tcp_connect = core.tcp_connect

local _M = { sleep = core.sleep }

local C = {}
C.__index = C

--- new{ read_timeout, write_timeout } -> an unconnected socket
function _M.new(opts)
  return setmetatable({ conn = nil, read_timeout = opts.read_timeout, write_timeout = opts.write_timeout }, C)
end

--- Connects with the core's TCP client.
-- @tparam string host
-- @tparam integer port
-- @tparam number timeout
-- @return true, or nil, err
function C:connect(host, port, timeout)
  local conn, err = tcp_connect(host, port, { connect_timeout = timeout,
    read_timeout = self.read_timeout, write_timeout = self.write_timeout })
  if not conn then return nil, err end
  self.conn = conn
  return true
end

--- Writes all of bytes within timeout.
-- @tparam string bytes
-- @tparam[opt] number timeout
-- @return true, or nil, err
function C:send(bytes, timeout)
  local conn = self.conn
  if timeout and timeout ~= self.write_timeout then
    self.write_timeout = timeout
    conn:settimeouts { write_timeout = timeout }
  end
  return conn:send(bytes)
end

--- Reads up to max bytes within timeout.
-- @tparam integer max
-- @tparam number timeout
-- @return data, or nil, "timeout" or an error
function C:receive(max, timeout)
  local data, err = self.conn:receive(max, timeout)
  if data then return data end
  if err.code == "timeout" then return nil, "timeout" end
  return nil, err
end

--- Closes the connection.
function C:close()
  if self.conn then self.conn:close(); self.conn = nil end
end

return _M
