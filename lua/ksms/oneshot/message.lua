--- ksms.oneshot.message: a OneShot MsgSendReq body built from a caller's
-- message, every check included, without a connection or a state machine.
-- The protocol's submit uses it; the nginx handler and the CLI dry run use
-- it to check a message before queueing it.
--
--   body, kind | nil, err = message.build(msg, limits)
--   limits                = message.limits_of(opts)   -- from protocol options
--   message.limits                                    -- OneShot's defaults
--   message.kinds                                     -- kind -> MsgType
--   message.fields                                    -- msg fields accepted
--
-- msg: to, from, text, subject, kind ("auto" (default), "sms", "lms",
-- "mms", "alimtalk", "alimtalk_image", "friendtalk", "rcs_sms", "rcs_lms",
-- "rcs_mms", "rcs_template"), id / user_msg_id, sub_id / user_msg_sub_id,
-- user_data, tran_id, reseller_code, files (uploaded file names, at most
-- 3), kakao = { sender_key, template_code, ... }, rcs = { message_base_id,
-- ... }. limits: { charset = "cp949", sms =, lms =, mms = } in CP949 bytes,
-- as ksms.rules.text takes them; SMS/LMS/MMS is that module's decision.
--
-- body is the MsgSendReq body; its UserMsgId is nil when msg has no id
-- (the protocol numbers it). kind is what the result reports ("sms", "lms",
-- "mms", "alimtalk", ...). Misuse (an unknown field, a wrong type, no 'to')
-- raises at the caller's line; input that cannot be sent is nil, err.
-- @module ksms.oneshot.message
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"
local phone = require "ksms.rules.phone"
local text_rules = require "ksms.rules.text"

local type, pairs, tostring = type, pairs, tostring
local format = string.format
local cp949_len = core.cp949_len
local misuse = errors.misuse
local choose_kind = text_rules.choose_kind

local _M = { _VERSION = "0.2.0" }

local KINDS = {
  sms = 4, lms = 6, mms = 6, alimtalk = 7, alimtalk_image = 71, friendtalk = 8,
  rcs_sms = 9, rcs_lms = 10, rcs_mms = 11, rcs_template = 12,
}
_M.kinds = KINDS

-- The text kinds: ksms.rules.text decides between them.
local TEXT_KINDS = { auto = true, sms = true, lms = true, mms = true }

local FIELDS = {
  to = true, from = true, text = true, subject = true, kind = true, id = true, sub_id = true,
  user_msg_id = true, user_msg_sub_id = true, -- the protocol's names for id and sub_id
  user_data = true, tran_id = true, reseller_code = true, files = true, kakao = true, rcs = true,
  expires_at = true, -- epoch seconds: the session writes nothing for it after (not in the body)
}
_M.fields = FIELDS

local KAKAO = {
  ad_flag = "KakaoAdFlag", nation_code = "KakaoNationCode", sender_key = "KakaoSenderKey",
  template_code = "KakaoTemplateCode", timeout = "KakaoTimeout", button = "KakaoButton",
  image_link = "kakaoImageLink", user_key = "kakaoUserKey", title = "kakaoTitle",
  quick = "kakaoQuick", wide = "kakaoWide",
}
local RCS = {
  message_base_id = "rcsMessageBaselId", button = "rcsButton", header = "rcsHeader",
  footer = "rcsFooter", copy_allowed = "rcsCopyAllowed", agency_id = "rcsAgencyId",
  brand_key = "rcsBrandKey", agency_key = "rcsAgencyKey",
}
_M.kakao_fields, _M.rcs_fields = KAKAO, RCS

--- OneShot's limits in CP949 bytes (the protocol's sms_max and lms_max; an
-- MMS carries as much text as an LMS).
function _M.limits_of(opts)
  local lms = opts and opts.lms_max or 2000
  return { charset = "cp949", sms = opts and opts.sms_max or 90, lms = lms, mms = lms }
end
_M.limits = _M.limits_of(nil)

local function fail(category, code, message)
  return nil, errors.new { category = category, code = code, message = message, provider = "oneshot" }
end

-- A caller's text field: nil, a string as it is, a number as its digits.
local function opt_str(v, name)
  if v == nil then return nil end
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  misuse("ksms.oneshot: '" .. name .. "' must be a string")
end

-- The frame writer refuses text that is not UTF-8: say so here, naming the
-- field, before the message is queued. Only what the caller gave is
-- checked (the rest of the body is ours), and only when it is there: this
-- runs for every message.
local function bad_utf8(field)
  return nil, errors.new { category = "invalid_input", code = "bad_utf8", provider = "oneshot",
    message = field .. " is not valid UTF-8" }
end

-- A caller's optional text field, checked: s | nil (absent) | false, field.
local function text_of(v, name, field)
  if v == nil then return nil end
  v = opt_str(v, name)
  if v ~= "" and not cp949_len(v) then return false, field end
  return v
end

local function check_misuse(msg)
  if type(msg) ~= "table" then misuse("ksms.oneshot: submit needs a message table") end
  for k in pairs(msg) do
    if not FIELDS[k] then misuse("ksms.oneshot: unknown field '" .. tostring(k) .. "' in submit") end
  end
  if msg.to == nil then misuse("ksms.oneshot: submit needs 'to'") end
  if msg.from == nil then misuse("ksms.oneshot: submit needs 'from'") end
  if type(msg.text) ~= "string" then misuse("ksms.oneshot: submit needs 'text' (a string)") end
  if msg.expires_at ~= nil and type(msg.expires_at) ~= "number" then
    misuse("ksms.oneshot: 'expires_at' must be a number (epoch seconds)")
  end
  local kind = msg.kind
  if kind ~= nil and kind ~= "auto" and not KINDS[kind] then
    misuse("ksms.oneshot: unknown kind '" .. tostring(kind) .. "'")
  end
  local kakao, rcs = msg.kakao, msg.rcs
  if kakao ~= nil then
    if type(kakao) ~= "table" then misuse("ksms.oneshot: 'kakao' must be a table") end
    for k in pairs(kakao) do if not KAKAO[k] then misuse("ksms.oneshot: unknown kakao field '" .. tostring(k) .. "'") end end
  end
  if rcs ~= nil then
    if type(rcs) ~= "table" then misuse("ksms.oneshot: 'rcs' must be a table") end
    for k in pairs(rcs) do if not RCS[k] then misuse("ksms.oneshot: unknown rcs field '" .. tostring(k) .. "'") end end
  end
  local files = msg.files
  if files ~= nil and type(files) ~= "table" then misuse("ksms.oneshot: 'files' must be a list of uploaded file names") end
  if msg.id ~= nil and msg.user_msg_id ~= nil then misuse("ksms: give id or user_msg_id, not both") end
end

--- Checks a message and builds its MsgSendReq body.
-- @tparam table msg
-- @tparam table limits sms_max, lms_max, charset
-- @return body, kind, or nil, err
-- @raise on misuse
function _M.build(msg, limits)
  check_misuse(msg)
  local kind = msg.kind or "auto"
  local kakao, rcs, files = msg.kakao, msg.rcs, msg.files

  -- data checks: nil, err
  local to, err = phone.normalize(msg.to, "to")
  if not to then return nil, err end
  local from, ferr = phone.normalize(msg.from, "from")
  if not from then
    ferr.category = "sender_number"
    return nil, ferr
  end
  local text = msg.text
  if text == "" then return fail("invalid_input", "empty_text", "text is empty") end
  local text_kind = TEXT_KINDS[kind]
  if not text_kind then
    -- (choose_kind checks the text kinds' UTF-8 with their charset)
    local len, lerr = cp949_len(text)
    if not len then return nil, lerr end
  end
  local nfiles = files and #files or 0
  if nfiles > 3 then return fail("invalid_input", "too_many_files", "at most 3 files per message") end

  local msg_type
  if text_kind then
    local cerr
    kind, cerr = choose_kind(text, kind, nfiles > 0, limits or _M.limits)
    if not kind then cerr.provider = "oneshot"; return nil, cerr end
    msg_type = KINDS[kind]
  else
    msg_type = KINDS[kind]
    if msg_type == 7 or msg_type == 71 then
      if not (kakao and kakao.sender_key and kakao.template_code) then
        return fail("template", "missing_template", "AlimTalk needs kakao.sender_key and kakao.template_code")
      end
    elseif msg_type == 8 then
      if not (kakao and kakao.sender_key) then
        return fail("channel", "missing_sender_key", "FriendTalk needs kakao.sender_key")
      end
    elseif not (rcs and rcs.message_base_id) then -- 9 to 12
      return fail("invalid_input", "missing_rcs_base_id", "RCS needs rcs.message_base_id")
    end
  end
  local reseller = opt_str(msg.reseller_code, "reseller_code")
  if reseller and reseller ~= "" and not reseller:match("^%w+$") then
    return fail("invalid_input", "bad_reseller_code", "reseller_code must be alphanumeric (9 characters)")
  end

  local id, sub_id, tran_id, subject, user_data, bad
  id, bad = text_of(msg.user_msg_id or msg.id, "user_msg_id", "UserMsgId")
  if id == false then return bad_utf8(bad) end
  sub_id, bad = text_of(msg.user_msg_sub_id or msg.sub_id, "sub_id", "UserMsgSubId")
  if sub_id == false then return bad_utf8(bad) end
  tran_id, bad = text_of(msg.tran_id, "tran_id", "TranId")
  if tran_id == false then return bad_utf8(bad) end
  if msg_type ~= 4 then
    subject, bad = text_of(msg.subject, "subject", "Subject")
    if subject == false then return bad_utf8(bad) end
  end
  user_data, bad = text_of(msg.user_data, "user_data", "UserData")
  if user_data == false then return bad_utf8(bad) end

  local body = {
    UserMsgId = id, UserMsgSubId = sub_id or "", MsgType = msg_type, PhoneNo = to, CallbackNo = from,
    TranId = tran_id or "", Subject = subject or "", Message = text,
    KakaoAdFlag = "", KakaoNationCode = "", KakaoSenderKey = "", KakaoTemplateCode = "",
    KakaoTimeout = 0, KakaoButton = "", FileCount = nfiles,
    FileType1 = "", FileName1 = "", FileType2 = "", FileName2 = "", FileType3 = "", FileName3 = "",
    UserData = user_data or "",
    -- Left out when empty, as in the document's example frame.
    ResellerCode = reseller ~= "" and reseller or nil,
  }
  for i = 1, nfiles do
    local field = "FileName" .. i
    local name = text_of(files[i], "files[" .. i .. "]", field)
    if name == false then return bad_utf8(field) end
    body["FileType" .. i] = "IMG"
    body[field] = name
  end
  if kakao then
    for k, v in pairs(kakao) do
      local field = KAKAO[k]
      if type(v) == "string" and not cp949_len(v) then return bad_utf8(field) end
      body[field] = v
    end
  end
  if rcs then
    for k, v in pairs(rcs) do
      local field = RCS[k]
      if type(v) == "string" and not cp949_len(v) then return bad_utf8(field) end
      body[field] = v
    end
  end
  return body, kind
end

return _M
