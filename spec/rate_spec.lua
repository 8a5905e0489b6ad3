-- The client's rate option and the HTTP 429 gate (issue 16), against a real
-- Senders fake: the pacing is measured where it matters, at the fake (its
-- recorded arrival times), never by a timed upper bound here.
local ksms = require "ksms"
local rate = require "ksms.rate"
local core = require "ksms.core"
local fake_control = require "fake_control"

local KEY = "test-senders-key"
local FROM = "0212345678"
local SEND = "/APIV2/sms_send"

local function messages(n, tag)
  local list = {}
  for i = 1, n do list[i] = { to = "01011112222", from = FROM, text = (tag or "m") .. " " .. i } end
  return list
end

-- The most arrivals any closed window of `width` seconds holds, and the
-- span from the first to the last.
local function most_in_window(fake, width)
  local ts = {}
  for i, r in ipairs(fake:requests(SEND)) do ts[i] = r.at end
  table.sort(ts)
  local most, j = 0, 1
  for i = 1, #ts do
    while ts[i] - ts[j] > width do j = j + 1 end
    if i - j + 1 > most then most = i - j + 1 end
  end
  return most, #ts > 0 and ts[#ts] - ts[1] or 0, #ts
end

-- A Senders client of the fake with opts (rate, ...).
local function client_of(fake, opts)
  opts = opts or {}
  opts.api_key, opts.base_url, opts.timeout = KEY, fake.base_url, 5
  return ksms.client("senders", opts)
end

local function count(outs, pred)
  local n = 0
  for _, o in ipairs(outs) do if pred(o) then n = n + 1 end end
  return n
end

describe("the client's rate option", function()
  local fake
  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake_control.stop_all() end)
  before_each(function() fake:reset() end)

  local function client(opts) return client_of(fake, opts) end

  it("keeps 30 messages at 20/s with concurrency 8 within per_second + burst a second, at the fake", function()
    -- The fake throttles past 21 a second: it answers 429 to any excess.
    fake:state { throttle = { per_second = 21, retry_after = "1" } }
    local c = client { rate = 20 }
    local outs = c:send_many(messages(30), { concurrency = 8 })
    c:close()
    assert.equal(30, count(outs, function(o) return o.ok end))
    local most, span, n = most_in_window(fake, 1)
    assert.equal(30, n)
    assert.is_true(most <= 21, "at most 20 + 1 in any second at the fake, got " .. most)
    -- 30 starts in 30 slots of 50 ms, the first one anywhere in its slot.
    assert.is_true(span >= 1.35, "the 30 arrivals span at least 1.4 s, got " .. span)
    assert.equal(0, fake:state().throttled)
  end)

  it("without it the same throttling fake answers 429, and the client stops at the first: the rest never reach it", function()
    fake:state { throttle = { per_second = 21, retry_after = "1" } }
    local c = client()
    local outs = c:send_many(messages(40), { concurrency = 8 })
    c:close()
    local ok = count(outs, function(o) return o.ok end)
    local r429 = count(outs, function(o) return o.code == "http_429" end)
    local gated = count(outs, function(o) return o.code == "retry_after" end)
    assert.is_true(ok >= 21)
    assert.is_true(r429 >= 1, "some answered 429")
    assert.is_true(gated >= 1, "the gate held some back")
    assert.equal(40, ok + r429 + gated)
    for _, o in ipairs(outs) do
      if not o.ok then
        assert.equal("rate_limit", o.category)
        assert.is_false(o.maybe_sent)
        assert.is_true(o.retryable)
        assert.is_true(o.retry_after > 0 and o.retry_after <= 1)
      end
    end
    -- The gated ones were never sent: the fake saw only the others.
    assert.equal(ok + r429, #fake:requests(SEND))
  end)

  it("refuses a message that gets no start within max_wait, sending nothing", function()
    local c = client { rate = { per_second = 2, max_wait = 0.3 } }
    local outs = c:send_many(messages(3), { concurrency = 1 })
    c:close()
    -- The third needs the slot after next: at least 0.5 s away.
    local third = outs[3]
    assert.equal("rate_limit", third.category)
    assert.equal("rate_wait", third.code)
    assert.is_false(third.maybe_sent)
    assert.is_true(outs[1].ok)
    assert.equal(count(outs, function(o) return o.ok end), #fake:requests(SEND))
  end)

  it("refuses a send whose expires_at comes before its start", function()
    local c = client { rate = { per_second = 2 }, now = function() return 1000 end }
    assert(c:send { to = "01011112222", from = FROM, text = "one" })
    local _ = c:send { to = "01011112222", from = FROM, text = "two", expires_at = 1000.6 } -- may wait 0.5 s
    local res, err = c:send { to = "01011112222", from = FROM, text = "three", expires_at = 1000.4 }
    c:close()
    assert.is_nil(res)
    assert.equal("rate_wait", err.code)
    assert.is_false(err.maybe_sent)
    for _, r in ipairs(fake:requests(SEND)) do
      local text
      for _, f in ipairs(r.form) do if f[1] == "msg" then text = f[2] end end
      assert.not_equal("three", text)
    end
  end)

  it("raises on misuse", function()
    for _, bad in ipairs { 0, -1, "20", { burst = 2 }, { per_second = 5, burst = 0 }, { per_second = 5, burst = 1.5 },
      { per_second = 5, max_wait = -1 }, { per_second = 5, speed = 1 }, { per_second = 5, dict = "rl" } } do
      assert.has_error(function() client { rate = bad } end)
    end
    assert.has_error(function()
      ksms.client("oneshot", { host = "127.0.0.1", port = 1, id = "x", password = "y", rate = 5 })
    end, "ksms.client(\"oneshot\"): no rate option: OneShot paces every message by the Speed its bind granted "
      .. "(ksms.oneshot.pacer), and that is the provider's own limit")
  end)
end)

describe("request_many's on_start answering a number (ask again then)", function()
  local fake
  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake_control.stop_all() end)

  it("starts that request later while the one in flight goes on (libcurl)", function()
    local t = require("ksms.transport").new { kind = "curl", timeout = 5 }
    fake:script { path = "/slow", latency_ms = 400, status = 200, body = "slow", times = 1 }
    local asked, t0 = {}, core.monotonic()
    local started, done = {}, {}
    local outs = t:request_many({ { url = fake.base_url .. "/slow" }, { url = fake.base_url .. "/later" } }, {
      concurrency = 2,
      on_start = function(i)
        asked[i] = (asked[i] or 0) + 1
        if i == 2 and asked[i] == 1 then return 0.2 end
        started[i] = core.monotonic() - t0
        return true
      end,
      on_done = function(i) done[#done + 1] = i end,
    })
    t:close()
    assert.equal(1, asked[1])
    assert.equal(2, asked[2])
    assert.equal("slow", outs[1].body)
    assert.equal(404, outs[2].status)
    -- The second started after its 0.2 s, and the first (400 ms) ended last.
    local recs = fake:requests()
    assert.equal(2, #recs)
    assert.is_true(started[2] >= 0.2)
    assert.is_true(recs[2].at - recs[1].at >= 0.19)
    assert.same({ 2, 1 }, done) -- it went while the first was still in flight
  end)
end)

describe("HTTP 429 and Retry-After", function()
  local fake
  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake_control.stop_all() end)
  before_each(function() fake:reset() end)

  local function client(opts) return client_of(fake, opts) end

  local function refuse_once(headers)
    fake:script { path = SEND, status = 429, headers = headers, body = "slow down", times = 1 }
  end

  it("is a refusal that nothing was sent, honoured until Retry-After passes", function()
    local c = client()
    refuse_once { ["Retry-After"] = "1" }
    local res, err = c:send { to = "01011112222", from = FROM, text = "first" }
    assert.is_nil(res)
    assert.equal("rate_limit", err.category)
    assert.equal("http_429", err.code)
    assert.equal(1, err.retry_after)
    assert.is_false(err.maybe_sent)
    assert.is_true(err.retryable)
    local t0 = core.monotonic()
    assert.equal(1, #fake:requests(SEND))
    -- Within the second: refused at once, the fake never asked.
    local res2, err2 = c:send { to = "01011112222", from = FROM, text = "second" }
    assert.is_nil(res2)
    assert.equal("rate_limit", err2.category)
    assert.equal("retry_after", err2.code)
    assert.is_false(err2.maybe_sent)
    assert.is_true(err2.retry_after > 0 and err2.retry_after <= 1)
    local _, err3 = c:balance()
    assert.equal("retry_after", err3.code)
    assert.equal(1, #fake:requests(SEND))
    assert.equal(0, #fake:requests("/APIV2/remainCoin"))
    core.sleep(1.02 - (core.monotonic() - t0))
    assert(c:send { to = "01011112222", from = FROM, text = "third" })
    assert.equal(2, #fake:requests(SEND))
    c:close()
  end)

  it("bounds what the header says: absent, huge, garbage, negative, an HTTP-date", function()
    local T = 1700000000 -- 2023-11-14T22:13:20Z
    local cases = {
      { nil, rate.RETRY_AFTER_DEFAULT },
      { "999999999999999999999999", rate.RETRY_AFTER_MAX },
      { "soon", rate.RETRY_AFTER_DEFAULT },
      { "-5", rate.RETRY_AFTER_DEFAULT },
      { "Tue, 14 Nov 2023 22:13:23 GMT", 3 },
    }
    for _, case in ipairs(cases) do
      local c = client { now = function() return T end }
      refuse_once(case[1] and { ["Retry-After"] = case[1] } or { ["Content-Type"] = "text/plain" })
      local _, err = c:send { to = "01011112222", from = FROM, text = "x" }
      assert.equal("http_429", err.code)
      assert.equal(case[2], err.retry_after, tostring(case[1]))
      c:close()
    end
  end)

  it("parses Retry-After values bounded, in linear time, never raising", function()
    local T = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT
    local D, M = rate.RETRY_AFTER_DEFAULT, rate.RETRY_AFTER_MAX
    local cases = {
      { "120", 120 }, { " 7 ", 7 }, { "0", 0 }, { "1.5", 1.5 }, { "", D }, { "   ", D }, { "-1", D },
      { "1e3", D }, { "0x10", D }, { "inf", D }, { "nan", D }, { "12abc", D },
      { "99999999999999999999999999999", M }, { string.rep("9", 64), M }, { string.rep("9", 65), D },
      { string.rep(" ", 100000), D }, { string.rep("1", 100000), D },
      { "Sun, 06 Nov 1994 08:49:37 GMT", 0 }, { "Sun, 06 Nov 1994 08:50:37 GMT", 60 },
      { "Sunday, 06-Nov-94 08:51:37 GMT", 120 }, { "Sun Nov  6 08:52:37 1994", 180 },
      { "Sat, 05 Nov 1994 08:49:37 GMT", 0 }, { "Sun, 06 Nov 2094 08:49:37 GMT", M },
      { "Sun, 06 Foo 1994 08:49:37 GMT", D }, { "Sun, 06 Nov 1994 25:49:37 GMT", D },
      { "Sun, 06 Nov 1994 08:49:37 PST", D },
    }
    for _, case in ipairs(cases) do
      assert.equal(case[2], rate.retry_after(case[1], T), ("%q"):format(case[1]:sub(1, 40)))
    end
    for _, v in ipairs { {}, 5, true, false } do assert.equal(D, rate.retry_after(v, T)) end
    assert.equal(D, rate.retry_after("Sun, 06 Nov 1994 08:49:37 GMT", nil))
  end)
end)
