-- ksms.oneshot.protocol: the sans-I/O OneShot client state machine, driven
-- purely with bytes (server frames built with the codec, bodies encrypted with
-- the core's AES) and virtual time.
local core = require "ksms.core"
local codec = require "ksms.oneshot.codec"
local codes = require "ksms.oneshot.codes"
local protocol = require "ksms.oneshot.protocol"
local pacer = require "ksms.oneshot.pacer"

local T = require "oneshot_scripted"
local KEY, IV = T.KEY, T.IV
local server, new, of_type, bound, sms, drain, answer =
  T.server, T.new, T.of_type, T.bound, T.sms, T.drain, T.answer

describe("ksms.oneshot.protocol", function()
  describe("bind", function()
    it("sends BindReq encrypted with the first 16 bytes of the key, and reports the grant", function()
      local p, S = new(), server()
      local msgs = S.read(p:connected(0))
      assert.equal(1, #msgs)
      assert.is_true(msgs[1].encrypted)
      assert.same({ BindId = "test001", BindPwd = "pw#$%", Version = 1 }, msgs[1].Body)
      assert.equal("bind_wait", p.state)
      local ev, out = p:receive(S.frame("BindRes", { Result = 0, BindId = "test001", Speed = 50,
        BeginTime = 8, EndTime = 21, EffectiveTime = 3 }, true), 0.1)
      assert.equal("", out)
      assert.same({ type = "bound", speed = 50, bind_id = "test001", begin_time = 8, end_time = 21,
        effective_time = 3 }, ev[1])
      assert.equal("bound", p.state)
    end)

    it("reports every login failure code with its category", function()
      local n = 0
      for code, d in pairs(codes.login) do
        if code ~= 0 then
          local p, S = new(), server()
          p:connected(0)
          local ev = p:receive(S.frame("BindRes", { Result = code, BindId = "test001" }, true), 0)
          assert.equal("bind_failed", ev[1].type)
          assert.equal(code, ev[1].code)
          assert.equal(d.category, ev[1].err.category)
          assert.equal(code, ev[1].err.code)
          assert.equal("oneshot", ev[1].err.provider)
          assert.equal(30, ev[1].retry_after)
          assert.matches(d.en, ev[1].err.message, 1, true)
          assert.equal("failed", p.state)
          n = n + 1
        end
      end
      assert.equal(19, n)
      assert.equal("duplicate", codes.login[2].category)
    end)

    it("gives up on a bind that gets no answer", function()
      local p = new()
      p:connected(5)
      assert.equal(15, p:next_deadline())
      assert.same({}, (p:poll(14.9)))
      local ev = p:poll(15)
      assert.same({ type = "dead", reason = "bind_timeout" }, ev[1])
    end)

    it("fails the bind on a body that does not decrypt, and reports garbage bytes as fatal", function()
      local p = new()
      p:connected(0)
      local ev = p:receive(codec.frame("BindRes", "bm90IGVuY3J5cHRlZA=="), 0)
      assert.equal("bind_failed", ev[1].type)
      assert.equal("bad_bind_answer", ev[1].err.code)
      p = bound(10)
      ev = p:receive(codec.frame("AliveRes", "bm90IGVuY3J5cHRlZA=="), 0)
      assert.equal("protocol_error", ev[1].type)
      assert.is_false(ev[1].fatal)
      ev = p:receive("HTTP/1.1 200 OK\r\n\r\n", 0)
      assert.equal("protocol_error", ev[#ev].type)
      assert.is_true(ev[#ev].fatal)
      assert.equal("protocol", ev[#ev].err.category)
    end)
  end)

  describe("codes", function()
    it("has every documented code with a category and both descriptions", function()
      local send_codes = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
        22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 37, 38, 39, 315, 316, 317, 318, 320,
        800, 900, 901, 902, 903, 904, 905, 906, 907, 908, 909, 910, 911, 997, 998, 999 }
      local cats = require("ksms.errors").categories
      for _, c in ipairs(send_codes) do
        local d = codes.send[c]
        assert.is_table(d, "code " .. c)
        assert.is_true(d.category == "ok" or cats[d.category], c)
        assert.is_string(d.ko); assert.is_string(d.en)
      end
      for c, d in pairs(codes.login) do assert.is_true(d.category == "ok" or cats[d.category], c) end
      assert.equal("duplicate", codes.send[320].category)
      assert.equal("rate_limit", codes.send[903].category)
      assert.equal("rate_limit", codes.send[11].category)
      assert.equal("schedule", codes.send[901].category)
      assert.is_nil(codes.error(codes.send, 0))
      assert.equal("unknown", codes.error(codes.send, 4242).category)
    end)

    it("maps every send result to the message's outcome", function()
      local p, S = bound(1000)
      local list = {}
      for c in pairs(codes.send) do if c ~= 903 and c ~= 11 then list[#list + 1] = c end end
      table.sort(list)
      list[#list + 1] = 4242 -- not documented
      for i = 1, #list do assert(p:submit(sms(i))) end
      local sent = drain(p, S, 0, 10)
      assert.equal(#list, #sent)
      for i, body in ipairs(sent) do
        local code = list[i]
        local ev = p:receive(answer(S, body, code), 10)
        assert.equal(1, #ev)
        assert.equal("result", ev[1].type)
        assert.equal(body.UserMsgId, ev[1].user_msg_id)
        assert.equal(code, ev[1].result)
        if code == 0 then
          assert.is_true(ev[1].ok)
          assert.same({ ok = true, code = 0 }, ev[1].outcome)
        else
          assert.is_false(ev[1].ok)
          local want = codes.send[code] and codes.send[code].category or "unknown"
          assert.equal(want, ev[1].outcome.category, "code " .. code)
          assert.equal(code, ev[1].outcome.code)
          assert.equal("oneshot", ev[1].outcome.provider)
        end
      end
      assert.equal(0, p:in_flight())
    end)
  end)

  describe("submit", function()
    it("picks SMS or LMS by CP949 length and fills the document's fields", function()
      local p, S = bound(1000)
      assert(p:submit(sms(1, { text = ("가"):rep(45), id = "a" })))        -- 90 bytes
      assert(p:submit(sms(2, { text = ("가"):rep(46), id = "b", subject = "제목" }))) -- 92
      assert(p:submit(sms(3, { text = "x", id = "c", files = { "f1.jpg" } })))
      local sent = drain(p, S, 0, 1)
      assert.equal(4, sent[1].MsgType)
      assert.equal("a", sent[1].UserMsgId)
      assert.equal("01012340001", sent[1].PhoneNo)
      assert.equal("0212345678", sent[1].CallbackNo)
      assert.equal(0, sent[1].FileCount)
      assert.is_nil(sent[1].ResellerCode)
      assert.equal(6, sent[2].MsgType)
      assert.equal("제목", sent[2].Subject)
      assert.equal(6, sent[3].MsgType)
      assert.equal(1, sent[3].FileCount)
      assert.equal("IMG", sent[3].FileType1)
      assert.equal("f1.jpg", sent[3].FileName1)
    end)

    it("refuses bad input before queueing, with ksms errors", function()
      local p = bound(100)
      local function refused(msg, category)
        local rec, err = p:submit(msg)
        assert.is_nil(rec)
        assert.equal(category, err.category)
        return err
      end
      refused(sms(1, { to = "123" }), "recipient")
      refused(sms(1, { from = "1" }), "sender_number")
      refused(sms(1, { kind = "sms", text = ("가"):rep(46) }), "message_length")
      refused(sms(1, { text = ("가"):rep(1001) }), "message_length")
      refused(sms(1, { text = "hi 😀" }), "invalid_input")
      refused(sms(1, { text = "" }), "invalid_input")
      refused(sms(1, { text = "bad \255" }), "invalid_input")
      refused(sms(1, { files = { "a", "b", "c", "d" } }), "invalid_input")
      refused(sms(1, { kind = "alimtalk", kakao = { sender_key = "k" } }), "template")
      refused(sms(1, { kind = "friendtalk" }), "channel")
      refused(sms(1, { kind = "rcs_sms" }), "invalid_input")
      refused(sms(1, { reseller_code = "bad code!" }), "invalid_input")
      assert(p:submit(sms(1, { id = "dup" })))
      refused(sms(2, { id = "dup" }), "duplicate")
      assert(p:submit(sms(2, { id = "dup", sub_id = "2" })))
      assert.equal(2, p:queued())
      -- misuse raises
      assert.has_error(function() p:submit(sms(1, { colour = "red" })) end)
      assert.has_error(function() p:submit { to = "01012345678", text = "x" } end)
      assert.has_error(function() p:submit(sms(1, { kind = "fax" })) end)
      assert.has_error(function() p:submit(sms(1, { kakao = { nope = 1 } })) end)
      assert.has_error(function() p:submit(sms(1, { to = 1012345678 })) end)
    end)

    it("builds AlimTalk, FriendTalk and RCS bodies", function()
      local p, S = bound(1000)
      assert(p:submit(sms(1, { kind = "alimtalk", kakao = { sender_key = "SK", template_code = "T1",
        button = "[]", title = "강조" }, reseller_code = "123456789" })))
      assert(p:submit(sms(2, { kind = "friendtalk", kakao = { sender_key = "SK", ad_flag = "Y",
        image_link = "https://x/y", wide = "Y", user_key = "u" } })))
      assert(p:submit(sms(3, { kind = "rcs_lms", rcs = { message_base_id = "SL000000", header = 0,
        footer = "0801234567", brand_key = "BK" } })))
      assert(p:submit(sms(4, { kind = "alimtalk_image", kakao = { sender_key = "SK", template_code = "T2" } })))
      local sent = drain(p, S, 0, 1)
      assert.equal(7, sent[1].MsgType)
      assert.equal("SK", sent[1].KakaoSenderKey)
      assert.equal("T1", sent[1].KakaoTemplateCode)
      assert.equal("강조", sent[1].kakaoTitle)
      assert.equal("123456789", sent[1].ResellerCode)
      assert.equal(8, sent[2].MsgType)
      assert.equal("Y", sent[2].KakaoAdFlag)
      assert.equal("Y", sent[2].kakaoWide)
      assert.equal("u", sent[2].kakaoUserKey)
      assert.equal(10, sent[3].MsgType)
      assert.equal("SL000000", sent[3].rcsMessageBaselId)
      assert.equal("BK", sent[3].rcsBrandKey)
      assert.equal(71, sent[4].MsgType)
    end)

    it("generates unique UserMsgIds", function()
      local p, S = bound(1000)
      for i = 1, 200 do assert(p:submit(sms(i))) end
      local sent = drain(p, S, 0, 5)
      local seen = {}
      for _, b in ipairs(sent) do
        assert.is_nil(seen[b.UserMsgId])
        seen[b.UserMsgId] = true
      end
      assert.equal(200, #sent)
    end)

    it("refuses past the queue limit with rate_limit", function()
      local p = bound(10, { queue_limit = 3 })
      for i = 1, 3 do assert(p:submit(sms(i))) end
      local rec, err = p:submit(sms(4))
      assert.is_nil(rec)
      assert.equal("rate_limit", err.category)
      assert.equal("queue_full", err.code)
      assert.is_true(err.retryable)
    end)
  end)

  describe("pacing", function()
    local function window_max(times)
      -- the most sends in any closed 1-second window [t, t + 1]
      local best, j = 0, 1
      for i = 1, #times do
        while times[i] - times[j] > 1 do j = j + 1 end
        if i - j + 1 > best then best = i - j + 1 end
      end
      return best
    end

    local function run(speed, seconds, step)
      local p, S = bound(speed)
      for i = 1, speed * seconds * 2 do assert(p:submit(sms(i))) end
      local times, t = {}, 0
      while t < seconds do
        local _, out = p:poll(t)
        for _ = 1, #S.read(out) do times[#times + 1] = t end
        if step then t = t + step else t = math.max(p:next_deadline(), t) end
      end
      return times
    end

    it("sends ~Speed per second, evenly, never more than Speed in any 1 s window", function()
      local times = run(100, 10)
      assert.is_true(#times >= 950 and #times <= 1000, #times)
      assert.is_true(window_max(times) <= 100, window_max(times))
      for i = 2, #times do assert.is_true(times[i] - times[i - 1] >= 0.01 - 1e-9) end
    end)

    it("keeps the limit whatever the poll rhythm", function()
      for _, case in ipairs { { 100, 0.0037 }, { 100, 0.05 }, { 7, 0.013 }, { 1, 0.1 }, { 500, 0.001 } } do
        local times = run(case[1], 5, case[2])
        assert.is_true(window_max(times) <= case[1], case[1] .. "/" .. case[2])
        assert.is_true(#times > 0)
      end
    end)

    it("pacer: the window guard holds even without spacing", function()
      local pc = pacer.new(3, { margin = 0 })
      pc.interval = 0 -- only the window guard left
      assert.is_true(pc:take(0)); assert.is_true(pc:take(0)); assert.is_true(pc:take(0))
      assert.is_false(pc:take(0.99))
      assert.is_true(pc:take(1))
      assert.has_error(function() pacer.new(0) end)
    end)
  end)

  describe("keepalive", function()
    it("sends AliveReq after keepalive_interval without traffic, and dies without AliveRes", function()
      local p, S = bound(10)
      assert.equal(25, p:next_deadline())
      local _, out = p:poll(24.9)
      assert.equal("", out)
      _, out = p:poll(25)
      assert.equal("AliveReq", S.read(out)[1].Header.Method)
      assert.equal(35, p:next_deadline())
      local ev = p:receive(S.frame("AliveRes"), 26)
      assert.equal("alive_res", ev[1].type)
      assert.equal(50, p:next_deadline())
      -- traffic postpones it
      assert(p:submit(sms(1)))
      _, out = p:poll(40)
      assert.equal("MsgSendReq", S.read(out)[1].Header.Method)
      assert.equal(65, p:next_deadline())
      _, out = p:poll(65)
      assert.equal("AliveReq", S.read(out)[1].Header.Method)
      ev = p:poll(74.9)
      assert.same({}, ev)
      ev = p:poll(75)
      assert.same({ type = "dead", reason = "alive_timeout" }, ev[1])
      assert.equal("dead", p.state)
    end)

    it("honours custom intervals", function()
      local p, S = bound(10, { keepalive_interval = 5, alive_timeout = 2 })
      local _, out = p:poll(5)
      assert.equal("AliveReq", S.read(out)[1].Header.Method)
      assert.equal("dead", p:poll(7)[1].type)
    end)
  end)

  describe("reconnect", function()
    it("marks written-but-unanswered messages maybe_sent and keeps unsent ones queued", function()
      local p, S = bound(10)
      for i = 1, 6 do assert(p:submit(sms(i, { id = "m" .. i }))) end
      local sent = drain(p, S, 0, 0.25) -- 10/s: three go out by 0.25 s
      assert.equal(3, #sent)
      local ev = p:receive(answer(S, sent[1], 0), 0.3)
      assert.is_true(ev[1].ok)
      ev = p:disconnected(0.4)
      assert.equal(2, #ev)
      for i, e in ipairs(ev) do
        assert.equal("result", e.type)
        assert.equal(sent[i + 1].UserMsgId, e.user_msg_id)
        assert.equal("unknown", e.outcome.category)
        assert.is_true(e.outcome.maybe_sent)
      end
      assert.equal(3, p:queued())
      assert.equal(0, p:in_flight())
      -- the new connection: the three unsent ones, once each, nothing else
      S = server()
      S.read(p:connected(30))
      p:receive(S.frame("BindRes", { Result = 0, Speed = 10 }, true), 30)
      local again = drain(p, S, 30, 40)
      local ids = {}
      for _, b in ipairs(again) do ids[#ids + 1] = b.UserMsgId end
      assert.same({ "m4", "m5", "m6" }, ids)
      assert.equal(0, p:queued())
      -- a late answer for a lost message is not a result
      ev = p:receive(answer(S, sent[2], 0), 41)
      assert.equal("protocol_error", ev[1].type)
      assert.is_false(ev[1].fatal)
    end)

    it("resends unanswered messages only when opted in", function()
      local p, S = bound(10, { resend_unanswered = true })
      for i = 1, 3 do assert(p:submit(sms(i, { id = "r" .. i }))) end
      local sent = drain(p, S, 0, 0.15)
      assert.equal(2, #sent)
      local ev = p:disconnected(1)
      assert.equal(2, #of_type(ev, "requeued"))
      assert.equal(0, #of_type(ev, "result"))
      S = server()
      p:connected(2)
      p:receive(S.frame("BindRes", { Result = 0, Speed = 10 }, true), 2)
      local again = drain(p, S, 2, 10)
      assert.same({ "r1", "r2", "r3" }, { again[1].UserMsgId, again[2].UserMsgId, again[3].UserMsgId })
    end)
  end)

  describe("sent events", function()
    it("reports every MsgSendReq a poll writes, in the order of the frames, with its attempt", function()
      local p, S = bound(100, { retry_backoff = 1 })
      assert(p:submit(sms(1, { id = "x" })))
      assert(p:submit(sms(2, { id = "y", sub_id = "2" })))
      local ev, out = p:poll(0)
      local msgs = S.read(out)
      local sent = of_type(ev, "sent")
      assert.equal(#msgs, #sent)
      assert.is_true(#sent >= 1)
      for i, e in ipairs(sent) do
        assert.equal("MsgSendReq", msgs[i].Header.Method)
        assert.equal(msgs[i].Body.UserMsgId, e.user_msg_id)
        assert.equal(msgs[i].Body.UserMsgSubId, e.sub_id)
        assert.equal(e.rec.id, e.user_msg_id)
        assert.equal(1, e.attempt)
      end
      assert.same({ type = "sent", rec = sent[1].rec, user_msg_id = "x", sub_id = "", attempt = 1 }, sent[1])
      -- the rest, then a requeued one goes again as attempt 2
      local rest = {}
      local t = 0
      while p:queued() > 0 do
        t = math.max(t, p:next_deadline())
        local e2, o2 = p:poll(t)
        for _, e in ipairs(of_type(e2, "sent")) do rest[#rest + 1] = e end
        assert.equal(#of_type(e2, "sent"), #S.read(o2))
      end
      assert.equal(2, #sent + #rest)
      local all = { sent[1], sent[2] or rest[1] }
      assert.equal("y", all[2].user_msg_id)
      assert.equal("2", all[2].sub_id)
      ev = p:receive(answer(S, { UserMsgId = "x", UserMsgSubId = "" }, 903), t)
      assert.equal("requeued", ev[1].type)
      local again
      while not again do
        t = math.max(t, p:next_deadline())
        local e2, o2 = p:poll(t)
        again = of_type(e2, "sent")[1]
        if again then assert.equal("x", S.read(o2)[1].Body.UserMsgId) end
      end
      assert.equal("x", again.user_msg_id)
      assert.equal(2, again.attempt)
      -- nothing else a poll writes is a sent event: keepalives, acks
      local e3, o3 = p:poll(t + 60)
      assert.equal("AliveReq", S.read(o3)[1].Header.Method)
      assert.equal(0, #of_type(e3, "sent"))
    end)
  end)

  describe("states", function()
    it("changes state only as the table at the top of the protocol says", function()
      local st = protocol.states
      assert.equal("bind_wait", st.idle.on.connect)
      assert.equal("key_wait", st.idle.on.connect_encrypted)
      assert.equal("bound", st.bind_wait.on.bind_ok)
      assert.equal("closing", st.bound.on.close)
      assert.equal("closed", st.closing.on.unbound)
      -- every target is a state, and every state can be left by disconnected()
      for name, s in pairs(st) do
        for event, to in pairs(s.on) do assert.is_table(st[to], name .. " --" .. event .. "--> " .. to) end
        assert.equal("disconnected", s.on.disconnect, name)
      end
      -- a walk through the lifecycle stays on the table
      local p, S = bound(10)
      assert.equal("bound", p.state)
      assert.equal("UnBindReq", S.read(p:close(1))[1].Header.Method)
      assert.equal("closing", p.state)
      assert.equal("", p:close(1)) -- not bound: nothing to write, no change
      p:receive(S.frame("UnBindRes", { Result = 0 }, true), 1.1)
      assert.equal("closed", p.state)
      p:disconnected(2)
      assert.equal("disconnected", p.state)
      -- an event its state does not list is a bug of ours and raises
      assert.has_error(function() p:_to("bind_ok") end)
      assert.has_error(function() p:connected(3); p:connected(3) end)
    end)
  end)

  describe("rate limit answers", function()
    it("requeues a message refused with 903 or 11 and backs off", function()
      local p, S = bound(100, { retry_backoff = 1 })
      assert(p:submit(sms(1, { id = "x" })))
      assert(p:submit(sms(2, { id = "y" })))
      local sent = drain(p, S, 0, 0)
      assert.equal(1, #sent)
      local ev = p:receive(answer(S, sent[1], 903), 0.005)
      assert.equal("requeued", ev[1].type)
      assert.equal(903, ev[1].result)
      assert.equal(1.005, ev[1].retry_at)
      assert.equal(1.005, p:next_deadline())
      local _, out = p:poll(1.0)
      assert.equal("", out)
      sent = drain(p, S, 1.005, 1.005)
      assert.equal("x", sent[1].UserMsgId) -- first again, before y
      ev = p:receive(answer(S, sent[1], 11), 1.01)
      assert.equal("requeued", ev[1].type)
      assert.equal(3.01, ev[1].retry_at)  -- the wait doubled
      assert.equal("", select(2, p:poll(3)))
      sent = drain(p, S, 3.01, 3.05)
      assert.same({ "x", "y" }, { sent[1].UserMsgId, sent[2].UserMsgId })
      ev = p:receive(answer(S, sent[1], 0), 3.1)
      assert.is_true(ev[1].ok)
    end)

    it("gives up after max_retries with a rate_limit outcome", function()
      local p, S = bound(100, { max_retries = 2 })
      assert(p:submit(sms(1)))
      local t, final = 0, nil
      for _ = 1, 3 do
        local sent
        sent, t = drain(p, S, t, t + 100)
        assert.equal(1, #sent)
        local ev = p:receive(answer(S, sent[1], 903), t)
        if ev[1].type == "result" then final = ev[1] end
      end
      assert.is_table(final)
      assert.equal("rate_limit", final.outcome.category)
      assert.equal(903, final.outcome.code)
    end)

    it("reports 320 as duplicate", function()
      local p, S = bound(100)
      assert(p:submit(sms(1)))
      local sent = drain(p, S, 0, 0)
      local ev = p:receive(answer(S, sent[1], 320), 0)
      assert.equal("duplicate", ev[1].outcome.category)
    end)
  end)

  describe("pushed requests", function()
    local report = { UserMsgId = "80", UserMsgSubId = "", ServerMsgId = "781857", MsgType = 4,
      PhoneNo = "01091874302", Result = 0, Telecom = "KTF", DeliveryTime = "2017-07-11 13:43:12.000",
      UserData = "" }

    it("delivers a report once and acknowledges it only after ack()", function()
      local p, S = bound(10)
      local ev, out = p:receive(S.frame("ReportReq", report), 1)
      assert.equal("", out)
      assert.equal(1, #ev)
      local r = ev[1]
      assert.equal("report", r.type)
      assert.equal("781857", r.server_msg_id)
      assert.equal("KTF", r.telecom)
      assert.is_true(r.ok)
      -- the same report again before the app is done: nothing
      local ev2, out2 = p:receive(S.frame("ReportReq", report), 2)
      assert.same({}, ev2)
      assert.equal("", out2)
      local ack = S.read(p:ack(r, 3))
      assert.equal("ReportRes", ack[1].Header.Method)
      assert.same({ UserMsgId = "80", UserMsgSubId = "", ServerMsgId = "781857", Result = 0 }, ack[1].Body)
      assert.equal("", p:ack(r))
      -- pushed again after the ack (ours was lost?): answered at once, not delivered
      ev2, out2 = p:receive(S.frame("ReportReq", report), 4)
      assert.same({}, ev2)
      assert.equal("ReportRes", S.read(out2)[1].Header.Method)
      -- a failed delivery carries its outcome
      local failed = {}
      for k, v in pairs(report) do failed[k] = v end
      failed.ServerMsgId, failed.Result = "2", 8
      ev = p:receive(S.frame("ReportReq", failed), 5)
      assert.equal("recipient", ev[1].outcome.category)
    end)

    it("acknowledges spam and number-portability pushes after ack()", function()
      local p, S = bound(10)
      local ev, out = p:receive(S.frame("SpamReq", { SpamId = "1", PhoneNo = "01000000000", DenyNo = "08000000000" })
        .. S.frame("ChangePhoneReq", { ServerMsgId = "2603", PhoneNo = "0111234564", ChangePhoneNo = "01012345678" }), 1)
      assert.equal("", out)
      assert.equal("spam", ev[1].type)
      assert.equal("08000000000", ev[1].deny_no)
      assert.equal("change_phone", ev[2].type)
      assert.equal("01012345678", ev[2].change_phone)
      local a = S.read(p:ack(ev[1]) .. p:ack(ev[2]))
      assert.equal("SpamRes", a[1].Header.Method)
      assert.same({ SpamId = "1", PhoneNo = "01000000000", DenyNo = "08000000000", Result = 0 }, a[1].Body)
      assert.equal("ChangePhoneRes", a[2].Header.Method)
      assert.same({ ServerMsgId = "2603", PhoneNo = "0111234564", ChangePhoneNo = "01012345678", Result = 0 }, a[2].Body)
      assert.has_error(function() p:ack({ type = "result" }) end)
    end)

    it("keeps the dedup across a reconnect", function()
      local p, S = bound(10)
      local ev = p:receive(S.frame("ReportReq", report), 1)
      p:disconnected(2)
      assert.equal("", p:ack(ev[1])) -- not connected: nothing to write
      S = server()
      p:connected(3)
      p:receive(S.frame("BindRes", { Result = 0, Speed = 10 }, true), 3)
      local ev2, out = p:receive(S.frame("ReportReq", report), 4)
      assert.same({}, ev2)
      assert.equal("ReportRes", S.read(out)[1].Header.Method)
    end)
  end)

  describe("framing", function()
    it("handles frames split into single bytes and many frames in one read", function()
      local p, S = new(), server()
      p:connected(0)
      local bytes = S.frame("BindRes", { Result = 0, Speed = 100 }, true)
      local events = {}
      for i = 1, #bytes do
        for _, e in ipairs((p:receive(bytes:sub(i, i), 0))) do events[#events + 1] = e end
      end
      assert.equal(1, #events)
      assert.equal("bound", events[1].type)
      for i = 1, 3 do assert(p:submit(sms(i))) end
      local sent = drain(p, S, 0, 1)
      local all = answer(S, sent[1], 0) .. answer(S, sent[2], 0) .. answer(S, sent[3], 0)
      local got = {}
      for i = 1, #all do
        for _, e in ipairs((p:receive(all:sub(i, i), 1))) do got[#got + 1] = e.user_msg_id end
      end
      assert.same({ sent[1].UserMsgId, sent[2].UserMsgId, sent[3].UserMsgId }, got)
    end)
  end)

  describe("encrypted mode", function()
    it("exchanges keys, then encrypts every body with the private key", function()
      local p = new { encrypted = true }
      local S = server()
      local msgs = S.read(p:connected(0))
      assert.equal("PrivateKeyReq", msgs[1].Header.Method)
      assert.is_nil(msgs[1].Body)
      local PK = "PRIVATEKEY123456extra"
      local ev, out = p:receive(S.frame("PrivateKeyRes", { Result = 0, PrivateKey = PK }, true), 0)
      assert.same({}, ev)
      S.key = PK:sub(1, 16)
      msgs = S.read(out)
      assert.equal("BindReq", msgs[1].Header.Method)
      assert.is_true(msgs[1].encrypted)
      assert.equal("test001", msgs[1].Body.BindId)
      ev = p:receive(S.frame("BindRes", { Result = 0, Speed = 10 }, true), 0)
      assert.equal("bound", ev[1].type)
      assert(p:submit(sms(1)))
      local _, o = p:poll(0)
      msgs = S.read(o)
      assert.is_true(msgs[1].encrypted)
      assert.equal("hello 1", msgs[1].Body.Message)
      ev = p:receive(S.frame("MsgSendRes", { UserMsgId = msgs[1].Body.UserMsgId, UserMsgSubId = "",
        Result = 0 }, true), 0.1)
      assert.is_true(ev[1].ok)
      ev = p:receive(S.frame("ReportReq", { UserMsgId = "1", UserMsgSubId = "", ServerMsgId = "9", Result = 0 }, true), 1)
      local a = S.read(p:ack(ev[1]))
      assert.is_true(a[1].encrypted)
      assert.equal("9", a[1].Body.ServerMsgId)
      local _, alive = p:poll(100)
      assert.equal("AliveReq", S.read(alive)[1].Header.Method)
      local u = S.read(p:close(101))
      assert.equal("UnBindReq", u[1].Header.Method)
      assert.is_true(u[1].encrypted)
    end)

    it("fails the bind when the key exchange fails", function()
      local p, S = new { encrypted = true }, server()
      p:connected(0)
      local ev = p:receive(S.frame("PrivateKeyRes", { Result = 3 }, true), 0)
      assert.equal("bind_failed", ev[1].type)
      assert.equal("auth", ev[1].err.category)
    end)
  end)

  describe("close and uploads", function()
    it("sends UnBindReq on close and reports UnBindRes", function()
      local p, S = bound(10)
      local m = S.read(p:close(1))
      assert.equal("UnBindReq", m[1].Header.Method)
      assert.is_true(m[1].encrypted)
      assert.same({ BindId = "test001" }, m[1].Body)
      local ev = p:receive(S.frame("UnBindRes", { Result = 0 }, true), 1)
      assert.same({ type = "unbound", result = 0 }, ev[1])
      assert.equal("", p:close(2))
    end)

    it("uploads a file in steps: name, chunks, finish", function()
      local p, S = bound(10, { upload_chunk = 1000 })
      local data = ("\255\216JPEGDATA"):rep(250) -- 2500 bytes: three chunks
      local h = assert(p:upload(data, "jpg"))
      assert.equal(0, p:next_deadline())
      local _, out = p:poll(1)
      local m = S.read(out)
      assert.equal("UploadFileNameReq", m[1].Header.Method)
      assert.same({ FileExtension = ".jpg" }, m[1].Body)
      local ev
      ev, out = p:receive(S.frame("UploadFileNameRes", { Result = 0, FileName = "622df.jpg" }), 1)
      assert.equal("upload_step", ev[1].type)
      local got = ""
      for _ = 1, 3 do
        m = S.read(out)
        assert.equal("UploadFileReq", m[1].Header.Method)
        got = got .. core.b64decode(m[1].Body.Data)
        ev, out = p:receive(S.frame("UploadFileRes", { Result = 0 }), 1)
      end
      assert.equal(data, got)
      m = S.read(out)
      assert.equal("UploadFileFinishReq", m[1].Header.Method)
      assert.same({ FileName = "622df.jpg", FileSize = 2500 }, m[1].Body)
      ev = p:receive(S.frame("UploadFileFinishRes", { Result = 0 }), 1)
      local done = of_type(ev, "upload_done")[1]
      assert.equal(h, done.handle)
      assert.equal("622df.jpg", done.file_name)
      -- a refused upload
      assert(p:upload("x", ".jpg"))
      p:poll(2)
      ev = p:receive(S.frame("UploadFileNameRes", { Result = 910, FileName = "" }), 2)
      assert.equal("invalid_input", of_type(ev, "upload_failed")[1].err.category)
    end)
  end)

  it("raises on bad options", function()
    assert.has_error(function() protocol.new { id = "a", password = "b", key = "short", iv = IV } end)
    assert.has_error(function() protocol.new { id = "a", password = "b", key = KEY, iv = "short" } end)
    assert.has_error(function() protocol.new { id = "a", password = "b", key = KEY, iv = IV, speed = 3 } end)
    assert.has_error(function() protocol.new { password = "b", key = KEY, iv = IV } end)
  end)
end)
