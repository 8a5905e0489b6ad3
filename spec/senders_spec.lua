-- Senders end to end: ksms.client("senders") over the libcurl transport
-- against the fake Senders server (a real process on 127.0.0.1).
local ksms = require "ksms"
local fake_control = require "fake_control"
local schedule = require "ksms.rules.schedule"

local KEY = "test-senders-key"

local form_of = require("spec_helper").form_of

describe("senders", function()
  local fake, client
  local now = os.time()

  setup(function()
    fake = fake_control.start("senders")
  end)
  teardown(function()
    if client then client:close() end
    fake:stop()
  end)
  before_each(function()
    fake:reset()
    if client then client:close() end
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url, timeout = 5 })
  end)

  it("sends an SMS with exactly the documented fields", function()
    local res = assert(client:send { to = "010-1111-2222", from = "02-1234-5678", text = "안녕하세요 ksms" })
    assert.is_true(res.ok)
    assert.equal("senders", res.provider)
    assert.equal("sms", res.kind)
    assert.equal("100", res.code)
    assert.equal(15, res.bytes)
    assert.matches('"result"', res.raw)
    local reqs = fake:requests()
    assert.equal(1, #reqs)
    assert.equal("POST", reqs[1].method)
    assert.equal("/APIV2/sms_send", reqs[1].path)
    assert.matches("^application/x%-www%-form%-urlencoded", reqs[1].headers["content-type"])
    local names, f = form_of(reqs[1])
    assert.same({ "api_key", "msg", "callback", "dstaddr", "send_reserve", "call_block" }, names)
    assert.same({ api_key = KEY, msg = "안녕하세요 ksms", callback = "0212345678",
      dstaddr = "01011112222", send_reserve = "0", call_block = "0" }, f)
  end)

  it("turns a long text into an LMS with its subject, and an image into an MMS", function()
    local long = ("가나다라마바사 "):rep(10)
    local res = assert(client:send { to = "01011112222", from = "01012345678", text = long, subject = "공지" })
    assert.equal("lms", res.kind)
    local res2 = assert(client:send { to = "01011112222", from = "01012345678", text = "사진",
      image = "https://example.com/a/photo.JPG" })
    assert.equal("mms", res2.kind)
    local reqs = fake:requests()
    local _, f1 = form_of(reqs[1])
    assert.equal("공지", f1.subject)
    assert.equal(long, f1.msg)
    local names2, f2 = form_of(reqs[2])
    assert.same({ "api_key", "msg", "callback", "dstaddr", "image", "send_reserve", "call_block" }, names2)
    assert.equal("https://example.com/a/photo.JPG", f2.image)
    assert.equal(100000 - 3 - 6, assert(client:balance()).balance)
  end)

  it("sends a reservation in Korea time and the 080 opt-out flag", function()
    local at = now + 7200
    assert(client:send { to = "01011112222", from = "15884567", text = "예약", at = at, opt_out = true })
    local names, f = form_of(fake:requests()[1])
    assert.same({ "api_key", "msg", "callback", "dstaddr", "send_reserve", "send_reserve_date", "call_block" }, names)
    assert.equal("1", f.send_reserve)
    assert.equal(schedule.format(at, "YYYY|MM|DD|hh|mm|ss"), f.send_reserve_date)
    assert.equal("1", f.call_block)
    -- A date table is read as Korea time.
    local t = schedule.to_kst(now + 86400)
    assert(client:send { to = "01011112222", from = "15884567", text = "예약2",
      at = { year = t.year, month = t.month, day = t.day, hour = t.hour, min = t.min } })
    local _, f2 = form_of(fake:requests()[2])
    assert.equal(("%04d|%02d|%02d|%02d|%02d|00"):format(t.year, t.month, t.day, t.hour, t.min), f2.send_reserve_date)
  end)

  it("joins recipients with | and splits more than 500 into concurrent chunks", function()
    local to = {}
    for i = 1, 1201 do to[i] = ("010-%04d-%04d"):format(1000 + math.floor(i / 100), i % 10000) end
    local res = assert(client:send { to = to, from = "0212345678", text = "단체 문자" })
    assert.equal(1201, res.recipients)
    assert.equal(3, #res.parts)
    local reqs = fake:requests()
    assert.equal(3, #reqs)
    local seen, sizes = {}, {}
    for _, r in ipairs(reqs) do
      local _, f = form_of(r)
      local n = 0
      for num in f.dstaddr:gmatch("[^|]+") do seen[num] = true; n = n + 1 end
      sizes[#sizes + 1] = n
    end
    table.sort(sizes)
    assert.same({ 201, 500, 500 }, sizes)
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.equal(1201, count)
  end)

  it("says which chunk failed and which recipients were accepted", function()
    fake:state { balance = 1001 } -- two chunks fit, the third does not
    local to = {}
    for i = 1, 1201 do to[i] = ("010%08d"):format(20000000 + i) end
    local res, err = client:send { to = to, from = "0212345678", text = "단체" }
    assert.is_nil(res)
    assert.equal("balance", err.category)
    assert.equal("185", err.code)
    assert.is_true(err.partial)
    assert.is_false(err.retryable)
    local failed, accepted = 0, 0
    for _, part in ipairs(err.parts) do
      if part.ok then accepted = accepted + #part.recipients else failed = failed + 1 end
    end
    assert.equal(1, failed)
    assert.equal(accepted, #err.accepted)
    assert.is_true(accepted == 1000 or accepted == 701)
    assert.matches("recipients were accepted", tostring(err))
  end)

  local codes = {
    { "155", "auth" }, { "185", "balance" }, { "225", "message_length" },
    { "315", "sender_number" }, { "325", "recipient" }, { "415", "schedule" },
  }
  for _, c in ipairs(codes) do
    it("maps return code " .. c[1] .. " to " .. c[2], function()
      fake:script { path = "/APIV2/sms_send", result = c[1], times = 1 }
      local res, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert.is_nil(res)
      assert.equal(c[2], err.category)
      assert.equal(c[1], err.code)
      assert.equal("senders", err.provider)
      assert.is_false(err.maybe_sent)
      assert.is_string(err.description_ko)
      assert.matches(err.description_ko, tostring(err), 1, true)
    end)
  end

  it("gets the codes from real input too: key, caller number, balance", function()
    local bad = ksms.client("senders", { api_key = "wrong-key", base_url = fake.base_url })
    local _, e1 = bad:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("auth", e1.category)
    local _, eb = bad:balance()
    assert.equal("auth", eb.category)
    bad:close()
    local _, e2 = client:send { to = "01011112222", from = "0299998888", text = "x" }
    assert.equal("sender_number", e2.category)
    fake:state { balance = 0 }
    local _, e3 = client:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("balance", e3.category)
  end)

  it("treats an undocumented code as unknown and possibly sent", function()
    fake:script { path = "/APIV2/sms_send", result = "999", times = 1 }
    local _, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("unknown", err.category)
    assert.is_true(err.maybe_sent)
  end)

  it("reports the balance", function()
    local b = assert(client:balance())
    assert.equal(100000, b.balance)
    assert.equal("coin", b.unit)
    assert.equal("/APIV2/remainCoin", fake:requests()[1].path)
  end)

  it("reuses one connection for many requests", function()
    for i = 1, 10 do assert(client:send { to = "01011112222", from = "0212345678", text = "연결 " .. i }) end
    assert.equal(10, fake:stats().requests)
    assert.equal(1, fake:stats().connections)
  end)

  it("refuses bad input before any request is made", function()
    local cases = {
      { { to = "010-123", from = "0212345678", text = "x" }, "recipient" },
      { { to = "01011112222", from = "999", text = "x" }, "sender_number" },
      { { to = "01011112222", from = "0212345678", text = ("가"):rep(1001) }, "message_length" },
      { { to = "01011112222", from = "0212345678", text = "" }, "message_length" },
      { { to = "01011112222", from = "0212345678", text = "웃음 😀" }, "invalid_input" },
      { { to = "01011112222", from = "0212345678", text = "x", at = now - 60 }, "schedule" },
      { { to = "01011112222", from = "0212345678", text = "x", image = "ftp://x/y.jpg" }, "invalid_input" },
      { { to = "01011112222", from = "0212345678", text = "x", image = "http://x/y.png" }, "invalid_input" },
      { { to = "01011112222", from = "0212345678", text = ("a"):rep(91), kind = "sms" }, "message_length" },
    }
    for i, case in ipairs(cases) do
      local res, err = client:send(case[1])
      assert.is_nil(res, "case " .. i)
      assert.equal(case[2], err.category, "case " .. i .. ": " .. tostring(err))
      assert.equal("senders", err.provider)
    end
    assert.equal(0, #fake:requests())
  end)

  it("raises on programmer errors", function()
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678" } end)
    assert.has_error(function() client:send { to = "01011112222", text = "x" } end)
    assert.has_error(function() client:send { from = "0212345678", text = "x" } end)
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678", text = "x", txet = 1 } end)
    assert.has_error(function() client:send { to = 1011112222, from = "0212345678", text = "x" } end)
    assert.has_error(function() client:alimtalk { template = "x" } end, nil)
    assert.has_error(function() ksms.client("senders", {}) end)
    assert.has_error(function() ksms.client("nosuch", { api_key = "k" }) end)
    assert.equal(0, #fake:requests())
  end)

  it("names the providers that can do what this one cannot", function()
    local ok, e = pcall(client.alimtalk, client, { template = "T" })
    assert.is_false(ok)
    assert.matches("senders does not support alimtalk", e)
    assert.matches("messageme", e)
    assert.is_false(client.capabilities.alimtalk)
    assert.is_true(client.capabilities.balance)
  end)

  it("times out, says the message may have been sent, and does not resend", function()
    local slow = ksms.client("senders", { api_key = KEY, base_url = fake.base_url, timeout = 0.5 })
    fake:script { path = "/APIV2/sms_send", latency_ms = 3000, times = 1 }
    local res, err = slow:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.is_nil(res)
    assert.equal("timeout", err.category)
    assert.is_true(err.maybe_sent)
    assert.is_false(err.retryable)
    assert.matches("will not resend", tostring(err))
    slow:close()
    assert.equal(1, #fake:requests())
  end)

  it("reports a server that dies mid-answer as maybe sent, once", function()
    assert(client:send { to = "01011112222", from = "0212345678", text = "warm" }) -- keep-alive
    for _, fault in ipairs({ "half", "close" }) do
      fake:reset()
      fake:script { path = "/APIV2/sms_send", fault = fault, times = 1 }
      local res, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert.is_nil(res, fault)
      assert.is_true(err.maybe_sent, fault)
      assert.is_truthy(err.category == "network" or err.category == "protocol", fault .. ": " .. tostring(err))
      assert.equal(1, #fake:requests(), fault .. " must not be resent")
    end
  end)

  it("reports garbage and HTTP errors", function()
    fake:script { path = "/APIV2/sms_send", fault = "garbage", times = 1 }
    local _, e1 = client:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("protocol", e1.category)
    fake:script { path = "/APIV2/sms_send", status = 500, body = "oops", times = 1 }
    local _, e2 = client:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("server", e2.category)
    assert.equal("http_500", e2.code)
    assert.is_true(e2.maybe_sent)
    fake:script { path = "/APIV2/sms_send", status = 200, body = "<html>not json</html>", times = 1 }
    local _, e3 = client:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("protocol", e3.category)
    assert.is_true(e3.maybe_sent)
  end)

  it("reports a refused connection as not sent and retryable", function()
    local s = require("socket").bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close()
    local c = ksms.client("senders", { api_key = KEY, base_url = "http://127.0.0.1:" .. port })
    local _, err = c:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("network", err.category)
    assert.equal("connect", err.code)
    assert.is_false(err.maybe_sent)
    assert.is_true(err.retryable)
    c:close()
  end)

  it("sends many personalised messages concurrently, one outcome each, in order", function()
    fake:script { path = "/APIV2/sms_send", latency_ms = 150 }
    local msgs = {}
    for i = 1, 40 do
      msgs[i] = { to = ("010%08d"):format(30000000 + i), text = ("고객 %d님, 안녕하세요"):format(i),
        from = (i % 7 == 0) and "0299990000" or "0212345678" }
    end
    msgs[13].to = "12345" -- refused before sending
    local outs = client:send_many(msgs, { concurrency = 10 })
    assert.equal(40, #outs)
    for i, o in ipairs(outs) do
      if i == 13 then
        assert.equal("recipient", o.category)
      elseif i % 7 == 0 then
        assert.equal("sender_number", o.category, "message " .. i)
      else
        assert.is_true(o.ok, "message " .. i .. ": " .. tostring(o.category and o))
      end
    end
    local reqs = fake:requests()
    assert.equal(39, #reqs)
    local st = fake:stats()
    assert.is_true(st.max_in_flight <= 10)
    assert.is_true(st.max_in_flight >= 5, "requests did not overlap: " .. st.max_in_flight)
    -- Each personalised text went to its own recipient.
    for _, r in ipairs(reqs) do
      local _, f = form_of(r)
      local i = tonumber(f.dstaddr:sub(-2))
      assert.equal(("고객 %d님, 안녕하세요"):format(i), f.msg)
    end
    assert.has_error(function() client:send_many(msgs, { concurrency = 0 }) end)
  end)

  it("never shows the API key", function()
    assert.is_nil(tostring(client):find(KEY, 1, true))
    fake:script { path = "/APIV2/sms_send", result = "155", times = 1 }
    local _, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
    for k, v in pairs(err) do
      if type(v) == "string" then assert.is_nil(v:find(KEY, 1, true), k) end
    end
    assert.is_nil(tostring(err):find(KEY, 1, true))
  end)
end)
