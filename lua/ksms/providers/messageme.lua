-- ksms.providers.messageme: MessageMe API V2 (shared/seeds/002): SMS/LMS/
-- MMS, KakaoTalk AlimTalk and FriendTalk with SMS fallback, the cash
-- balance, and the inbound MO webhook (parse_mo).
local apiv2 = require "ksms.providers.apiv2"
local core = require "ksms.core"
local phone = require "ksms.rules.phone"

local type, error = type, error
local gsub, char, tonumber = string.gsub, string.char, tonumber

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
    ["100"] = { ok = true, en = "accepted", ko = "데이터 전송 성공" },
    ["155"] = { category = "auth", en = "API key or account status error", ko = "API key/회원 상태 관련 오류" },
    ["175"] = { category = "channel", en = "Kakao channel error", ko = "카카오채널 오류" },
    ["185"] = { category = "balance", en = "not enough cash", ko = "Cash 부족" },
    ["215"] = { category = "template", en = "template error", ko = "Template 관련 오류" },
    ["225"] = { category = "message_length", en = "message too long", ko = "Message length 오류" },
    ["235"] = { category = "template", en = "template variable error", ko = "대치내용 변수 오류" },
    ["315"] = { category = "sender_number", en = "caller number not registered", ko = "발신번호 오류" },
    -- Not in MessageMe's table but answered by the same family (Senders).
    ["325"] = { category = "recipient", en = "recipient number error", ko = "수신번호 오류" },
    ["415"] = { category = "schedule", en = "reservation time error", ko = "예약발송 시간 오류" },
  },
}

-- Where MessageMe's MO image paths live; the document says the host is
-- left out of fileloc1..5 and must be added by the receiving page.
P.mo_image_base = "http://www.messageme.co.kr"

local function form_decode(body)
  local fields = {}
  for pair in (body .. "&"):gmatch("([^&]*)&") do
    if pair ~= "" then
      local k, v = pair:match("^([^=]*)=?(.*)$")
      local function unescape(s)
        s = gsub(s, "+", " ")
        return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
      end
      fields[unescape(k)] = unescape(v)
    end
  end
  return fields
end

-- parse_mo(fields [, { image_base = ... }]) -> { from, text, subject, images } | nil, err
-- fields: the posted form as a table, or the raw urlencoded body. The
-- subject "[제목없음]" (what carriers fill in when there is none) becomes nil.
function P.parse_mo(fields, opts)
  if type(fields) == "string" then fields = form_decode(fields) end
  if type(fields) ~= "table" then error("ksms: parse_mo needs the posted fields or the raw body", 2) end
  local base = (opts and opts.image_base or P.mo_image_base):gsub("/+$", "")
  local from, err = phone.normalize(fields.phone or "", "from")
  if not from then
    err.provider = "messageme"
    err.message = "MO webhook: " .. err.message
    return nil, err
  end
  local text = fields.msg or ""
  local valid, uerr = core.cp949_len(text) -- nil, err for invalid UTF-8
  if not valid then
    uerr.provider = "messageme"
    return nil, uerr
  end
  local subject = fields.subject
  if subject == "" or subject == "[제목없음]" then subject = nil end
  local images = {}
  for i = 1, 5 do
    local loc = fields["fileloc" .. i]
    if type(loc) == "string" and loc ~= "" then
      if loc:match("^[Hh][Tt][Tt][Pp][Ss]?://") then
        images[#images + 1] = loc
      elseif loc:sub(1, 2) == "//" then
        images[#images + 1] = "http:" .. loc
      elseif loc:match("^[%w.-]+%.[%a]+/") then -- host without scheme
        images[#images + 1] = "http://" .. loc
      else
        images[#images + 1] = base .. (loc:sub(1, 1) == "/" and "" or "/") .. loc
      end
    end
  end
  return { from = from, text = text, subject = subject, images = images }
end

return P
