--- ksms.rules.phone: Korean telephone numbers.
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
-- @module ksms.rules.phone
-- @alias _M

local errors = require "ksms.errors"
local misuse = errors.misuse

local type, tostring = type, tostring
local sub, gsub, find, byte = string.sub, string.gsub, string.find, string.byte

local _M = { _VERSION = "0.2.0" }

-- Third digit ranges of the area codes 031-033, 041-044, 051-055, 061-064,
-- keyed by the second digit.
local AREA_LAST = { [51] = 51, [52] = 52, [53] = 53, [54] = 52 }
local MOBILE_THIRD = { [48] = true, [49] = true, [54] = true, [55] = true, [56] = true, [57] = true }

-- Returns the class of a digits-only number, and the length of its prefix.
-- Compares bytes rather than cutting strings: this runs for every
-- recipient of every message.
local function classify_digits(d)
  local n = #d
  local c1, c2, c3, c4 = byte(d, 1, 4)
  if n == 8 and c1 == 49 and (c2 == 53 or c2 == 54 or c2 == 56) then return "nationwide", 4 end
  if c1 ~= 48 then return nil end
  if c2 == 50 then                                   -- 02 Seoul
    if n == 9 or n == 10 then return "seoul", 2 end
    return nil
  end
  if c2 == 49 then                                   -- 010, 011, 016-019
    if not MOBILE_THIRD[c3] then return nil end
    -- 010 is always 11 digits; the old 01x prefixes also had 10.
    if n == 11 or (n == 10 and c3 ~= 48) then return "mobile", 3 end
    return nil
  end
  if c2 == 53 and c3 == 48 then                      -- 0502-0508 personal numbers
    if c4 and c4 >= 50 and c4 <= 56 and (n == 11 or n == 12) then return "personal", 4 end
    return nil
  end
  local last = AREA_LAST[c2]
  if last and c3 and c3 >= 49 and c3 <= last then  -- area codes
    if n == 10 or n == 11 then return "area", 3 end
    return nil
  end
  if c2 == 55 and c3 == 48 then                      -- 070
    if n == 11 then return "voip", 3 end
    return nil
  end
  if c2 == 56 and c3 == 48 then                      -- 080
    if n == 10 then return "tollfree", 3 end
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

--- normalize(s [, field]) -> digits | nil, err
-- field is "to" (default) or "from": it picks the error's category.
function _M.normalize(s, field)
  if type(s) == "number" then
    misuse("ksms: phone numbers must be strings (a number loses the leading 0)")
  end
  if type(s) ~= "string" then misuse("ksms: phone number must be a string, got " .. type(s)) end
  local d = s
  if not find(d, "^%d+$") then
    -- Single-class patterns: bracket classes cost several times more per
    -- character, and this runs for every recipient.
    if find(d, "[^%d%s%-%.%(%)%+]") then return bad(s, "has characters other than digits", field) end
    local plus = find(d, "+", 1, true)
    d = gsub(d, "%D", "")
    if plus then
      -- Only a leading +82 is accepted.
      if not find(s, "^%s*%+82") or find(s, "+", plus + 1, true) then
        return bad(s, "is not a Korean telephone number", field)
      end
      d = sub(d, 3)
      if sub(d, 1, 1) ~= "0" then d = "0" .. d end
    end
  end
  if d == "" then return bad(s, "is empty", field) end
  if not classify_digits(d) then return bad(s, "is not a Korean telephone number", field) end
  return d
end

--- classify(s) -> "mobile" | "seoul" | "area" | "voip" | "tollfree" |
-- "personal" | "nationwide", or nil for a number that is not valid.
function _M.classify(s)
  local d = _M.normalize(s)
  if not d then return nil end
  return (classify_digits(d))
end

--- split(s) -> { prefix, exchange, line } (two parts for 15xx numbers):
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

--- format("01012345678") -> "010-1234-5678"
function _M.format(s)
  local parts, err = _M.split(s)
  if not parts then return nil, err end
  return table.concat(parts, "-")
end

return _M
