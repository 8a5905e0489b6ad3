--- ksms.ngx.queue: the shared-dictionary side of ksms.ngx.oneshot. Every
-- worker sees the same lua_shared_dict, so handlers in any worker queue
-- messages here and the one worker holding the lock takes them out.
-- Keys (all under `prefix`, "ksms:" by default):
--
--   q          a dict list of queued messages, JSON { h =, m =, t = }
--   o:<h>      the outcome of message h: "" while pending (also the guard
--              against two pending messages with one id), then JSON
--              { r = result } or { e = error }, kept outcome_ttl seconds
--   c:<h>      a claim: the binder took h (the message JSON) or wrote it
--              ("s"); a new holder turns left-over claims of a crashed one
--              back into queued messages or maybe-sent outcomes
--   lock       the binder lock (a token, with a TTL); clean: set when the
--              last holder released it after handing everything back
--   seq, epoch ids;  grant, state  what the binder last published;
--   n:<name>   counters (submitted, taken, outcomes, handed_back, ...)
--
--   local q = queue.new(ngx.shared.ksms_oneshot, { prefix, queue_limit,
--     outcome_ttl, pending_ttl })
--   q:push(handle, json) -> true | nil, err   (rate_limit, duplicate)
--   q:pop() -> json | nil;  q:unpop(list)     (back at the head, in order)
--   q:put_outcome(h, json) -> true (written) | false (had one already)
--   q:get_outcome(h) -> json | "" (pending) | nil (unknown or expired)
--   q:claim(h, v), q:claimed(h), q:unclaim(h), q:claims() -> { [h] = v }
--   q:acquire(token, ttl), q:refresh(token, ttl), q:release(token, clean)
--   q:next_id(), q:count(name), q:counters(), q:length()
-- @module ksms.ngx.queue
-- @alias _M

local errors = require "ksms.errors"

local type, pairs, tostring, setmetatable, error = type, pairs, tostring, setmetatable, error
local format, sub = string.format, string.sub

local _M = { _VERSION = "0.2.0" }

local Q = {}
Q.__index = Q

local COUNTERS = { "submitted", "taken", "outcomes", "outcome_repeats", "handed_back",
  "recovered", "recovered_maybe_sent", "binds", "lost", "acquired", "bad_entries" }
_M.counter_names = COUNTERS

--- The binder's queue over a lua_shared_dict.
-- @param dict the shared dict
-- @tparam[opt] table opts
-- @return a queue
function _M.new(dict, opts)
  if type(dict) ~= "table" and type(dict) ~= "userdata" then
    error("ksms.ngx.queue: a lua_shared_dict is required", 2)
  end
  opts = opts or {}
  local p = opts.prefix or "ksms:"
  return setmetatable({
    dict = dict, prefix = p, qkey = p .. "q", lock = p .. "lock", clean = p .. "clean",
    limit = opts.queue_limit or 10000,
    outcome_ttl = opts.outcome_ttl or 600,
    pending_ttl = opts.pending_ttl or 3600,
  }, Q)
end

local function rate_limit(code, message)
  return nil, errors.new { category = "rate_limit", code = code, provider = "oneshot",
    retryable = true, message = message }
end

-- ---- the queue ----

--- Messages waiting.
-- @treturn integer
function Q:length() return self.dict:llen(self.qkey) or 0 end

--- Queues a message's JSON under its handle.
-- @tparam string h
-- @tparam string json
-- @return true, or nil, err when full
function Q:push(h, json)
  local d = self.dict
  -- Checked before the add; concurrent submits in other workers may pass
  -- it together, so the limit can be exceeded by at most one per worker.
  if (d:llen(self.qkey) or 0) >= self.limit then
    return rate_limit("queue_full", format("the shared queue holds %d messages (queue_limit)", self.limit))
  end
  -- safe_*: a full dictionary must refuse, not evict (the queue list,
  -- the lock or another message's outcome could go).
  local ok, err = d:safe_add(self.prefix .. "o:" .. h, "", self.pending_ttl)
  if not ok then
    if err == "exists" then
      return nil, errors.new { category = "duplicate", code = "duplicate_id", provider = "oneshot",
        message = "a message with id '" .. h .. "' is already queued, in flight or answered" }
    end
    return rate_limit("no_memory", "the shared dictionary is full: " .. tostring(err))
  end
  local n, perr = d:rpush(self.qkey, json)
  if not n then
    d:delete(self.prefix .. "o:" .. h)
    return rate_limit("no_memory", "the shared dictionary is full: " .. tostring(perr))
  end
  self:count("submitted")
  return true
end

--- Takes the message at the head.
-- @treturn ?string
function Q:pop() return self.dict:lpop(self.qkey) end

--- list[1] ends up at the head, list[2] after it, ...
function Q:unpop(list)
  local d = self.dict
  for i = #list, 1, -1 do
    local ok, err = d:lpush(self.qkey, list[i])
    if not ok then ngx.log(ngx.ERR, "ksms.ngx.oneshot: a message could not be put back: ", err) end
  end
end

-- ---- outcomes ----

--- Stores a message's outcome for the handler waiting on it.
-- @tparam string h
-- @tparam string json
function Q:put_outcome(h, json)
  local d, k = self.dict, self.prefix .. "o:" .. h
  -- One writer at a time holds the lock; get-then-set does not yield.
  local cur = d:get(k)
  if cur ~= nil and cur ~= "" then
    self:count("outcome_repeats")
    return false
  end
  local ok, err = d:safe_set(k, json, self.outcome_ttl)
  if not ok then
    ngx.log(ngx.ERR, "ksms.ngx.oneshot: the outcome of ", h, " could not be stored: ", err)
    return false
  end
  self:count("outcomes")
  return true
end

--- A message's outcome JSON, nil while pending.
-- @tparam string h
-- @treturn ?string
function Q:get_outcome(h) return self.dict:get(self.prefix .. "o:" .. h) end

-- ---- claims ----

--- Records that the holder has taken a message.
-- @tparam string h
-- @param v
function Q:claim(h, v)
  local ok, err = self.dict:safe_set(self.prefix .. "c:" .. h, v)
  if not ok then ngx.log(ngx.ERR, "ksms.ngx.oneshot: cannot record the claim of ", h, ": ", err) end
end
--- Whether a message is claimed.
-- @tparam string h
-- @treturn boolean
function Q:claimed(h) return self.dict:get(self.prefix .. "c:" .. h) ~= nil end
--- Drops a message's claim.
-- @tparam string h
function Q:unclaim(h) self.dict:delete(self.prefix .. "c:" .. h) end

--- All claims: scans every key (locks the dictionary for the scan), so it
-- runs only when a holder starts after one that did not stop cleanly.
function Q:claims()
  local d, pre = self.dict, self.prefix .. "c:"
  local out, n = {}, #pre
  for _, k in pairs(d:get_keys(0)) do
    if sub(k, 1, n) == pre then
      local v = d:get(k)
      if v then out[sub(k, n + 1)] = v end
    end
  end
  return out
end

-- ---- the lock ----

--- Takes the binder lock for ttl seconds.
-- @tparam string token
-- @tparam number ttl
-- @treturn boolean
function Q:acquire(token, ttl)
  return (self.dict:safe_add(self.lock, token, ttl)) and true or false
end

--- Only while the value is still ours: a holder stalled past the TTL has
-- lost it and must stop.
function Q:refresh(token, ttl)
  local d = self.dict
  if d:get(self.lock) ~= token then return false end
  return (d:safe_set(self.lock, token, ttl)) and true or false
end

--- Gives the lock back if token holds it.
-- @tparam string token
-- @tparam[opt] boolean clean a clean stop
-- @treturn boolean
function Q:release(token, clean)
  local d = self.dict
  if d:get(self.lock) ~= token then return false end
  if clean then d:safe_set(self.clean, true) end
  d:delete(self.lock)
  return true
end

--- true when the last holder stopped cleanly (and forgets it).
function Q:take_clean()
  local d = self.dict
  local v = d:get(self.clean)
  d:delete(self.clean)
  return v == true
end

--- The token holding the lock, if any.
-- @treturn ?string
function Q:holder() return self.dict:get(self.lock) end

-- ---- ids, counters, published state ----

--- <epoch>-<n>: at most 20 characters (UserMsgId's limit); the epoch is
-- made once per dictionary, so ids stay unique across reloads (the
-- dictionary survives them) and restarts (a new epoch).
function Q:next_id()
  local d = self.dict
  local epoch = self.epoch
  if not epoch then
    d:safe_add(self.prefix .. "epoch", format("%07x%02x", ngx.time() % 0x10000000, ngx.worker.pid() % 256))
    epoch = d:get(self.prefix .. "epoch")
    self.epoch = epoch
  end
  return epoch .. "-" .. tostring(self:_incr(self.prefix .. "seq", 1))
end

-- incr with an init value may evict; adding the key first never does.
function Q:_incr(k, n)
  local d = self.dict
  local v = d:incr(k, n)
  if v then return v end
  d:safe_add(k, 0)
  return d:incr(k, n)
end

--- Adds n (1) to a shared counter.
-- @tparam string name
-- @tparam[opt] integer n
function Q:count(name, n) self:_incr(self.prefix .. "n:" .. name, n or 1) end

--- Every shared counter.
-- @treturn table name -> count
function Q:counters()
  local out = {}
  for _, name in pairs(COUNTERS) do out[name] = self.dict:get(self.prefix .. "n:" .. name) or 0 end
  return out
end

--- Publishes a value in the dict.
-- @tparam string name
-- @param value
-- @tparam[opt] number ttl
function Q:set(name, value, ttl) self.dict:safe_set(self.prefix .. name, value, ttl) end
--- A published value.
-- @tparam string name
function Q:get(name) return self.dict:get(self.prefix .. name) end

return _M
