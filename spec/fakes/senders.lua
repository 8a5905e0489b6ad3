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
    -- { per_second = n, retry_after = "1" }: a provider that throttles: a
    -- send arriving when n sends were answered within the last second gets
    -- HTTP 429 with that Retry-After (omitted when retry_after is false),
    -- nothing charged; throttled counts those answers.
    throttle = false,
    throttled = 0,
  }
end

-- The arrival times of the sends answered, per state table (a reset makes
-- a new one, so the window starts empty).
local answered = setmetatable({}, { __mode = "k" })

local function throttled(state, req)
  local t = state.throttle
  if type(t) ~= "table" or type(t.per_second) ~= "number" then return nil end
  local now = req.at
  local list = answered[state] or {}
  answered[state] = list
  while list[1] and now - list[1] >= 1 do table.remove(list, 1) end
  if #list >= t.per_second then
    state.throttled = (state.throttled or 0) + 1
    local headers = { ["Content-Type"] = state.content_type }
    if t.retry_after ~= false then headers["Retry-After"] = tostring(t.retry_after or "1") end
    return 429, { fake_error = "too many requests" }, headers
  end
  list[#list + 1] = now
  return nil
end

_M.routes = {
  ["/APIV2/sms_send"] = function(state, f, req)
    local status, answer, headers = throttled(state, req)
    if status then return status, answer, headers end
    return rules.sms_send(state, f, true)
  end,
  ["/APIV2/remainCoin"] = function(state, f)
    if not rules.key_ok(state, f) then return rules.result("155") end
    return 200, { remainCoin = rules.amount(state.balance) }
  end,
}

return _M
