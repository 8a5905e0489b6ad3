--- ksms.rules.text: what a provider can carry, decided before sending.
--
--   text.choose_kind(msg_text, kind, has_image, limits) -> kind, bytes | nil, err
--   text.check_charset(s, charset, field)               -> true | nil, err
--   text.chars(s)                                        -> number of characters
--
-- limits = { charset = "cp949" | "euc-kr", sms = 90, lms = 2000, mms = 2000 }
-- in the provider's bytes (CP949: Hangul 2, ASCII 1). kind "auto" picks MMS
-- when an image is attached, else SMS when the text fits, else LMS. This is
-- the library's one SMS/LMS/MMS decision: the HTTP providers (through
-- ksms.message) and OneShot (ksms.oneshot.message) both ask it. Misuse (an
-- unknown kind, an image with kind sms or lms) raises at the caller's line.
-- @module ksms.rules.text
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"

local cp949_len, charset_check = core.cp949_len, core.charset_check
local misuse = errors.misuse
local concat, format = table.concat, string.format
local gsub = string.gsub

local _M = { _VERSION = "0.2.0" }

local function fail(category, code, message, extra)
  local e = { category = category, code = code, message = message }
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return nil, errors.new(e)
end

-- Names the characters a charset lacks: "'됬' at 1, '😀' at 10".
local function describe(list)
  local parts = {}
  for i, bad in ipairs(list) do parts[i] = format("'%s' at %d", bad.char, bad.pos) end
  if list.truncated then parts[#parts + 1] = "and more" end
  return concat(parts, ", ")
end

--- Whether s fits a charset; the characters it lacks named in err.
-- @tparam string s
-- @tparam string charset "cp949" or "euc-kr"
-- @tparam string field
-- @return true, or nil, err
function _M.check_charset(s, charset, field)
  local ok, bad = charset_check(s, charset)
  if ok then return true end
  if errors.is(bad) then return nil, bad end -- invalid UTF-8
  return fail("invalid_input", "charset",
    format("%s has characters %s cannot carry: %s", field or "text", charset:upper(), describe(bad)),
    { chars = bad, field = field or "text" })
end

--- Unicode characters, the unit Kakao limits are stated in.
function _M.chars(s)
  local _, n = gsub(s, "[^\128-\191]", "")
  return n
end

local KINDS = { auto = true, sms = true, lms = true, mms = true }

--- The message kind (sms, lms, mms) for a text under a provider's limits.
-- @tparam string text
-- @tparam[opt] string kind "auto"
-- @tparam boolean has_image
-- @tparam table limits
-- @return kind, or nil, err
function _M.choose_kind(text, kind, has_image, limits)
  kind = kind or "auto"
  if not KINDS[kind] then misuse("ksms: kind must be auto, sms, lms or mms, got " .. tostring(kind)) end
  local ok, err = _M.check_charset(text, limits.charset or "cp949", "text")
  if not ok then return nil, err end
  local bytes = cp949_len(text)
  if bytes == 0 then return fail("message_length", "empty", "text is empty") end
  if kind == "auto" then
    if has_image then kind = "mms"
    elseif bytes <= limits.sms then kind = "sms"
    else kind = "lms" end
  end
  if kind ~= "mms" and has_image then
    misuse("ksms: an image needs kind 'mms' (or 'auto')")
  end
  if kind == "mms" and not has_image then
    return fail("invalid_input", "image", "kind 'mms' needs an image")
  end
  local limit = limits[kind]
  if not limit then
    return fail("invalid_input", "kind", format("this provider does not send %s messages", kind:upper()))
  end
  if bytes > limit then
    return fail("message_length", "too_long",
      format("text is %d bytes; %s allows at most %d (CP949 bytes: Hangul 2, ASCII 1)", bytes, kind:upper(), limit),
      { bytes = bytes, limit = limit })
  end
  return kind, bytes
end

return _M
