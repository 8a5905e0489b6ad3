-- senders.lua - the fake Senders API V2 (seeds/000): sms_send and remainCoin,
-- form fields in, JSON out, return codes 100 155 185 225 315 325 415.
local rules = require "fakes.send_rules"
local json = require "fakes.json"

local _M = { name = "senders" }

function _M.default_state()
  return {
    api_key = "test-senders-key",
    account_blocked = false,          -- true: the key is right but the member may not send (155)
    senders = json.array({ "0212345678", "01012345678", "15884567" }),  -- registered caller numbers
    balance = 100000,                 -- coins
    costs = { sms = 1, lms = 3, mms = 6 },   -- coins per recipient
    separator = "|",                  -- between recipients and in send_reserve_date
    max_recipients = 500,
    now = false,                      -- epoch seconds to pin the clock, false = real time
    content_type = "text/html; charset=UTF-8",  -- what a PHP endpoint sends by default
  }
end

_M.routes = {
  ["/APIV2/sms_send"] = function(state, f)
    return rules.sms_send(state, f, true)
  end,
  ["/APIV2/remainCoin"] = function(state, f)
    if not rules.key_ok(state, f) then return rules.result("155") end
    return 200, { remainCoin = rules.amount(state.balance) }
  end,
}

return _M
