--- ksms.oneshot.fleet.lock: a Redis lock with a TTL and a fencing token,
-- the one that says which process of a fleet holds an account's OneShot
-- connection.
--
--   local l = lock.new(conn, { key = "ns:acct:lock", fence_key = "ns:acct:fence",
--                              owner = "pid@host:rand", ttl = 10 })
--   l:acquire() -> true | false, holder | nil, err
--   l:renew()   -> true | false (lost: another holds it, or it expired) | nil, err
--   l:release() -> true (it was ours and is gone) | false | nil, err
--   l:fresh()   -> whether this process may still act as the holder
--   l.value, l.token: "<owner>:<token>" and the token of the current hold
--
-- The token comes from INCR on fence_key when the lock is taken, so every
-- hold has a larger one than the last. The lock key holds "<owner>:<token>"
-- and the outbox's fenced update (ksms.outbox.store, opts.fence) marks a
-- record `sending` only while the key still holds that value: a holder
-- that was paused past the TTL and lost the lock cannot mark, and so never
-- writes, another message.
--
-- fresh() is the local half: the hold is taken as valid until two thirds
-- of the TTL after the last acquire or renew was *sent* (monotonic time),
-- which is before Redis can let the key expire; callers renew every
-- quarter of the TTL, so one late renewal does not stop sending, and a
-- process that was paused finds its hold stale without asking Redis.
-- @module ksms.oneshot.fleet.lock
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"

local type, tostring, tonumber, setmetatable = type, tostring, tonumber, setmetatable
local floor = math.floor
local monotonic = core.monotonic
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

local L = {}
L.__index = L

-- KEYS: lock, fence. ARGV: owner, ttl ms. {1, value, token} taken; {0, holder}.
local ACQUIRE = [[
local cur = redis.call('GET', KEYS[1])
if cur then return { 0, cur } end
local token = redis.call('INCR', KEYS[2])
local v = ARGV[1] .. ':' .. token
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return { 1, v, token }
]]

local RENEW = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
]]

local RELEASE = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

--- A lock over a connected ksms.redis connection.
-- @param conn a ksms.redis connection
-- @tparam table opts key, fence_key, owner (strings), ttl (seconds, > 0)
-- @return the lock
function _M.new(conn, opts)
  if type(conn) ~= "table" or type(conn.eval) ~= "function" then misuse("ksms.oneshot.fleet.lock: a ksms.redis connection expected") end
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet.lock: options table expected") end
  for _, k in ipairs { "key", "fence_key", "owner" } do
    if type(opts[k]) ~= "string" or opts[k] == "" then misuse("ksms.oneshot.fleet.lock: " .. k .. " must be a string") end
  end
  if type(opts.ttl) ~= "number" or opts.ttl <= 0 then misuse("ksms.oneshot.fleet.lock: ttl must be seconds > 0") end
  return setmetatable({ conn = conn, key = opts.key, fence_key = opts.fence_key, owner = opts.owner,
    ttl = opts.ttl, ttl_ms = tostring(floor(opts.ttl * 1000 + 0.5)), value = nil, token = nil,
    valid_until = -1 }, L)
end

--- Takes the lock when nobody holds it.
-- @return true, or false and the holder's value, or nil, err (Redis failed)
function L:acquire()
  local sent = monotonic()
  local res, err = self.conn:eval(ACQUIRE, { self.key, self.fence_key }, { self.owner, self.ttl_ms })
  if res == nil then return nil, err end
  if type(res) ~= "table" then return nil, errors.new { category = "server", code = "bad_reply", provider = "redis",
    retryable = true, message = "the lock script answered " .. type(res) } end
  if res[1] ~= 1 then return false, type(res[2]) == "string" and res[2] or nil end
  self.value, self.token = res[2], tonumber(res[3])
  self.valid_until = sent + self.ttl * 2 / 3
  return true
end

--- Extends the hold by ttl.
-- @return true, or false (the lock is no longer ours), or nil, err
function L:renew()
  if not self.value then return false end
  local sent = monotonic()
  local res, err = self.conn:eval(RENEW, { self.key }, { self.value, self.ttl_ms })
  if res == nil then return nil, err end
  if res ~= 1 then
    self.valid_until = -1
    return false
  end
  self.valid_until = sent + self.ttl * 2 / 3
  return true
end

--- Lets the lock go when it is still ours (a standby takes it at once).
-- @return true, false, or nil, err
function L:release()
  local v = self.value
  self.value, self.valid_until = nil, -1
  if not v then return false end
  local res, err = self.conn:eval(RELEASE, { self.key }, { v })
  if res == nil then return nil, err end
  return res == 1
end

--- Whether this process may act as the holder now (see the module comment).
-- @treturn boolean
function L:fresh()
  return self.value ~= nil and monotonic() < self.valid_until
end

--- The fence the outbox's update checks: { key, value } of this hold.
-- @treturn table
function L:fence()
  return { key = self.key, value = self.value or "" }
end

return _M
