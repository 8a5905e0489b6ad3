-- ksms.oneshot.session end to end: the protocol over the core's TCP client
-- against the fake OneShot server (a real process on 127.0.0.1).
local session = require "ksms.oneshot.session"
local fake_control = require "fake_control"

-- The fake's account, with a short reconnect delay for the specs.
local opts = require("spec_helper").oneshot_options

describe("oneshot session", function()
  local fake
  setup(function() fake = fake_control.start("oneshot", { state = { speed = 50, report_delay_ms = 20 } }) end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("binds, sends an SMS and an LMS, and unbinds", function()
    local s = session.new(opts(fake))
    assert(s:connect())
    local r1 = assert(s:send { to = "010-1234-5678", from = "1566-6639", text = "안녕하세요" })
    assert.is_true(r1.ok)
    assert.equal(0, r1.code)
    local r2 = assert(s:send { to = "01012345678", from = "15666639", subject = "긴 글", text = ("가"):rep(60) })
    assert.is_true(r2.ok)
    s:close()
    local sent = fake:requests("MsgSendReq")
    assert.equal(2, #sent)
    assert.equal(4, sent[1].body.MsgType)
    assert.equal(6, sent[2].body.MsgType)
    assert.equal("01012345678", sent[1].body.PhoneNo)
    assert.equal(1, fake:stats().unbinds)
  end)

  it("reports a refused bind clearly", function()
    local s = session.new(opts(fake, { password = "wrong" }))
    local ok, err = s:connect(3)
    assert.is_nil(ok)
    assert.equal("5", tostring(err.code))
    assert.equal("auth", err.category)
    s:close()
  end)

  it("never sends faster than the granted Speed, and delivers reports once, acknowledged", function()
    fake:state { speed = 20 }
    local reports = {}
    local s = session.new(opts(fake, { on_report = function(ev) reports[#reports + 1] = ev end }))
    assert(s:connect())
    local outcomes = {}
    for i = 1, 50 do
      assert(s:submit({ to = "01012345678", from = "15666639", text = "메시지 " .. i },
        function(r, e) outcomes[#outcomes + 1] = r or e end))
    end
    assert(s:flush(10))
    s:poll(0.3) -- let the pushed reports arrive
    s:close()
    assert.equal(50, #outcomes)
    for _, o in ipairs(outcomes) do assert.is_true(o.ok, tostring(o.category and o)) end
    local st = fake:stats()
    assert.is_true(st.max_per_second <= 20, "max per second " .. st.max_per_second)
    assert.equal(0, st.speed_errors)
    assert.equal(50, #reports)
    assert.equal(50, st.reports_acked)
  end)

  it("gives a maybe-sent outcome to a message whose connection died, and sends the rest after reconnect", function()
    local s = session.new(opts(fake))
    assert(s:connect())
    fake:script { method = "MsgSendReq", fault = "close", times = 1 }
    local outcomes = {}
    for i = 1, 3 do
      assert(s:submit({ to = "01012345678", from = "15666639", text = "재연결 " .. i },
        function(r, e) outcomes[i] = r or e end))
    end
    assert(s:flush(10))
    s:close()
    local maybe, ok = 0, 0
    for i = 1, 3 do
      if outcomes[i].ok then ok = ok + 1
      else
        assert.equal("unknown", outcomes[i].category)
        assert.is_true(outcomes[i].maybe_sent)
        maybe = maybe + 1
      end
    end
    assert.is_true(maybe >= 1)
    assert.equal(3, ok + maybe)
    -- Nothing was sent twice: each text reached the server at most once.
    local seen = {}
    for _, r in ipairs(fake:requests("MsgSendReq")) do
      assert.is_nil(seen[r.body.Message], "sent twice: " .. r.body.Message)
      seen[r.body.Message] = true
    end
    assert.is_true(fake:stats().binds >= 2)
  end)

  it("is reachable as ksms.client(\"oneshot\") with the same send shape", function()
    local client = require("ksms").client("oneshot", opts(fake))
    local res = assert(client:send { to = { "010-1111-2222", "010-3333-4444" }, from = "1566-6639", text = "통합" })
    assert.equal(2, res.recipients)
    local outs = client:send_many {
      { to = "01011112222", from = "15666639", text = "하나" },
      { to = "999", from = "15666639", text = "둘" },
    }
    assert.is_true(outs[1].ok)
    assert.equal("recipient", outs[2].category)
    assert.has_error(function() client:send { to = "01011112222", from = "15666639", text = "x", at = os.time() + 60 } end)
    client:close()
    assert.equal(3, #fake:requests("MsgSendReq"))
  end)

  it("sends AlimTalk and FriendTalk through ksms.client(\"oneshot\"), and results name their kind", function()
    local client = require("ksms").client("oneshot", opts(fake))
    assert.is_false(client.capabilities.report) -- reports are pushed, not fetched
    local sms = assert(client:send { to = "01011112222", from = "15666639", text = "짧은 글" })
    assert.equal("sms", sms.kind)
    local lms = assert(client:send { to = "01011112222", from = "15666639", text = ("가"):rep(60) })
    assert.equal("lms", lms.kind)
    local at = assert(client:alimtalk { to = "01011112222", from = "15666639", text = "주문 완료",
      kakao = { sender_key = "sk-1", template_code = "T001" } })
    assert.equal("alimtalk", at.kind)
    local ft = assert(client:friendtalk { to = "01011112222", from = "15666639", text = "할인",
      kakao = { sender_key = "sk-1" } })
    assert.equal("friendtalk", ft.kind)
    client:close()
    local sent = fake:requests("MsgSendReq")
    assert.same({ 4, 6, 7, 8 }, { sent[1].body.MsgType, sent[2].body.MsgType, sent[3].body.MsgType, sent[4].body.MsgType })
    assert.equal("T001", sent[3].body.KakaoTemplateCode)
  end)

  it("answers a send whose outcome is late with maybe_sent, and sends it once", function()
    local s = session.new(opts(fake))
    assert(s:connect())
    fake:script { method = "MsgSendReq", latency_ms = 800, times = 1 }
    local res, err = s:send({ to = "01012345678", from = "15666639", text = "늦은 답" }, 0.2)
    assert.is_nil(res)
    assert.equal("unknown", err.category)
    assert.is_true(err.maybe_sent)
    assert(s:flush(5)) -- the answer still comes; nothing is sent again
    s:close()
    assert.equal(1, #fake:requests("MsgSendReq"))
  end)

  it("uses a message's user_msg_id as its UserMsgId", function()
    local s = session.new(opts(fake))
    assert(s:connect())
    local r = assert(s:send { to = "01012345678", from = "15666639", text = "아이디", user_msg_id = "order-42" })
    assert.equal("order-42", r.id)
    s:close()
    assert.equal("order-42", fake:requests("MsgSendReq")[1].body.UserMsgId)
  end)

  it("holds or refuses messages outside the granted sending window (Korea time)", function()
    local h = os.date("!*t", os.time() + 9 * 3600).hour
    fake:state { begin_time = (h + 2) % 24, end_time = (h + 3) % 24 }
    local held = session.new(opts(fake))
    assert(held:connect())
    local outcome
    assert(held:submit({ to = "01012345678", from = "15666639", text = "대기" }, function(r, e) outcome = r or e end))
    assert.is_nil(held:flush(0.5))
    assert.is_nil(outcome)
    assert.equal(0, #fake:requests("MsgSendReq"))
    held:close()
    assert.equal("closed", outcome.code)
    local refusing = session.new(opts(fake, { outside_window = "refuse" }))
    assert(refusing:connect())
    local ok, err = refusing:submit { to = "01012345678", from = "15666639", text = "거절" }
    assert.is_nil(ok)
    assert.equal("schedule", err.category)
    refusing:close()
    -- Inside the window it goes.
    fake:state { begin_time = h, end_time = (h + 1) % 24 }
    local open = session.new(opts(fake, { outside_window = "refuse" }))
    assert(open:connect())
    assert(open:send { to = "01012345678", from = "15666639", text = "보냄" })
    open:close()
    assert.equal(1, #fake:requests("MsgSendReq"))
    assert.is_true(session.in_window({ begin_time = 22, end_time = 3 }, 1700000000 - 9 * 3600 + 0)
      == (os.date("!*t", 1700000000).hour >= 22 or os.date("!*t", 1700000000).hour < 3))
    assert.is_true(session.in_window({ begin_time = 0, end_time = 24 }, 0))
    assert.has_error(function() session.new(opts(fake, { outside_window = "drop" })) end)
  end)

  it("uploads MMS images through the name, data and finish steps and sends them", function()
    local s = session.new(opts(fake))
    assert(s:connect())
    local jpeg = "\255\216\255\224" .. ("j"):rep(6000) .. "\255\217" -- SOI ... EOI
    local r = assert(s:send { to = "01012345678", from = "15666639", subject = "사진", text = "사진입니다",
      images = { { data = jpeg } } })
    assert.is_true(r.ok)
    local sent = fake:requests("MsgSendReq")[1].body
    assert.equal(6, sent.MsgType)
    assert.equal(1, sent.FileCount)
    assert.is_string(sent.FileName1)
    assert.is_true(#sent.FileName1 > 0)
    assert.is_true(#fake:requests("UploadFileNameReq") == 1)
    assert.is_true(#fake:requests("UploadFileFinishReq") == 1)
    local _, e1 = s:send { to = "01012345678", from = "15666639", text = "x", images = { { data = "PNG..." } } }
    assert.equal("image", e1.code)
    local _, e3 = s:send { to = "01012345678", from = "15666639", text = "x", images = { { data = jpeg:sub(1, -3) } } }
    assert.equal("image", e3.code)
    local big = "\255\216\255" .. ("x"):rep(600 * 1024) .. "\255\217"
    local _, e2 = s:send { to = "01012345678", from = "15666639", text = "x", images = { { data = big }, { data = big } } }
    assert.equal("image", e2.code)
    s:close()
    assert.equal(1, #fake:requests("MsgSendReq"))
  end)

  it("refuses bad input before sending and bounds the queue", function()
    local s = session.new(opts(fake, { queue_limit = 2 }))
    local _, e1 = s:submit { to = "12", from = "15666639", text = "x" }
    assert.equal("recipient", e1.category)
    assert(s:submit { to = "01012345678", from = "15666639", text = "a" })
    assert(s:submit { to = "01012345678", from = "15666639", text = "b" })
    local _, e2 = s:submit { to = "01012345678", from = "15666639", text = "c" }
    assert.equal("rate_limit", e2.category)
    -- Closing before anything was sent still gives each message its outcome.
    local outcomes = {}
    local s2 = session.new(opts(fake))
    for i = 1, 3 do
      assert(s2:submit({ to = "01012345678", from = "15666639", text = "q" .. i }, function(r, e) outcomes[i] = r or e end))
    end
    s2:close()
    for i = 1, 3 do
      assert.equal("closed", outcomes[i].code)
      assert.is_false(outcomes[i].maybe_sent)
    end
    s:close()
    assert.equal(0, #fake:requests("MsgSendReq"))
  end)
end)
