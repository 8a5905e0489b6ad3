--- ksms.oneshot.pacer: spaces sends so that no 1-second window, however
-- placed, holds more than `rate` of them. Sans-I/O: time goes in.
--
--   local p = pacer.new(rate, { margin = 0.015, max_lag = 0.05 })
--   p:next_time()      -> the earliest time the next send is allowed
--   p:take(now)        -> true (and records a send at now) | false
--   p:pause(until_t)   -> no send before until_t (after a 903 from the server)
--   p:restamp(t)       -> the last send went out at t, later than taken
--   p:reset()          -> forgets past sends (a new connection)
--
-- Sends are spread evenly on a schedule of one slot every (1 + margin) /
-- rate seconds. A poll that comes late (timers and poll(2) have millisecond
-- granularity, 1 ms is a whole slot at Speed 1000) may use the slots it
-- missed, but only those of the last max_lag seconds: a process stalled for
-- up to 50 ms catches up, one idle for longer does not burst. The hard
-- guard is exact: the send `rate` sends back must be at least 1 + margin
-- seconds old, so no window of that length, however placed, holds more than
-- `rate` sends. margin absorbs jitter between when we write and when the
-- server counts: the default 0.015 tolerates 15 ms of it and still uses
-- 98.5% of the Speed.
-- @module ksms.oneshot.pacer
-- @alias _M

local _M = { _VERSION = "0.2.0" }

local Pacer = {}
Pacer.__index = Pacer

--- A pacer for rate sends a second.
-- @tparam number rate
-- @tparam[opt] table opts margin (0.015), max_lag (0.05)
-- @return a pacer
function _M.new(rate, opts)
  if type(rate) ~= "number" or not (rate > 0) then error("ksms.oneshot.pacer: rate must be > 0", 2) end
  local margin = opts and opts.margin or 0.015
  local max_lag = opts and opts.max_lag or 0.05
  if type(margin) ~= "number" or margin < 0 or margin >= 1 then
    error("ksms.oneshot.pacer: margin must be in [0, 1)", 2)
  end
  rate = math.max(1, math.floor(rate))
  return setmetatable({
    rate = rate,
    interval = (1 + margin) / rate,
    window = 1 + margin,
    ring = {}, -- the last `rate` send times, ring[pos] the oldest once full
    pos = 1, count = 0,
    slot = nil, max_lag = max_lag, paused_until = nil,
  }, Pacer)
end

--- The earliest time the next send may go.
-- @treturn number
function Pacer:next_time()
  local t = self.slot or -math.huge
  if self.count >= self.rate then
    local oldest = self.ring[self.pos] + self.window
    if oldest > t then t = oldest end
  end
  if self.paused_until and self.paused_until > t then t = self.paused_until end
  return t
end

--- Takes a send slot at now if one is free.
-- @tparam number now
-- @treturn boolean
function Pacer:take(now)
  if now < self:next_time() then return false end
  self.ring[self.pos] = now
  self.pos = self.pos % self.rate + 1
  if self.count < self.rate then self.count = self.count + 1 end
  local base = self.slot or now
  if base < now - self.max_lag then base = now end -- far behind (idle): no burst
  self.slot = base + self.interval
  return true
end

--- The last send taken went out later than it was taken, at t (a durable
-- mark came between): the hard guard counts it from t.
-- @tparam number t
function Pacer:restamp(t)
  if self.count == 0 then return end
  local last = (self.pos - 2) % self.rate + 1
  if t > self.ring[last] then self.ring[last] = t end
end

--- Sends nothing until until_t (a 903/11 backoff).
-- @tparam number until_t
function Pacer:pause(until_t)
  if not self.paused_until or until_t > self.paused_until then self.paused_until = until_t end
end

--- Forgets every send (a new connection).
function Pacer:reset()
  self.ring, self.pos, self.count, self.slot, self.paused_until = {}, 1, 0, nil, nil
end

return _M
