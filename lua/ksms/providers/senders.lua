--- ksms.providers.senders: Senders API V2 (the provider's document). Form POSTs
-- to /APIV2/sms_send and /APIV2/remainCoin, answered {"result":"<code>"}.
-- @module ksms.providers.senders
local apiv2 = require "ksms.providers.apiv2"
local codes = require "ksms.codes"
local ok, fail = codes.ok, codes.fail

return apiv2.define {
  name = "senders",
  -- The document publishes a bare IP over plain HTTP.
  default_base_url = "http://221.139.14.138",
  paths = { sms = "/APIV2/sms_send", balance = "/APIV2/remainCoin" },
  balance_field = "remainCoin",
  balance_unit = "coin",
  call_block = true, -- the 080 opt-out flag (message field opt_out)
  codes = {
    ["100"] = ok("accepted", "데이터 전송 성공"),
    ["155"] = fail("auth", "API key or account status error", "API key/회원 상태 관련 오류"),
    ["185"] = fail("balance", "not enough coins", "Coin 부족"),
    ["225"] = fail("message_length", "message empty or too long (at most 2,000 bytes)", "Message length 오류"),
    ["315"] = fail("sender_number", "caller number not registered", "발신번호 오류"),
    ["325"] = fail("recipient", "no recipient, or more than 500", "수신번호 오류"),
    ["415"] = fail("schedule", "reservation time missing, partial or in the past", "예약발송 시간 오류"),
  },
}
