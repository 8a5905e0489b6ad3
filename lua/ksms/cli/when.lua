--- ksms.cli.when: the reservation time given to the at flag, as the library takes it.
--
--   "2026-12-01 09:00", "2026-12-01T09:00:30", "202612010900"  Korea time:
--       a date table, which ksms.rules.schedule reads as KST whatever the
--       host's zone
--   "@1764547200"                                              epoch seconds
--   "+30m", "+2h", "+1d", "+90s"                              from now
--
-- parse(s [, now]) -> at (date table or epoch) | nil, message
-- @module ksms.cli.when
-- @alias _M

local trim = require("ksms.cli.input").trim

local type, tonumber, os_time = type, tonumber, os.time

local _M = { _VERSION = "0.2.0" }

local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }

--- Reads the reservation time a user typed (the formats above).
-- @tparam string s
-- @tparam[opt] number now
-- @return a date table (Korea time) or epoch seconds, or nil, message
function _M.parse(s, now)
  if type(s) ~= "string" then return nil, "--at needs a time" end
  s = trim(s)
  local epoch = s:match("^@(%d+)$")
  if epoch then return tonumber(epoch) end
  local n, unit = s:match("^%+(%d+)([smhd]?)$")
  if n then return (now or os_time()) + tonumber(n) * UNITS[unit ~= "" and unit or "m"] end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d?)%-(%d%d?)(.*)$")
  local h, mi, sec
  if y then
    if rest ~= "" then
      h, mi, sec = rest:match("^[T ]+(%d%d?):(%d%d):?(%d*)$")
      if not h then return nil, ("--at %q: expected YYYY-MM-DD HH:MM[:SS] (Korea time)"):format(s) end
    end
  else
    y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)(%d%d)(%d%d)(%d%d)(%d%d)(%d*)$")
    if not y then
      return nil, ("--at %q: expected \"YYYY-MM-DD HH:MM\" (Korea time), @EPOCH or +N[smhd]"):format(s)
    end
  end
  return { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h or 0),
    min = tonumber(mi or 0), sec = tonumber(sec ~= nil and sec ~= "" and sec or 0) }
end

return _M
