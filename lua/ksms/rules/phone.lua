-- ksms.rules.phone: Korean telephone numbers.
--
--   phone.normalize("+82 10-1234-5678") -> "01012345678" | nil, err
--   phone.classify("0212345678")        -> "seoul" (see CLASSES below) | nil
--   phone.split("01012345678")          -> { "010", "1234", "5678" }
--
-- Accepted decorations: spaces, hyphens, dots, parentheses, and the +82
-- country code (with or without the trunk 0 after it). The numbering plan
-- checked is the one the providers deliver to: mobile 010/011/016-019,
-- Seoul 02, the area codes 031-064, 070 (VoIP), 050x (personal numbers),
-- 080 (toll free) and the 8-digit nationwide 15xx/16xx/18xx numbers.

local errors = require "ksms.errors"

local type, tostring = type, tostring
local sub, gsub, match, find = string.sub, string.gsub, string.match, string.find

local _M = { _VERSION = "0.1.0" }

local AREA_CODES = {
  ["031"] = true, ["032"] = true, ["033"] = true,
  ["041"] = true, ["042"] = true, ["043"] = true, ["044"] = true,
  ["051"] = true, ["052"] = true, ["053"] = true, ["054"] = true, ["055"] = true,
  ["061"] = true, ["062"] = true, ["063"] = true, ["064"] = true,
}
local MOBILE_PREFIXES = { ["010"] = true, ["011"] = true, ["016"] = true, ["017"] = true,
  ["018"] = true, ["019"] = true }

-- Returns the class of a digits-only number, and the length of its prefix.
local function classify_digits(d)
  local n = #d
  if n == 8 and match(d, "^1[568]%d%d") then return "nationwide", 4 end
  if sub(d, 1, 2) == "02" then
    if n == 9 or n == 10 then return "seoul", 2 end
    return nil
  end
  local p3 = sub(d, 1, 3)
  if MOBILE_PREFIXES[p3] then
    -- 010 is always 11 digits; the old 01x prefixes also had 10.
    if n == 11 or (n == 10 and p3 ~= "010") then return "mobile", 3 end
    return nil
  end
  if AREA_CODES[p3] then
    if n == 10 or n == 11 then return "area", 3 end
    return nil
  end
  if p3 == "070" then
    if n == 11 then return "voip", 3 end
    return nil
  end
  if p3 == "080" then
    if n == 10 then return "tollfree", 3 end
    return nil
  end
  if match(d, "^050[2-8]") then
    if n == 11 or n == 12 then return "personal", 4 end
    return nil
  end
  return nil
end

local function bad(number, why, field)
  return nil, errors.new {
    category = field == "from" and "sender_number" or "recipient",
    code = "invalid_number",
    message = ("%s number %q %s"):format(field == "from" and "caller" or "recipient", number, why),
    number = number,
  }
end

-- normalize(s [, field]) -> digits | nil, err
-- field is "to" (default) or "from": it picks the error's category.
function _M.normalize(s, field)
  if type(s) == "number" then
    error("ksms: phone numbers must be strings (a number loses the leading 0)", 2)
  end
  if type(s) ~= "string" then error("ksms: phone number must be a string, got " .. type(s), 2) end
  local d = s
  if find(d, "[^%d]") then -- only digits: nothing to strip
    d = gsub(d, "[%s%-%.%(%)]", "")
  end
  if sub(d, 1, 3) == "+82" then
    d = sub(d, 4)
    if sub(d, 1, 1) ~= "0" then d = "0" .. d end
  end
  if d == "" then return bad(s, "is empty", field) end
  if find(d, "%D") then return bad(s, "has characters other than digits", field) end
  if not classify_digits(d) then return bad(s, "is not a Korean telephone number", field) end
  return d
end

-- classify(s) -> "mobile" | "seoul" | "area" | "voip" | "tollfree" |
-- "personal" | "nationwide", or nil for a number that is not valid.
function _M.classify(s)
  local d = _M.normalize(s)
  if not d then return nil end
  return (classify_digits(d))
end

-- split(s) -> { prefix, exchange, line } (two parts for 15xx numbers):
-- the parts as Koreans write them, 010-1234-5678, 02-123-4567, 1588-4567.
function _M.split(s)
  local d, err = _M.normalize(s)
  if not d then return nil, err end
  local class, plen = classify_digits(d)
  if class == "nationwide" then return { sub(d, 1, 4), sub(d, 5) } end
  local rest = sub(d, plen + 1)
  local line = sub(rest, -4)
  return { sub(d, 1, plen), sub(rest, 1, #rest - 4), line }
end

-- format("01012345678") -> "010-1234-5678"
function _M.format(s)
  local parts, err = _M.split(s)
  if not parts then return nil, err end
  return table.concat(parts, "-")
end

return _M
