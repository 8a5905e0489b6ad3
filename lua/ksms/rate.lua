--- ksms.rate: a client's `rate` option (how many requests it starts per
-- second) and its Retry-After gate (a provider's HTTP 429 honoured before
-- the next request).
--
-- The bucket counts requests per time slot: a slot lasts burst / per_second
-- seconds and takes burst requests, so over a long run per_second start a
-- second, and no second holds more than burst x (ceil(per_second / burst) +
-- 1) starts: per_second + burst whenever burst divides per_second (the
-- default burst, 1, does for a whole per_second). A request reserves the
-- first slot from now on that has room and starts at that slot's start (or
-- now): a reservation is never given back, so a caller that waits and then
-- sends can never be overtaken. Why slots and not GCRA's "theoretical
-- arrival time": an nginx shared dict has an atomic incr but no
-- compare-and-set, and GCRA needs max(tat, now) then an add in one step;
-- a slot counter needs only incr (a count over burst means full, try the
-- next), so workers sharing the dict never start more than the slot's
-- burst between them. One process keeps the same slots in two numbers.
--
-- Shared (nginx, `dict`): the keys are "<key>:s:<slot>" (counters, expiring
-- a few seconds after their slot), "<key>:next" (a hint where to start
-- looking, only a speed-up: a stale one costs a few incr, never a start too
-- many) and "<key>:until" (the Retry-After gate). The dict must not evict
-- them: give it room (a few hundred bytes a slot) or its own zone.
-- @module ksms.rate
-- @alias _M

local errors = require "ksms.errors"

local type, tonumber, setmetatable = type, tonumber, setmetatable
local floor, ceil, format = math.floor, math.ceil, string.format
local find, match, sub, lower = string.find, string.match, string.sub, string.lower
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0",
  RETRY_AFTER_DEFAULT = 1,  -- seconds, when a 429 has no usable Retry-After
  RETRY_AFTER_MAX = 600,    -- seconds: a hostile header never blocks a client for longer
  MAX_WAIT = 5,             -- seconds a request waits for its slot by default
}

local OPTIONS = { per_second = "number", burst = "number", max_wait = "number", dict = "string", key = "string" }

local function in_nginx()
  return type(ngx) == "table" and type(ngx.now) == "function" and type(ngx.shared) == "table"
end

-- The clock: inside nginx ngx.now (wall time, the same in every worker;
-- updated first, nginx caches it per event-loop turn), elsewhere the
-- core's monotonic clock.
local function clock_of(shared)
  if in_nginx() then
    return function() ngx.update_time(); return ngx.now() end
  end
  if shared then misuse("ksms.client: rate.dict needs nginx (a lua_shared_dict name)") end
  return require("ksms.core").monotonic
end

--- Waits seconds without blocking nginx: ngx.sleep inside it (at least 1
-- ms: nginx rounds less to ngx.sleep(0)), core.sleep elsewhere.
-- @tparam number seconds
function _M.sleep(seconds)
  if seconds <= 0 then return end
  if in_nginx() then return ngx.sleep(seconds < 0.001 and 0.001 or seconds) end
  return require("ksms.core").sleep(seconds)
end

local Rate = {}
Rate.__index = Rate

--- A client's limiter from its `rate` option (nil: none, only the gate).
-- rate: a number (per second) or { per_second, burst = 1, max_wait = 5,
-- dict = "lua_shared_dict name", key = provider }. Misuse raises.
-- @param rate the option as given
-- @tparam string provider the client's provider (the default key)
-- @tparam string where how errors name the caller
-- @return a limiter
function _M.new(rate, provider, where)
  local spec
  if rate == nil then spec = nil
  elseif type(rate) == "number" then spec = { per_second = rate }
  elseif type(rate) == "table" then
    errors.check_options(where .. ": rate", rate, OPTIONS)
    spec = rate
  else
    misuse(where .. ": rate must be a number (messages per second) or a table { per_second, burst, max_wait, dict, key }")
  end
  local self = setmetatable({ provider = provider, key = "ksms:rate:" .. provider }, Rate)
  if spec then
    local r, b, w = spec.per_second, spec.burst or 1, spec.max_wait or _M.MAX_WAIT
    if type(r) ~= "number" or not (r > 0 and r < 1e6) then
      misuse(where .. ": rate.per_second must be a number above 0 (requests started per second)")
    end
    if type(b) ~= "number" or b ~= floor(b) or b < 1 or b > 1e6 then
      misuse(where .. ": rate.burst must be a whole number >= 1")
    end
    if type(w) ~= "number" or not (w >= 0 and w <= 3600) then
      misuse(where .. ": rate.max_wait must be seconds in 0..3600")
    end
    self.per_second, self.burst, self.max_wait = r, b, w
    self.width = b / r -- seconds a slot lasts
    self.slot, self.count = -1, 0
    if spec.key then self.key = spec.key end
  end
  if spec and spec.dict then
    self.clock = clock_of(true)
    local dict = ngx.shared[spec.dict]
    if not dict then misuse(format("%s: rate.dict %q is not a lua_shared_dict", where, spec.dict)) end
    self.dict = dict
  else
    self.clock = clock_of(false)
  end
  return self
end

local function wait_error(self, why)
  return errors.new { category = "rate_limit", code = "rate_wait", provider = self.provider,
    retryable = true, maybe_sent = false,
    message = "not sent: the client's rate (" .. self.per_second .. "/s) had no room " .. why }
end

-- The first slot from `first` on with room, reserved; nil past `last`.
function Rate:_reserve_shared(first, last)
  local dict, key, b = self.dict, self.key, self.burst
  local ttl = ceil(self.max_wait + 2 * self.width) + 2
  local hint = dict:get(key .. ":next")
  local s = first
  if type(hint) == "number" and hint > s and hint <= last then s = hint end
  while s <= last do
    local n = dict:incr(key .. ":s:" .. s, 1, 0, ttl)
    if not n then return nil, "full" end -- the dict is full: refuse rather than go unpaced
    if n <= b then
      if n == b then dict:set(key .. ":next", s + 1, ttl) end
      return s
    end
    s = s + 1
  end
  return nil
end

--- Reserves a start for one request: returns the clock time at which it
-- may start (now or later), or nil, err (rate_limit, rate_wait, nothing
-- sent) when no slot is free before the bounded wait or `deadline` (a
-- time on this limiter's clock) ends.
-- @tparam[opt] number deadline the latest start the caller accepts (clock time)
-- @treturn number|nil the start
function Rate:reserve(deadline)
  local now = self.clock()
  local last_t = now + self.max_wait
  if deadline and deadline < last_t then last_t = deadline end
  local w = self.width
  local cur, last = floor(now / w), floor(last_t / w)
  local s
  if self.dict then
    local why
    s, why = self:_reserve_shared(cur, last)
    if not s then
      return nil, wait_error(self, why and "(its lua_shared_dict is full)" or format("within %.3g s", last_t - now))
    end
  else
    s = self.slot
    local n = self.count
    if s < cur then s, n = cur, 0 end
    if n >= self.burst then s, n = s + 1, 0 end
    if s > last then return nil, wait_error(self, format("within %.3g s", last_t - now)) end
    self.slot, self.count = s, n + 1
  end
  local at = s * w
  return at > now and at or now
end

--- Seconds from now until the clock reaches t (0 when it has).
-- @tparam number t a time on this limiter's clock
function Rate:left(t)
  local d = t - self.clock()
  return d > 0 and d or 0
end

--- Closes the gate for seconds (a 429's Retry-After); shared with dict.
-- @tparam number seconds
function Rate:block(seconds)
  if not (seconds > 0) then return end
  local t = self.clock() + seconds
  if self.dict then
    local old = self.dict:get(self.key .. ":until")
    if type(old) ~= "number" or old < t then self.dict:set(self.key .. ":until", t, ceil(seconds) + 1) end
  elseif not self.blocked_until or self.blocked_until < t then
    self.blocked_until = t
  end
end

--- The refusal while the gate is closed (nil when open): category
-- rate_limit, code retry_after, maybe_sent false, retry_after the
-- seconds left.
function Rate:gate()
  local t
  if self.dict then t = self.dict:get(self.key .. ":until") else t = self.blocked_until end
  if type(t) ~= "number" then return nil end
  local left = t - self.clock()
  if left <= 0 then
    if not self.dict then self.blocked_until = nil end
    return nil
  end
  return errors.new { category = "rate_limit", code = "retry_after", provider = self.provider,
    retryable = true, maybe_sent = false, retry_after = left,
    message = format("not sent: the provider answered 429 (too many requests); retry after %.3g s", left) }
end

-- ---- Retry-After ----

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10,
  nov = 11, dec = 12 }

-- Days from 1970-01-01 to y-m-d, no os.time: the host's time zone must not matter.
local days_from_civil = require("ksms.rules.schedule").days_from_civil

-- An HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
-- "Sunday, 06-Nov-94 08:49:37 GMT" or asctime "Sun Nov  6 08:49:37 1994")
-- as epoch seconds, or nil.
local function http_date(v)
  local d, mon, y, hh, mm, ss = match(v, "^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, hh, mm, ss = match(v, "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then y = tonumber(y) + (tonumber(y) < 70 and 2000 or 1900) end
  end
  if not d then
    mon, d, hh, mm, ss, y = match(v, "^%a%a%a (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  if not d then return nil end
  local m = MONTHS[lower(mon)]
  d, y, hh, mm, ss = tonumber(d), tonumber(y), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

--- A Retry-After header value as seconds to wait, always a number in
-- 0..RETRY_AFTER_MAX: delta-seconds ("120", a fraction taken too), or an
-- HTTP-date less `now` (epoch seconds); absent, empty, negative or
-- garbage: RETRY_AFTER_DEFAULT. Never raises; linear in the value.
-- @param v the header's value (any type)
-- @tparam number now epoch seconds
-- @treturn number seconds
function _M.retry_after(v, now)
  if type(v) ~= "string" or #v > 64 then return _M.RETRY_AFTER_DEFAULT end
  local first = find(v, "%S")
  if not first then return _M.RETRY_AFTER_DEFAULT end
  local last = #v
  while find(sub(v, last, last), "%s") do last = last - 1 end
  v = sub(v, first, last)
  local n
  if find(v, "^%d+$") or find(v, "^%d+%.%d+$") then
    n = tonumber(v)
  else
    local t = http_date(v)
    if not t or type(now) ~= "number" then return _M.RETRY_AFTER_DEFAULT end
    n = t - now
  end
  if not n or n ~= n then return _M.RETRY_AFTER_DEFAULT end
  if n < 0 then return 0 end
  if n > _M.RETRY_AFTER_MAX then return _M.RETRY_AFTER_MAX end
  return n
end

--- The error of a provider's HTTP 429: category rate_limit, code
-- http_429, nothing sent (a provider refuses before acting, as 429
-- means), retryable, retry_after in seconds (see retry_after).
-- @tparam string provider
-- @tparam table res the response
-- @tparam number now epoch seconds (an HTTP-date's reference)
function _M.http_429(provider, res, now)
  local h = type(res.headers) == "table" and res.headers["retry-after"] or nil
  local after = _M.retry_after(h, now)
  return errors.new { category = "rate_limit", code = "http_429", provider = provider,
    retryable = true, maybe_sent = false, retry_after = after, raw = res.body,
    message = format("HTTP 429 from the provider (too many requests): nothing was sent; retry after %.3g s", after) }
end

return _M
