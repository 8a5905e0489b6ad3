-- messageme.lua - the fake MessageMe API V2 (seeds/002): sms_send,
-- alimtalk_send, friendstalk_send, remainCash, and the MO webhook it calls.
-- Codes 100 155 175 185 215 225 235 315 from the document's table; 325 and
-- 415 from Senders' table (same company, same fields), since the MessageMe
-- document lists no code for a bad recipient or reservation time.
local rules = require "fakes.send_rules"
local korean = require "fakes.korean"
local json = require "fakes.json"

local _M = { name = "messageme" }

local ALIMTALK_MAX_CHARS = 1000      -- the text after substitution
local FRIENDTALK_MAX_CHARS = 1000
local FRIENDTALK_IMAGE_MAX_CHARS = 400
local BUTTON_NAME_MAX_CHARS = 10

function _M.default_state()
  return {
    api_key = "test-messageme-key",
    account_blocked = false,          -- true: right key, member may not send (155)
    senders = json.array({ "0212345678", "01012345678", "15884567" }),
    channels = json.array({ "@ksms" }),      -- registered KakaoTalk channels
    templates = {                     -- approved AlimTalk templates: code -> text
      WELCOME_01 = "#{이름}님, 가입을 환영합니다.",
      ORDER_02 = "#{이름}님 주문 #{주문번호}이(가) 접수되었습니다.",
    },
    balance = 100000,                 -- cash, won
    costs = { sms = 20, lms = 50, mms = 200,               -- won per recipient
              alimtalk = 15, friendtalk = 20, friendtalk_image = 30 },
    separator = "|",
    max_recipients = 500,
    now = false,
    content_type = "text/html; charset=UTF-8",
  }
end

local function listed(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- Recipient, reservation and next_type checks both KakaoTalk sends share,
-- then the charge. With next_type "1" the balance must also cover the SMS
-- or LMS that replaces a failed KakaoTalk message ("대치발송 포함"); only
-- the KakaoTalk message itself is charged.
local function kakao_send(state, f, kakao_cost, text)
  if not rules.callback_ok(state, f) then return rules.result("315") end
  local to = rules.recipients(state, f)
  if not to then return rules.result("325") end
  local reserve_ok, reserve_err = rules.reserve_ok(state, f)
  if reserve_ok == nil then return rules.undocumented(reserve_err) end
  if not reserve_ok then return rules.result("415") end
  if not rules.flag_ok(f.next_type) then return rules.undocumented("next_type must be 0 or 1") end
  local fallback = 0
  if f.next_type == "1" then fallback = state.costs[rules.message_kind(text)] end
  if state.balance < (kakao_cost + fallback) * #to then return rules.result("185") end
  rules.charge(state, kakao_cost * #to)
  return rules.result("100")
end

local PLACEHOLDER = "#{[^}]*}"

local function alimtalk_send(state, f)
  if not rules.key_ok(state, f) then return rules.result("155") end
  local template = state.templates[f.template_code or ""]
  if not template then return rules.result("215") end
  local ok, err = rules.text_ok(f.variable, "variable")
  if not ok then return rules.undocumented(err) end
  local _, wanted = template:gsub(PLACEHOLDER, "")
  local values = {}
  if f.variable ~= nil then values = korean.split(f.variable, state.separator) end
  if #values ~= wanted then return rules.result("235") end
  for _, v in ipairs(values) do
    if v == "" then return rules.result("235") end
  end
  local i = 0
  local text = template:gsub(PLACEHOLDER, function()
    i = i + 1
    return values[i]
  end)
  if korean.char_len(text) > ALIMTALK_MAX_CHARS then return rules.result("225") end
  return kakao_send(state, f, state.costs.alimtalk, text)
end

local function friendtalk_send(state, f)
  if not rules.key_ok(state, f) then return rules.result("155") end
  if not listed(state.channels, f.kakaochannel) then return rules.result("175") end
  for _, name in ipairs({ "msg", "button_name" }) do
    local ok, err = rules.text_ok(f[name], name)
    if not ok then return rules.undocumented(err) end
  end
  local has_image = f.image ~= nil and f.image ~= ""
  local limit = has_image and FRIENDTALK_IMAGE_MAX_CHARS or FRIENDTALK_MAX_CHARS
  if not f.msg or f.msg == "" or korean.char_len(f.msg) > limit then
    return rules.result("225")
  end
  if not rules.flag_ok(f.button_type) then return rules.undocumented("button_type must be 0 or 1") end
  if f.button_type == "1" then
    if not f.button_name or f.button_name == ""
       or korean.char_len(f.button_name) > BUTTON_NAME_MAX_CHARS then
      return rules.undocumented("button_name: 1 to 10 characters")
    end
    if not rules.is_url(f.button_url) then
      return rules.undocumented("button_url must be a full http:// or https:// URL")
    end
  end
  if has_image and not rules.is_jpg(f.image) then
    return rules.undocumented("image must be a .jpg URL")
  end
  if f.image_link_url and f.image_link_url ~= "" and not rules.is_url(f.image_link_url) then
    return rules.undocumented("image_link_url must be a full http:// or https:// URL")
  end
  local cost = has_image and state.costs.friendtalk_image or state.costs.friendtalk
  return kakao_send(state, f, cost, f.msg)
end

_M.routes = {
  ["/APIV2/API/sms_send"] = function(state, f) return rules.sms_send(state, f, false) end,
  ["/APIV2/API/alimtalk_send"] = alimtalk_send,
  ["/APIV2/API/friendstalk_send"] = friendtalk_send,
  ["/APIV2/API/remainCash"] = function(state, f)
    if not rules.key_ok(state, f) then return rules.result("155") end
    return 200, { remainCash = rules.amount(state.balance) }
  end,
}

local MO_ORDER = { "msg", "phone", "subject", "fileloc1", "fileloc2", "fileloc3",
                   "fileloc4", "fileloc5" }

-- The form fields of an MO webhook call, in the document's order. Given as
-- a list of [name, value] pairs they are sent exactly so. Given as an
-- object, a long message or MMS without a subject gets "[제목없음]", as the
-- document says the provider sends.
function _M.mo_fields(fields)
  if fields[1] then
    local list = {}
    for i, f in ipairs(fields) do list[i] = { tostring(f[1]), tostring(f[2]) } end
    return list
  end
  local values = {}
  for k, v in pairs(fields) do values[k] = tostring(v) end
  local is_mms = false
  for i = 1, 5 do is_mms = is_mms or values["fileloc" .. i] ~= nil end
  if values.subject == nil and (is_mms or korean.cp949_len(values.msg or "") > 90) then
    values.subject = "[제목없음]"
  end
  local list, seen = {}, {}
  for _, name in ipairs(MO_ORDER) do
    if values[name] ~= nil then
      list[#list + 1] = { name, values[name] }
      seen[name] = true
    end
  end
  local rest = {}
  for name in pairs(values) do
    if not seen[name] then rest[#rest + 1] = name end
  end
  table.sort(rest)
  for _, name in ipairs(rest) do list[#list + 1] = { name, values[name] } end
  return list
end

return _M
