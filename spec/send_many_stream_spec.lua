-- client:send_many's streaming hooks (on_sending, on_outcome), the
-- expires_at message field and client:check, over the libcurl transport
-- against the Senders fake and over the OneShot session against the
-- OneShot fake. The nginx transport's hooks are in nginx_http_spec.
local ksms = require "ksms"
local fake_control = require "fake_control"

local FROM = "0212345678"

local function msgs(n, prefix)
  local list = {}
  for i = 1, n do list[i] = { to = "01012345678", from = FROM, text = (prefix or "m") .. i } end
  return list
end

describe("send_many streaming (libcurl)", function()
  local fake, c
  setup(function()
    fake = fake_control.start("senders")
    c = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url })
  end)
  teardown(function() c:close(); fake_control.stop_all() end)
  before_each(function() fake:reset() end)

  it("calls on_sending before each request and on_outcome as each ends, never more than concurrency apart", function()
    fake:script { latency_ms = 100 }
    local log, started, ended, peak = {}, 0, 0, 0
    local outs = c:send_many(msgs(7), { concurrency = 3,
      on_sending = function(i) started = started + 1; peak = math.max(peak, started - ended); log[#log + 1] = "s" .. i end,
      on_outcome = function(i, o) ended = ended + 1; log[#log + 1] = "o" .. i; assert.is_true(o.ok) end })
    assert.equal(7, #outs)
    assert.equal(7, started)
    assert.equal(7, ended)
    assert.equal(3, peak)
    -- Streaming, not a batch: some outcome arrives before the last start.
    local last_s, first_o
    for k, e in ipairs(log) do
      if e:sub(1, 1) == "s" then last_s = k elseif not first_o then first_o = k end
    end
    assert.is_true(first_o < last_s, table.concat(log, " "))
    assert.equal(7, #fake:requests("/APIV2/sms_send"))
  end)

  it("reports a refused message at once, and on_sending returning false holds one back", function()
    local list = msgs(4)
    list[2].to = "12"
    local order = {}
    local outs = c:send_many(list, {
      on_sending = function(i) order[#order + 1] = "s" .. i; if i == 3 then return false end end,
      on_outcome = function(i, o) order[#order + 1] = "o" .. i .. (o.ok and "" or ":" .. o.category) end })
    assert.equal("o2:recipient", order[1])
    assert.equal("cancelled", outs[3].category)
    assert.is_false(outs[3].maybe_sent)
    assert.is_true(outs[1].ok and outs[4].ok)
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
  end)

  it("does not send a message whose expires_at has passed", function()
    local list = msgs(3)
    list[2].expires_at = os.time() - 1
    list[3].expires_at = os.time() + 3600
    local outs = c:send_many(list)
    assert.equal("expired", outs[2].category)
    assert.is_false(outs[2].maybe_sent)
    assert.is_true(outs[1].ok and outs[3].ok)
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
    local res, err = c:send { to = "01012345678", from = FROM, text = "late", expires_at = os.time() - 5 }
    assert.is_nil(res)
    assert.equal("expired", err.category)
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
    assert.has_error(function() c:send { to = "01012345678", from = FROM, text = "x", expires_at = "soon" } end)
  end)

  it("a raise in a callback ends the running requests, then reaches the caller", function()
    fake:script { latency_ms = 50 }
    local outcomes = 0
    local ok, err = pcall(c.send_many, c, msgs(6), { concurrency = 2,
      on_sending = function(i) if i == 3 then error("stop here") end end,
      on_outcome = function() outcomes = outcomes + 1 end })
    assert.is_false(ok)
    assert.matches("stop here", tostring(err))
    -- 1 and 2 were handed over: both finished and were reported; nothing after.
    assert.equal(2, outcomes)
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
    -- The client is usable afterwards.
    assert.is_true(c:send(msgs(1)[1]).ok)
  end)

  it("refuses re-entry and close from inside a callback", function()
    local inner
    c:send_many(msgs(1), { on_sending = function()
      inner = { pcall(c.send, c, msgs(1)[1]) }
    end })
    assert.is_false(inner[1])
    assert.matches("busy", tostring(inner[2]))
    assert.has_error(function() c:send_many(msgs(1), { on_sending = 1 }) end)
    assert.has_error(function() c:send_many(msgs(1), { on_sendng = function() end }) end)
  end)

  it("check() refuses what send refuses and sends nothing", function()
    assert.is_true(c:check(msgs(1)[1]))
    local ok, err = c:check { to = "12", from = FROM, text = "x" }
    assert.is_nil(ok)
    assert.equal("recipient", err.category)
    assert.equal("senders", err.provider)
    assert.has_error(function() c:check { to = "01012345678", from = FROM, txt = "x" } end)
    assert.equal(0, #fake:requests("/APIV2/sms_send"))
  end)
end)

describe("send_many streaming (OneShot)", function()
  local fake, c
  setup(function()
    fake = fake_control.start("oneshot")
    c = ksms.client("oneshot", fake:session_options { reconnect_delay = 0.2 })
  end)
  teardown(function() c:close(); fake_control.stop_all() end)

  it("calls on_sending before each frame and on_outcome per message; expires_at holds a queued one back", function()
    local list = {}
    for i = 1, 4 do list[i] = { to = "01011112222", from = "15666639", text = "os" .. i } end
    list[3].expires_at = os.time() - 1
    local sending, outcomes = {}, {}
    local outs = c:send_many(list, {
      on_sending = function(i) sending[#sending + 1] = i end,
      on_outcome = function(i, o) outcomes[i] = o end })
    table.sort(sending)
    assert.same({ 1, 2, 4 }, sending)
    for i = 1, 4 do assert.equal(outs[i], outcomes[i]) end
    assert.is_true(outs[1].ok and outs[2].ok and outs[4].ok)
    assert.equal("expired", outs[3].category)
    assert.is_false(outs[3].maybe_sent)
    assert.is_true(c:check(list[1]))
    local ok, err = c:check { to = "12", from = "15666639", text = "x" }
    assert.is_nil(ok)
    assert.equal("oneshot", err.provider)
  end)

  it("on_sending returning false holds a message back: cancelled, and its frame never reaches the server", function()
    fake:reset()
    fake:state { record_messages = true }
    local list = {}
    for i = 1, 3 do list[i] = { to = "01011112222", from = "15666639", text = "veto" .. i } end
    local outs = c:send_many(list, { on_sending = function(i) return i ~= 2 end })
    assert.is_true(outs[1].ok and outs[3].ok)
    assert.equal("cancelled", outs[2].category)
    assert.is_false(outs[2].maybe_sent)
    local texts = {}
    for _, r in ipairs(fake:requests("MsgSendReq")) do texts[#texts + 1] = r.body.Message end
    table.sort(texts)
    assert.same({ "veto1", "veto3" }, texts)
  end)
end)
