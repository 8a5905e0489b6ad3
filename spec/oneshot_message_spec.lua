-- ksms.oneshot.message: a MsgSendReq body built and checked without a
-- connection (what the nginx handler and the CLI dry run use), with the
-- library's one SMS/LMS/MMS decision (ksms.rules.text).
local message = require "ksms.oneshot.message"
local text = require "ksms.rules.text"

local function m(extra)
  local t = { to = "010-1234-0001", from = "02-1234-5678", text = "hello" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

describe("ksms.oneshot.message", function()
  it("builds the body the protocol sends, without an id unless one is given", function()
    local body, kind = message.build(m(), message.limits)
    assert.equal("sms", kind)
    assert.is_nil(body.UserMsgId)
    assert.equal("", body.UserMsgSubId)
    assert.equal(4, body.MsgType)
    assert.equal("01012340001", body.PhoneNo)
    assert.equal("0212345678", body.CallbackNo)
    assert.equal("hello", body.Message)
    assert.equal(0, body.FileCount)
    body = assert(message.build(m { id = 7, sub_id = 2 }, message.limits))
    assert.equal("7", body.UserMsgId)
    assert.equal("2", body.UserMsgSubId)
    local _, k2 = message.build(m { text = "x", files = { "f.jpg" } }, message.limits)
    assert.equal("mms", k2)
  end)

  it("decides SMS/LMS/MMS as ksms.rules.text does, with the limits it is given", function()
    local limits = message.limits_of { sms_max = 10, lms_max = 20 }
    assert.same({ charset = "cp949", sms = 10, lms = 20, mms = 20 }, limits)
    assert.same({ charset = "cp949", sms = 90, lms = 2000, mms = 2000 }, message.limits)
    for _, t in ipairs { ("a"):rep(10), ("a"):rep(11), ("가"):rep(10), ("가"):rep(11) } do
      local want, werr = text.choose_kind(t, "auto", false, limits)
      local body, kind = message.build(m { text = t }, limits)
      if want then
        assert.equal(want, kind)
        assert.equal(message.kinds[want], body.MsgType)
      else
        assert.is_nil(body)
        assert.equal(werr.category, kind.category)
        assert.equal(werr.code, kind.code)
        assert.equal("oneshot", kind.provider)
      end
    end
  end)

  it("checks the caller's text fields for UTF-8, naming the field", function()
    for _, case in ipairs {
      { { kind = "lms", subject = "\255" }, "Subject" }, { { user_data = "\255" }, "UserData" },
      { { tran_id = "\255" }, "TranId" }, { { id = "\255" }, "UserMsgId" },
      { { sub_id = "\255" }, "UserMsgSubId" }, { { files = { "\255" } }, "FileName1" },
      { { kind = "friendtalk", kakao = { sender_key = "SK", title = "\255" } }, "kakaoTitle" },
      { { kind = "rcs_sms", rcs = { message_base_id = "B", footer = "\255" } }, "rcsFooter" },
    } do
      local body, err = message.build(m(case[1]), message.limits)
      assert.is_nil(body, case[2])
      assert.equal("bad_utf8", err.code)
      assert.equal("invalid_input", err.category)
      assert.matches("^" .. case[2] .. " is not valid UTF%-8", err.message)
    end
  end)

  it("raises misuse at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(message.build, m { colour = "red" }, message.limits)
    assert.is_false(ok)
    assert.matches("oneshot_message_spec%.lua:" .. line .. ": ksms.oneshot: unknown field 'colour'", err)
    ok, err = pcall(function() return message.build(m { kind = "lms", subject = {} }, message.limits) end)
    assert.is_false(ok)
    assert.matches("oneshot_message_spec%.lua:%d+: ksms.oneshot: 'subject' must be a string", err)
    ok, err = pcall(function() return text.choose_kind("x", "fax", false, message.limits) end)
    assert.matches("oneshot_message_spec%.lua:%d+: ksms: kind must be", err)
  end)
end)
