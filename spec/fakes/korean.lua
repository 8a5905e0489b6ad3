-- korean.lua - the text, number and date rules the providers apply, written
-- independently of ksms (the fakes must not share code with what they test).
local _M = {}

-- Length of the UTF-8 sequence a lead byte starts, nil for a byte that
-- cannot start one.
local function seq_len(b)
  if b < 0x80 then return 1 end
  if b >= 0xC2 and b <= 0xDF then return 2 end
  if b >= 0xE0 and b <= 0xEF then return 3 end
  if b >= 0xF0 and b <= 0xF4 then return 4 end
  return nil
end

-- Whether s is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
function _M.is_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local b = s:byte(i)
    local len = seq_len(b)
    if not len or i + len - 1 > n then return false end
    for k = i + 1, i + len - 1 do
      local c = s:byte(k)
      if c < 0x80 or c > 0xBF then return false end
    end
    local b2 = s:byte(i + 1)
    if (b == 0xE0 and b2 < 0xA0) or (b == 0xED and b2 > 0x9F)
       or (b == 0xF0 and b2 < 0x90) or (b == 0xF4 and b2 > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

-- Characters (code points) of a UTF-8 string: every byte that is not a
-- continuation byte starts one.
function _M.char_len(s)
  local _, continuation = s:gsub("[\128-\191]", "")
  return #s - continuation
end

-- Bytes as the providers count them: ASCII 1, any other character 2 (a
-- Hangul syllable is 2 bytes in CP949; characters CP949 lacks count 2 too).
function _M.cp949_len(s)
  local ascii = select(2, s:gsub("[%z\1-\127]", ""))
  return ascii + (_M.char_len(s) - ascii) * 2
end

-- A Korean phone number, digits only: mobile 01x (10-11 digits), Seoul 02
-- (9-10), other area and 070/050x numbers 0[3-9]x (10-11), and the 8-digit
-- nationwide numbers 15xx, 16xx, 18xx.
function _M.is_phone(s)
  if type(s) ~= "string" or not s:match("^%d+$") then return false end
  local n = #s
  if s:match("^01[016789]") then return n == 10 or n == 11 end
  if s:match("^02") then return n == 9 or n == 10 end
  if s:match("^0[3-9]") then return n == 10 or n == 11 end
  if s:match("^1[568]") then return n == 8 end
  return false
end

-- Splits s on a plain (non-pattern) separator; "" gives { "" }.
function _M.split(s, sep)
  local parts, start = {}, 1
  while true do
    local i = s:find(sep, start, true)
    if not i then
      parts[#parts + 1] = s:sub(start)
      return parts
    end
    parts[#parts + 1] = s:sub(start, i - 1)
    start = i + #sep
  end
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil), so no dependence on the host's time zone.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function days_in_month(y, m)
  if m == 2 then
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    return leap and 29 or 28
  end
  return ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[m]
end

-- Epoch seconds of a Korea-time (UTC+9) date written YYYY<sep>MM<sep>DD<sep>
-- hh<sep>mm<sep>ss, or nil when it does not parse or is not a real time.
function _M.parse_kst(s, sep)
  local p = _M.split(s or "", sep)
  if #p ~= 6 then return nil end
  local widths = { 4, 2, 2, 2, 2, 2 }
  local v = {}
  for i = 1, 6 do
    if #p[i] ~= widths[i] or not p[i]:match("^%d+$") then return nil end
    v[i] = tonumber(p[i])
  end
  local y, mo, d, h, mi, sec = v[1], v[2], v[3], v[4], v[5], v[6]
  if mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo)
     or h > 23 or mi > 59 or sec > 59 then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - 9 * 3600
end

-- The same time formatted back, for specs that need "a minute from now".
function _M.format_kst(epoch, sep)
  local t = os.date("!*t", math.floor(epoch) + 9 * 3600)
  return string.format("%04d%s%02d%s%02d%s%02d%s%02d%s%02d", t.year, sep, t.month,
                       sep, t.day, sep, t.hour, sep, t.min, sep, t.sec)
end

return _M
