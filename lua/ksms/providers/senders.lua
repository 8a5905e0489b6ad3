-- ksms.providers.senders: Senders API V2 (the provider's document). Form POSTs
-- to /APIV2/sms_send and /APIV2/remainCoin, answered {"result":"<code>"}.
local apiv2 = require "ksms.providers.apiv2"

return apiv2.define {
  name = "senders",
  -- The document publishes a bare IP over plain HTTP.
  default_base_url = "http://221.139.14.138",
  paths = { sms = "/APIV2/sms_send", balance = "/APIV2/remainCoin" },
  balance_field = "remainCoin",
  balance_unit = "coin",
  call_block = true, -- the 080 opt-out flag (message field opt_out)
  codes = {
    ["100"] = { ok = true, en = "accepted", ko = "데이터 전송 성공" },
    ["155"] = { category = "auth", en = "API key or account status error", ko = "API key/회원 상태 관련 오류" },
    ["185"] = { category = "balance", en = "not enough coins", ko = "Coin 부족" },
    ["225"] = { category = "message_length", en = "message empty or too long (at most 2,000 bytes)", ko = "Message length 오류" },
    ["315"] = { category = "sender_number", en = "caller number not registered", ko = "발신번호 오류" },
    ["325"] = { category = "recipient", en = "no recipient, or more than 500", ko = "수신번호 오류" },
    ["415"] = { category = "schedule", en = "reservation time missing, partial or in the past", ko = "예약발송 시간 오류" },
  },
}
