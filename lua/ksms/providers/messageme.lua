--- ksms.providers.messageme: MessageMe API V2 (the provider's document): SMS/LMS/
-- MMS, KakaoTalk AlimTalk and FriendTalk with SMS fallback, the cash
-- balance, and the inbound MO webhook (parse_mo).
-- @module ksms.providers.messageme
-- @alias P
local apiv2 = require "ksms.providers.apiv2"
local codes = require "ksms.codes"
local ok, fail = codes.ok, codes.fail
local common = require "ksms.providers.common"
local core = require "ksms.core"
local errors = require "ksms.errors"
local phone = require "ksms.rules.phone"

local type, error, ipairs, tonumber = type, error, ipairs, tonumber
local gsub, gmatch, find, sub, char, format = string.gsub, string.gmatch, string.find, string.sub, string.char, string.format
local cp949_len = core.cp949_len

local P = apiv2.define {
  name = "messageme",
  default_base_url = "http://221.139.14.136",
  paths = {
    sms = "/APIV2/API/sms_send", alimtalk = "/APIV2/API/alimtalk_send",
    friendtalk = "/APIV2/API/friendstalk_send", balance = "/APIV2/API/remainCash",
  },
  balance_field = "remainCash",
  balance_unit = "won",
  codes = {
    ["100"] = ok("accepted", "데이터 전송 성공"),
    ["155"] = fail("auth", "API key or account status error", "API key/회원 상태 관련 오류"),
    ["175"] = fail("channel", "Kakao channel error", "카카오채널 오류"),
    ["185"] = fail("balance", "not enough cash", "Cash 부족"),
    ["215"] = fail("template", "template error", "Template 관련 오류"),
    ["225"] = fail("message_length", "message too long", "Message length 오류"),
    ["235"] = fail("template", "template variable error", "대치내용 변수 오류"),
    ["315"] = fail("sender_number", "caller number not registered", "발신번호 오류"),
    -- Not in MessageMe's table but answered by the same family (Senders).
    ["325"] = fail("recipient", "recipient number error", "수신번호 오류"),
    ["415"] = fail("schedule", "reservation time error", "예약발송 시간 오류"),
  },
}

-- Where MessageMe's MO image paths live; the document says the host is
-- left out of fileloc1..5 and must be added by the receiving page.
P.mo_image_base = "http://www.messageme.co.kr"

-- Bounds on an MO webhook: the raw body (the nginx example's
-- client_max_body_size) and each field parse_mo reads (an LMS is at most
-- 2,000 CP949 bytes, about 3,000 in UTF-8).
P.mo_limits = { body = 64 * 1024, field = 8 * 1024 }

local MO_FIELDS = { "phone", "msg", "subject", "fileloc1", "fileloc2", "fileloc3", "fileloc4", "fileloc5" }

local function unescape(s)
  s = gsub(s, "%+", " ")
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- A urlencoded body in the shape ngx.req.get_post_args() returns: a name
-- given more than once maps to the list of its values, a name without
-- "=" to true. Both are then refused the same way, whichever shape came.
local function form_decode(body)
  local fields = {}
  for pair in gmatch(body .. "&", "([^&]*)&") do
    if pair ~= "" then
      local eq = find(pair, "=", 1, true)
      local k, v
      if eq then k, v = unescape(sub(pair, 1, eq - 1)), unescape(sub(pair, eq + 1))
      else k, v = unescape(pair), true end
      local seen = fields[k]
      if seen == nil then fields[k] = v
      elseif type(seen) == "table" then seen[#seen + 1] = v
      else fields[k] = { seen, v } end
    end
  end
  return fields
end

local function mo_error(code, fmt, ...)
  return nil, errors.new { category = "invalid_input", code = code, provider = "messageme",
    message = "MO webhook: " .. format(fmt, ...) }
end

-- The posted fields parse_mo reads, each a string or absent, or nil, err.
local function mo_strings(fields)
  local out, max = {}, P.mo_limits.field
  for _, name in ipairs(MO_FIELDS) do
    local v = fields[name]
    local t = type(v)
    if t == "table" then
      return mo_error("bad_field", "field %s is given %s", name, #v > 1 and "more than once" or "as a table")
    elseif t == "boolean" then
      return mo_error("bad_field", "field %s has no value", name)
    elseif t ~= "string" and v ~= nil then
      return mo_error("bad_field", "field %s is a %s, not a string", name, t)
    elseif v ~= nil then
      if #v > max then return mo_error("too_large", "field %s is %d bytes; at most %d are read", name, #v, max) end
      local valid, uerr = cp949_len(v) -- nil, err for invalid UTF-8
      if not valid then
        uerr.provider = "messageme"
        uerr.message = "MO webhook: field " .. name .. ": " .. uerr.message
        return nil, uerr
      end
      out[name] = v
    end
  end
  return out
end

--- parse_mo(fields [, { image_base = ... }]) -> { from, text, subject, images } | nil, err
-- fields: the posted form as a table (ngx.req.get_post_args()'s shape) or
-- the raw urlencoded body. What was posted never makes it raise: a field
-- it reads (phone, msg, subject, fileloc1..5) that is repeated (a list),
-- bare (true) or not a string, over mo_limits.field bytes or not UTF-8,
-- and a raw body over mo_limits.body bytes give nil, err (invalid_input).
-- A repeated field is refused rather than its first value taken: which one
-- MessageMe meant cannot be told, and a forged second phone must not win.
-- Every field returned is a string; the subject "[제목없음]" (what
-- carriers fill in when there is none) becomes nil.
function P.parse_mo(fields, opts)
  if type(fields) == "string" then
    if #fields > P.mo_limits.body then
      return mo_error("too_large", "the body is %d bytes; at most %d are read", #fields, P.mo_limits.body)
    end
    fields = form_decode(fields)
  end
  if type(fields) ~= "table" then error("ksms: parse_mo needs the posted fields or the raw body", 2) end
  local base = common.strip_slashes(opts and opts.image_base or P.mo_image_base)
  local f, ferr = mo_strings(fields)
  if not f then return nil, ferr end
  local from, err = phone.normalize(f.phone or "", "from")
  if not from then
    err.provider = "messageme"
    err.message = errors.bound("MO webhook: " .. err.message, errors.MESSAGE_MAX)
    return nil, err
  end
  local text = f.msg or ""
  local subject = f.subject
  if subject == "" or subject == "[제목없음]" then subject = nil end
  local images = {}
  for i = 1, 5 do
    local loc = f["fileloc" .. i]
    if loc and loc ~= "" then
      if find(loc, "^[Hh][Tt][Tt][Pp][Ss]?://") then
        images[#images + 1] = loc
      elseif sub(loc, 1, 2) == "//" then
        images[#images + 1] = "http:" .. loc
      elseif find(loc, "^[%w.-]+%.[%a]+/") then -- host without scheme
        images[#images + 1] = "http://" .. loc
      else
        images[#images + 1] = base .. (sub(loc, 1, 1) == "/" and "" or "/") .. loc
      end
    end
  end
  return { from = from, text = text, subject = subject, images = images }
end

return P
