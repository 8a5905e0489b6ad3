-- events_spec.lua - the on_event hook (ksms.events) of every client, against
-- the fakes: one event per provider operation, ok / failed / maybe_sent, a
-- hook that raises never breaks a send, and no secret or phone number in
-- any event.
local ksms = require "ksms"
local events = require "ksms.events"
local session = require "ksms.oneshot.session"
local fake_control = require "fake_control"
local H = require "spec_helper"

local KEY = "test-senders-key"
local TO, FROM = "01011112222", "0212345678"

-- Every string in the events, and a check that none holds a secret or a
-- phone number (any run of 7 or more digits).
local function assert_clean(list, secrets)
  for _, ev in ipairs(list) do
    for k, v in pairs(ev) do
      local s = tostring(v)
      if type(v) == "string" then
        assert.is_nil(s:find("%d%d%d%d%d%d%d"), "a number in event field " .. k .. ": " .. s)
      end
      for _, secret in ipairs(secrets) do
        for _, form in ipairs(H.secret_encodings(secret)) do
          assert.is_nil(s:find(form, 1, true), "a secret in event field " .. k)
        end
      end
    end
  end
end

local FIELDS = { provider = true, operation = true, kind = true, recipients = true, status = true,
  category = true, code = true, duration = true, attempt = true, reconnect = true }

local function assert_shape(ev)
  for k in pairs(ev) do assert.is_true(FIELDS[k] ~= nil, "unexpected field " .. k) end
  assert.is_string(ev.provider)
  assert.is_string(ev.operation)
  assert.is_number(ev.recipients)
  assert.is_true(ev.status == "ok" or ev.status == "failed" or ev.status == "maybe_sent")
  assert.is_number(ev.duration)
  assert.is_true(ev.duration >= 0)
  assert.is_number(ev.attempt)
end

describe("ksms.events", function()
  it("masks digit runs in codes and refuses odd ones", function()
    assert.equal(185, events.code_of(185))
    assert.equal("-101", events.code_of("-101"))
    assert.equal("*******2222", events.code_of("01011112222"))
    assert.equal("other", events.code_of("a b"))
    assert.equal("other", events.code_of(("x"):rep(40)))
    assert.equal(3, events.recipients_of({ "a", "b", "c" }))
    assert.equal(2, events.recipients_of("010,011"))
  end)
end)

describe("on_event, HTTP providers", function()
  local fake
  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  local function client(list, extra)
    local opts = { api_key = KEY, base_url = fake.base_url, timeout = 5,
      on_event = function(ev) list[#list + 1] = ev end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return ksms.client("senders", opts)
  end

  it("is declared, and anything but a function raises", function()
    assert.equal("function", require("ksms.client").info("senders").options.on_event)
    assert.has_error(function() ksms.client("senders", { api_key = KEY, on_event = 1 }) end,
      "ksms.client(\"senders\"): on_event must be a function")
    assert.has_error(function() ksms.client("senders", { api_key = KEY, on_evnt = print }) end)
  end)

  it("gives one event per operation: ok, failed (a refusal) and maybe_sent (a timeout)", function()
    local list = {}
    local c = client(list)
    assert(c:send { to = { TO, "01033334444" }, from = FROM, text = "hello" })
    assert.equal(1, #list)
    local ev = list[1]
    assert_shape(ev)
    assert.same({ "senders", "send", "sms", 2, "ok", 1 },
      { ev.provider, ev.operation, ev.kind, ev.recipients, ev.status, ev.attempt })
    assert.is_nil(ev.category)

    fake:script { path = "/APIV2/sms_send", result = "185", times = 1 }
    assert.is_nil(c:send { to = TO, from = FROM, text = "refused" })
    ev = list[2]
    assert_shape(ev)
    assert.same({ "send", "failed", 1 }, { ev.operation, ev.status, ev.recipients })
    assert.is_string(ev.category)
    assert.is_not_nil(ev.code)

    assert(c:balance())
    assert.same({ "balance", "ok", 0 }, { list[3].operation, list[3].status, list[3].recipients })

    -- Refused before sending: no provider operation, no event.
    assert.is_nil(c:send { to = "12", from = FROM, text = "bad number" })
    assert.equal(3, #list)
    c:close()

    local slow = client(list, { timeout = 0.5 })
    fake:script { path = "/APIV2/sms_send", latency_ms = 3000, times = 1 }
    local _, err = slow:send { to = TO, from = FROM, text = "slow" }
    assert.is_true(err.maybe_sent)
    ev = list[4]
    assert_shape(ev)
    assert.same({ "send", "maybe_sent", "timeout" }, { ev.operation, ev.status, ev.category })
    assert.is_true(ev.duration >= 0.4 and ev.duration < 3, "duration " .. ev.duration)
    slow:close()
    assert_clean(list, { KEY })
  end)

  it("gives send_many one event per message", function()
    local list = {}
    local c = client(list)
    fake:script { path = "/APIV2/sms_send", result = "185", times = 1 }
    local outs = c:send_many { { to = TO, from = FROM, text = "a" }, { to = "x", from = FROM, text = "bad" },
      { to = TO, from = FROM, text = "c" } }
    assert.equal(3, #outs)
    assert.equal(2, #list) -- the bad number never left
    local statuses = { list[1].status, list[2].status }
    table.sort(statuses)
    assert.same({ "failed", "ok" }, statuses)
    for _, ev in ipairs(list) do assert.equal("send_many", ev.operation) end
    c:close()
    assert_clean(list, { KEY })
  end)

  it("logs a hook that raises and sends all the same", function()
    local calls = 0
    local c = client({}, { on_event = function() calls = calls + 1; error("hook broke") end })
    local res = assert(c:send { to = TO, from = FROM, text = "still sent" })
    assert.is_true(res.ok)
    assert(c:send { to = TO, from = FROM, text = "again" })
    assert.equal(2, calls)
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
    c:close()
  end)
end)

describe("on_event, OneShot", function()
  local fake
  setup(function() fake = fake_control.start("oneshot", { state = { report_delay_ms = 20 } }) end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("gives bind, send (ok, failed, maybe_sent), report and disconnect events", function()
    local list = {}
    local opts = fake:session_options { reconnect_delay = 0.2,
      on_event = function(ev) list[#list + 1] = ev end,
      on_report = function() end }
    local c = ksms.client("oneshot", opts)
    assert.equal("function", require("ksms.client").info("oneshot").options.on_event)
    assert(c:send { to = "01012345678", from = "15666639", text = "ok" })
    fake:script { method = "MsgSendReq", result = 7, times = 1 }
    assert.is_nil(c:send { to = "01012345678", from = "15666639", text = "refused" })
    fake:script { method = "MsgSendReq", fault = "close", times = 1 }
    local _, err = c:send { to = "01012345678", from = "15666639", text = "lost" }
    assert.is_true(err.maybe_sent)
    c.session:poll(0.6) -- reconnects, reports arrive
    c:close()
    local by = {}
    for _, ev in ipairs(list) do
      assert_shape(ev)
      assert.equal("oneshot", ev.provider)
      by[ev.operation] = by[ev.operation] or {}
      table.insert(by[ev.operation], ev)
    end
    local sends = by.send
    assert.equal(3, #sends)
    assert.same({ "ok", "failed", "maybe_sent" }, { sends[1].status, sends[2].status, sends[3].status })
    assert.same({ "sms", 1, 1 }, { sends[1].kind, sends[1].recipients, sends[1].attempt })
    assert.equal("recipient", sends[2].category)
    assert.equal(7, sends[2].code)
    assert.is_true(#by.bind >= 2, "a bind and a reconnect")
    assert.same({ "ok", false }, { by.bind[1].status, by.bind[1].reconnect })
    assert.is_true(by.bind[#by.bind].reconnect)
    assert.is_true(#by.disconnect >= 1)
    assert.is_true(#(by.report or {}) >= 1, "a pushed report")
    assert_clean(list, { opts.password, opts.key, opts.iv })
  end)

  it("gives a failed bind event when nothing listens, and a raising hook stops nothing", function()
    local list = {}
    local port = H.free_port and H.free_port() or 1
    local s = session.new { host = "127.0.0.1", port = port, id = "x", password = "y",
      key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!", connect_timeout = 1,
      on_event = function(ev) list[#list + 1] = ev; error("boom") end }
    assert.is_nil(s:connect())
    s:close()
    assert.equal(1, #list)
    assert.same({ "bind", "failed", "network", 1 }, { list[1].operation, list[1].status, list[1].category, list[1].attempt })
  end)

  it("raises for an on_event that is not a function", function()
    assert.has_error(function() session.new(fake:session_options { on_event = "x" }) end)
  end)
end)
