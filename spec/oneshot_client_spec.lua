-- ksms.client("oneshot") as a peer of the HTTP clients: limits,
-- capabilities and options where the HTTP clients have them, AlimTalk and
-- FriendTalk in the HTTP providers' fields, and send_many checking every
-- message for misuse before it queues any.
local ksms = require "ksms"
local fake_control = require "fake_control"

local FROM = "15666639"

describe("ksms.client(\"oneshot\")", function()
  local fake
  setup(function() fake = fake_control.start("oneshot") end)
  teardown(function() fake_control.stop_all() end)

  it("has limits, capabilities and options like the HTTP clients", function()
    local oc = require "ksms.oneshot.client"
    local c = ksms.client("oneshot", fake:session_options())
    assert.equal("cp949", c.limits.charset)
    assert.equal(90, c.limits.sms)
    assert.equal(2000, c.limits.lms)
    assert.equal("push", c.capabilities.reports)
    assert.is_false(c.capabilities.reservation)
    assert.is_false(c.capabilities.balance)
    assert.equal(oc.capabilities, c.capabilities)
    for _, k in ipairs { "host", "port", "id", "password", "key", "iv", "reconnect_delay", "sms_max", "require_tls" } do
      assert.is_string(oc.options[k], k)
    end
    c:close()
    -- The client's limits are its protocol's.
    c = ksms.client("oneshot", fake:session_options { sms_max = 80, lms_max = 1500 })
    assert.equal(80, c.limits.sms)
    assert.equal(1500, c.limits.lms)
    assert.equal(90, oc.limits.sms)
    c:close()
  end)

  it("send_many raises for misuse in any message before it queues one", function()
    local c = ksms.client("oneshot", fake:session_options { reconnect_delay = 0.2 })
    local good = { to = "01011112222", from = FROM, text = "x" }
    local ok, err = pcall(function()
      local _ = c:send_many { good, good, { to = "01011112222", from = FROM, text = "x", bogus = 1 } }
    end)
    assert.is_false(ok)
    assert.matches("unknown field 'bogus'", err)
    assert.matches("oneshot_client_spec.lua", err, 1, true)
    assert.equal(0, c.session.p:queued() + c.session.p:in_flight())
    ok, err = pcall(c.send_many, c, { good, { to = "01011112222", from = FROM, text = "x", at = 1 } })
    assert.is_false(ok)
    assert.matches("no reservations", err)
    assert.equal(0, c.session.p:queued() + c.session.p:in_flight())
    -- A list of recipients in send likewise.
    ok, err = pcall(c.send, c, { to = { "01011112222", "01022223333" }, from = FROM, text = "x", kind = "fax" })
    assert.is_false(ok)
    assert.matches("unknown kind 'fax'", err)
    assert.equal(0, c.session.p:queued() + c.session.p:in_flight())
    -- The next batch gets its own outcomes, nothing left over.
    local outs = c:send_many { good, good }
    assert.equal(2, #outs)
    assert.is_true(outs[1].ok, tostring(outs[1]))
    assert.is_true(outs[2].ok, tostring(outs[2]))
    assert.equal(0, c.session.p:queued() + c.session.p:in_flight())
    c:close()
  end)

  it("maps AlimTalk and FriendTalk fields onto the protocol's kakao fields", function()
    local c = ksms.client("oneshot", fake:session_options { reconnect_delay = 0.2 })
    fake:reset()
    local res, err = c:alimtalk { to = "01011112222", from = FROM, template = "T1", sender_key = "SK1",
      text = "주문 완료" }
    assert.is_truthy(res, tostring(err))
    assert.equal("alimtalk", res.kind)
    res, err = c:friendtalk { to = "01011112222", from = FROM, channel = "SK2", text = "hi",
      button = '{"button":[]}', image_link = "https://example.com/x" }
    assert.is_truthy(res, tostring(err))
    local recs = fake:requests("MsgSendReq")
    assert.equal(2, #recs)
    assert.equal(7, recs[1].body.MsgType)
    assert.equal("T1", recs[1].body.KakaoTemplateCode)
    assert.equal("SK1", recs[1].body.KakaoSenderKey)
    assert.equal(8, recs[2].body.MsgType)
    assert.equal("SK2", recs[2].body.KakaoSenderKey)
    assert.equal('{"button":[]}', recs[2].body.KakaoButton)
    assert.equal("https://example.com/x", recs[2].body.kakaoImageLink)
    -- The protocol's kakao table still works, and a conflict raises.
    res, err = c:alimtalk { to = "01011112222", from = FROM, text = "x",
      kakao = { sender_key = "SK1", template_code = "T1" } }
    assert.is_truthy(res, tostring(err))
    assert.has_error(function()
      c:alimtalk { to = "01011112222", from = FROM, text = "x", template = "T2", kakao = { template_code = "T1" } }
    end)
    assert.has_error(function()
      c:alimtalk { to = "01011112222", from = FROM, template = "T1", variables = { "a" }, text = "x" }
    end)
    assert.has_error(function()
      c:friendtalk { to = "01011112222", from = FROM, channel = "SK2", text = "x", button = { name = "a", url = "b" } }
    end)
    c:close()
  end)
end)
