--- ksms.oneshot.window: the sending window a OneShot bind grants
-- (BeginTime..EndTime, hours of Korea time). One function, shared by the
-- driver and the nginx binder's handlers.
-- @module ksms.oneshot.window
-- @alias _M

local tonumber, floor = tonumber, math.floor

local _M = {}

--- in_window(grant, epoch) -> is the Korea-time hour of epoch inside
-- grant.begin_time..grant.end_time (end exclusive; 22..3 wraps midnight;
-- 0..24, or begin == end, is all day)?
function _M.in_window(grant, epoch)
  local b, e = tonumber(grant.begin_time) or 0, tonumber(grant.end_time) or 24
  if e - b >= 24 or b == e then return true end
  -- Arithmetic, not os.date: this runs on every turn of the I/O loop, and
  -- POSIX time has no leap seconds, so the hour is exact (KST is UTC+9).
  local h = floor((epoch + 9 * 3600) % 86400 / 3600)
  if b < e then return h >= b and h < e end
  return h >= b or h < e
end

return _M
