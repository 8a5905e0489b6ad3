--- ksms.rules.schedule: reservation times, always in Korea time (UTC+9,
-- no daylight saving) whatever the host's time zone.
--
-- `at` is epoch seconds, or a date table { year, month, day, hour, min, sec }
-- read as Korea wall-clock time (the way a Korean operator writes it).
--
--   schedule.resolve(at, { now = os.time(), min_lead = 0 }) -> epoch | nil, err
--   schedule.format(epoch, "YYYY|MM|DD|hh|mm|ss") -> "2026|11|22|09|30|00"
-- @module ksms.rules.schedule
-- @alias _M

local errors = require "ksms.errors"
local misuse = errors.misuse

local type, floor, tostring = type, math.floor, tostring
local os_time, os_date = os.time, os.date
local format, gsub = string.format, string.gsub

local _M = { _VERSION = "0.2.0" }

local KST_OFFSET = 9 * 3600

--- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil), so no host time zone is ever involved (ksms.rate's
-- HTTP-dates use it too).
-- @tparam number y
-- @tparam number m 1-12
-- @tparam number d
-- @treturn number
function _M.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local days_from_civil = _M.days_from_civil

local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function days_in(y, m)
  if m == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then return 29 end
  return DAYS_IN_MONTH[m]
end

local function schedule_error(code, message)
  return nil, errors.new { category = "schedule", code = code, message = message }
end

local function is_int(v) return type(v) == "number" and v == floor(v) end

--- A Korea-time date table to epoch seconds.
function _M.from_kst(t)
  local y, m, d = t.year, t.month, t.day
  local hh, mm, ss = t.hour or 0, t.min or 0, t.sec or 0
  for _, v in ipairs({ y, m, d, hh, mm, ss }) do
    if not is_int(v) then
      misuse("ksms: a reservation date table needs whole numbers year, month, day (hour, min, sec optional)")
    end
  end
  if m < 1 or m > 12 or d < 1 or d > days_in(y, m) or hh < 0 or hh > 23
    or mm < 0 or mm > 59 or ss < 0 or ss > 59 then
    return schedule_error("invalid_date", format("%04d-%02d-%02d %02d:%02d:%02d is not a valid date and time", y, m, d, hh, mm, ss))
  end
  return (days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss) - KST_OFFSET
end

--- The Korea-time fields of an epoch.
function _M.to_kst(epoch)
  local t = os_date("!*t", floor(epoch) + KST_OFFSET)
  return { year = t.year, month = t.month, day = t.day, hour = t.hour, min = t.min, sec = t.sec }
end

--- resolve(at, opts) -> epoch | nil, err
-- opts.now: the current epoch (default os.time()); opts.min_lead: seconds
-- the provider needs ahead (Cafe24: 600). A time not later than now plus
-- the lead is refused, before anything is sent.
function _M.resolve(at, opts)
  local now = opts and opts.now or os_time()
  local lead = opts and opts.min_lead or 0
  local epoch, err
  if type(at) == "number" then
    epoch = floor(at)
  elseif type(at) == "table" then
    epoch, err = _M.from_kst(at)
    if not epoch then return nil, err end
  else
    misuse("ksms: 'at' must be epoch seconds or a date table, got " .. type(at))
  end
  if epoch <= now + lead then
    local when = _M.format(epoch, "YYYY-MM-DD hh:mm:ss")
    if lead > 0 then
      return schedule_error("too_soon", format("reservation %s KST must be at least %d minutes ahead", when, lead / 60))
    end
    return schedule_error("past", format("reservation %s KST is not in the future", when))
  end
  return epoch
end

--- format(epoch, pattern): YYYY MM DD hh mm ss are replaced by Korea-time
-- fields; every other character is kept.
function _M.format(epoch, pattern)
  local t = _M.to_kst(epoch)
  local out = pattern
  out = gsub(out, "YYYY", format("%04d", t.year))
  out = gsub(out, "MM", format("%02d", t.month))
  out = gsub(out, "DD", format("%02d", t.day))
  out = gsub(out, "hh", format("%02d", t.hour))
  out = gsub(out, "mm", format("%02d", t.min))
  out = gsub(out, "ss", format("%02d", t.sec))
  return out
end

return _M
