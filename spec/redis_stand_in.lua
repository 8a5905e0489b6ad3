-- redis_stand_in.lua - a Redis client over LuaSocket with the API of
-- ksms.redis (connect{ url, connect_timeout, read_timeout }, conn:call,
-- conn:eval(script, keys, args) by EVALSHA, conn:close), used by the specs
-- only while ksms.redis (the hiredis-backed client, branch resp) is not
-- there: outbox_stores.lua sets it as ksms.outbox.redis's client then.
-- Errors as ksms.redis gives them: the server's answer -> category
-- "server"; a connection that failed -> "network", maybe_sent = true.
local socket = require "socket"
local errors = require "ksms.errors"
local unpack = table.unpack or unpack

local M = {}

local Conn = {}
Conn.__index = Conn

local function net(self, why)
  if self.sock then self.sock:close() end
  self.sock = nil
  return nil, errors.new { category = "network", code = "redis", message = "redis: " .. tostring(why),
    retryable = true, maybe_sent = true }
end

local function encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(out)
end

local function read(self)
  local line, err = self.sock:receive("*l")
  if not line then return nil, err end
  local t, rest = line:sub(1, 1), line:sub(2)
  if t == "+" then return rest
  elseif t == "-" then return false, rest
  elseif t == ":" then return tonumber(rest)
  elseif t == "$" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local s, e2 = self.sock:receive(n + 2)
    if not s then return nil, e2 end
    return s:sub(1, n)
  elseif t == "*" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local arr = {}
    for i = 1, n do
      local v, e3 = read(self)
      if v == nil and e3 then return nil, e3 end
      if v == false then v = nil end
      arr[i] = v
    end
    return arr
  end
  return nil, "protocol: " .. line:sub(1, 40)
end

-- A reply, or nil (nil reply), or nil, err.
function Conn:call(...)
  if not self.sock then return net(self, "closed") end
  local ok, err = self.sock:send(encode({ ... }))
  if not ok then return net(self, err) end
  local v, rerr = read(self)
  if v == nil and rerr then return net(self, rerr) end
  if v == false then
    return nil, errors.new { category = "server", code = rerr and rerr:match("^(%u+)") or "ERR",
      message = "redis: " .. tostring(rerr), retryable = false }
  end
  return v
end

function Conn:eval(script, keys, args)
  local sha = self.shas[script]
  if not sha then
    local s, err = self:call("SCRIPT", "LOAD", script)
    if not s then return nil, err end
    sha = s
    self.shas[script] = sha
  end
  local cmd = { "EVALSHA", sha, #keys }
  for _, k in ipairs(keys) do cmd[#cmd + 1] = k end
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  local res, err = self:call(unpack(cmd))
  if res == nil and err and err.code == "NOSCRIPT" then
    self.shas[script] = nil
    return self:eval(script, keys, args)
  end
  return res, err
end

function Conn:close()
  if self.sock then self.sock:close() end
  self.sock = nil
end

function M.connect(opts)
  local host, port, db = opts.url:match("^redis://([^:/]+):(%d+)/?(%d*)$")
  if not host then error("redis_stand_in: bad url " .. tostring(opts.url), 2) end
  local sock = socket.tcp()
  sock:settimeout(opts.connect_timeout or 2)
  local self = setmetatable({ sock = sock, shas = {} }, Conn)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then return net(self, err) end
  sock:settimeout(opts.read_timeout or 5)
  if db ~= "" and db ~= "0" then
    local r, serr = self:call("SELECT", db)
    if not r then return nil, serr end
  end
  return self
end

return M
