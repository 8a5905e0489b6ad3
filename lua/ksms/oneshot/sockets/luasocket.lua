--- ksms.oneshot.sockets.luasocket: the socket adapter over LuaSocket
-- (Debian's lua-socket, require "socket"). The interface every adapter
-- has is described in ksms.oneshot.driver.
-- @module ksms.oneshot.sockets.luasocket
-- @alias _M

local socket = require "socket"

local setmetatable, tostring = setmetatable, tostring
local select_, tcp = socket.select, socket.tcp

local _M = { sleep = socket.sleep }

local L = {}
L.__index = L

--- A socket adapter over LuaSocket.
-- @return an adapter
function _M.new() return setmetatable({ sock = nil, list = {} }, L) end

--- Connects with LuaSocket.
-- @tparam string host
-- @tparam integer port
-- @tparam number timeout
-- @return true, or nil, err
function L:connect(host, port, timeout)
  local sock, err = tcp()
  if not sock then return nil, tostring(err) end
  sock:settimeout(timeout)
  local ok, cerr = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, tostring(cerr)
  end
  sock:setoption("tcp-nodelay", true)
  self.sock, self.list[1] = sock, sock
  return true
end

--- Writes all of bytes within one deadline.
-- @tparam string bytes
-- @tparam[opt] number timeout
-- @return true, or nil, err
function L:send(bytes, timeout)
  local sock = self.sock
  if not sock then return nil, "closed" end
  -- One deadline for the whole write (total), and each wait within it
  -- (block: receive leaves it at 0).
  sock:settimeout(timeout, "b")
  sock:settimeout(timeout, "t")
  local n, err = sock:send(bytes)
  if n then return true end
  return nil, err
end

--- Whatever is available, waiting at most timeout: select, then a read that
-- does not wait (LuaSocket's own receive(n) waits for all n bytes).
function L:receive(max, timeout)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if not sock:dirty() then
    local ready, _, err = select_(self.list, nil, timeout)
    if not ready[1] then return nil, (err == nil or err == "timeout") and "timeout" or err end
  end
  sock:settimeout(0)
  local data, err, partial = sock:receive(max)
  if data then return data end
  -- A close with bytes still unread: they first, the close on the next call.
  if partial and partial ~= "" then return partial end
  return nil, err
end

--- Closes the connection.
function L:close()
  if self.sock then self.sock:close(); self.sock, self.list[1] = nil, nil end
end

return _M
