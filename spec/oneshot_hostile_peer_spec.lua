-- ksms.oneshot.session against a hostile OneShot server (the fake's hostile
-- modes: scripted frames out of order or mistyped, garbage bind answers,
-- zlib bombs, huge Content-Length headers, slow drips), and a connection
-- that drops with auto_reconnect = false. Each outcome must be a clean
-- error, within a bounded time, CPU and Lua heap.
local session = require "ksms.oneshot.session"
local core = require "ksms.core"
local fake_control = require "fake_control"

local monotonic = core.monotonic
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

local opts = require("spec_helper").oneshot_options

local msg = require("spec_helper").oneshot_msg

local JPEG = "\255\216\255\224" .. ("j"):rep(3000) .. "\255\217"

-- Runs fn and returns its results with the wall time, the process CPU time
-- and the Lua heap growth (garbage included) it took.
local function measured(fn)
  collectgarbage("collect")
  local heap0, cpu0, t0 = collectgarbage("count"), os.clock(), monotonic()
  local r = pack(fn())
  return { wall = monotonic() - t0, cpu = os.clock() - cpu0, heap_kib = collectgarbage("count") - heap0 },
    unpack(r, 1, r.n)
end

local function bounded(m, wall, what)
  assert.is_true(m.wall < wall, ("%s took %.2f s"):format(what, m.wall))
  assert.is_true(m.cpu < 0.5, ("%s used %.2f s of CPU"):format(what, m.cpu))
  assert.is_true(m.heap_kib < 4096, ("%s grew the Lua heap by %.0f KiB"):format(what, m.heap_kib))
end

local function is_error(e, category, code)
  assert.is_table(e)
  assert.equal(category, e.category, tostring(e))
  if code then assert.equal(code, e.code, tostring(e)) end
  assert.equal("oneshot", e.provider)
  assert.is_string(tostring(e))
end

-- The fake's control call for frames written now (POST /_fake/send).
local function send_frames(fake, frames) return fake:control("POST", "send", { frames = frames }) end

describe("oneshot session against a hostile server", function()
  local fake
  setup(function()
    fake = fake_control.start("oneshot", { state = { speed = 100, report_delay_ms = 20 } })
  end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  describe("with auto_reconnect = false, a connection that drops while messages are queued", function()
    it("ends the unwritten ones as not sent at once, and send, flush and poll do not spin", function()
      -- Speed 1: m1 goes at once, m2 waits ~1 s; the connection closes on
      -- m1's arrival (BindReq, then the 2nd frame).
      fake:state { speed = 1, drop_after_received = 2 }
      local s = session.new(opts(fake, { auto_reconnect = false }))
      assert(s:connect(5))
      local outcomes = {}
      for _, id in ipairs { "q1", "q2" } do
        assert(s:submit(msg(id), function(r, e) outcomes[id] = { r, e } end))
      end
      local m, ok = measured(function() return s:flush(3) end)
      assert.is_true(ok)
      bounded(m, 2, "flush")
      local e1 = outcomes.q1[2]
      is_error(e1, "unknown", "connection_lost")
      assert.is_true(e1.maybe_sent)
      local e2 = outcomes.q2[2]
      is_error(e2, "network", "not_connected")
      assert.is_false(e2.maybe_sent)
      assert.matches("not sent", e2.message)
      -- Afterwards: a send ends at once, not sent; poll sleeps.
      local ms, r3, e3 = measured(function() return s:send(msg("q3"), 3) end)
      assert.is_nil(r3)
      is_error(e3, "network", "not_connected")
      assert.is_false(e3.maybe_sent)
      bounded(ms, 1, "send")
      local mp = measured(function() return s:poll(1) end)
      assert.is_true(mp.wall >= 0.9, "poll returned after " .. mp.wall)
      assert.is_true(mp.cpu < 0.2, ("poll(1) used %.2f s of CPU"):format(mp.cpu))
      local mu, name, ue = measured(function() return s:upload(JPEG, ".jpg", 3) end)
      assert.is_nil(name)
      is_error(ue, "network", "not_connected")
      bounded(mu, 1, "upload")
      s:close()
      local sent = fake:requests("MsgSendReq")
      assert.equal(1, #sent)
      assert.equal("q1", sent[1].body.UserMsgId)
    end)
  end)

  describe("garbage bind answers", function()
    local cases = {
      { "not Base64", { method = "BindRes", body = "%%% not Base64 %%%" } },
      { "not AES under the key", { method = "BindRes", body = core.b64encode(("\7"):rep(32)) } },
      { "not JSON once decrypted", { method = "BindRes", plain = "{\"Result\":0," } },
      { "a mistyped Result", { method = "BindRes", plain = "{\"Result\":\"OK\",\"Speed\":5}" } },
    }
    for _, case in ipairs(cases) do
      it("reports a BindRes that is " .. case[1] .. " as a protocol error at once", function()
        fake:script { method = "BindReq", fault = "silent", times = 1, frames = { case[2] } }
        local s = session.new(opts(fake))
        local m, ok, err = measured(function() return s:connect(15) end)
        assert.is_nil(ok)
        is_error(err, "protocol", "bad_bind_answer")
        bounded(m, 2, "connect")
        s:close()
        -- The refusal is the session's: it closed the connection itself
        -- (the fake keeps a silent one open).
        local deadline = monotonic() + 2
        while fake:stats().open > 0 and monotonic() < deadline do core.sleep(0.02) end
        assert.equal(0, fake:stats().open)
      end)
    end

    it("reports a zlib bomb as the bind answer as too large, without inflating it", function()
      fake:script { method = "BindReq", fault = "bomb", times = 1 }
      local s = session.new(opts(fake))
      local m, ok, err = measured(function() return s:connect(15) end)
      assert.is_nil(ok)
      is_error(err, "protocol", "too_large")
      bounded(m, 3, "connect")
      s:close()
    end)

    it("reports a frame header announcing 4 GiB as too large, at once", function()
      fake:script { method = "BindReq", fault = "huge_length", times = 1 }
      local s = session.new(opts(fake))
      local m, ok, err = measured(function() return s:connect(15) end)
      assert.is_nil(ok)
      is_error(err, "protocol", "too_large")
      bounded(m, 2, "connect")
      s:close()
    end)

    it("gives up on a bind never answered at bind_timeout", function()
      fake:script { method = "BindReq", fault = "silent", times = 1 }
      local s = session.new(opts(fake, { bind_timeout = 0.5 }))
      local m, ok, err = measured(function() return s:connect(15) end)
      assert.is_nil(ok)
      is_error(err, "network", "bind_timeout")
      assert.is_true(m.wall >= 0.45, "gave up after " .. m.wall)
      bounded(m, 2, "connect")
      s:close()
    end)

    it("gives up at bind_timeout on a bind answer dripped one byte per 100 ms", function()
      fake:script { method = "BindReq", fault = "drip", times = 1 }
      local s = session.new(opts(fake, { bind_timeout = 1 }))
      local m, ok, err = measured(function() return s:connect(15) end)
      assert.is_nil(ok)
      is_error(err, "network", "bind_timeout")
      assert.is_true(m.wall >= 0.95, "gave up after " .. m.wall)
      bounded(m, 3, "connect")
      s:close()
      assert.is_true(fake:stats().writes >= 5)     -- it did drip
    end)
  end)

  describe("upload answers out of order", function()
    it("fails the send, without raising, when UploadFileRes comes before UploadFileNameRes", function()
      fake:script { method = "UploadFileNameReq", times = 1,
        frames = { { method = "UploadFileRes", body = { Result = 0 } } } }
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local m, r, err = measured(function()
        return s:send({ to = "01012345678", from = "15666639", text = "사진", images = { { data = JPEG } } }, 5)
      end)
      assert.is_nil(r)
      is_error(err, "protocol", "out_of_order")
      bounded(m, 2, "send")
      -- The connection goes on: the next message is sent.
      assert(s:send(msg("after-upload"), 5))
      s:close()
      assert.equal(1, #fake:requests("MsgSendReq"))
    end)

    it("fails the send on an UploadFileFinishRes before any data (not nil, nil)", function()
      fake:script { method = "UploadFileNameReq", fault = "silent", times = 1,
        frames = { { method = "UploadFileFinishRes", body = { Result = 0 } } } }
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local r, err = s:send({ to = "01012345678", from = "15666639", text = "사진", images = { { data = JPEG } } }, 5)
      assert.is_nil(r)
      is_error(err, "protocol", "out_of_order")
      s:close()
      assert.equal(0, #fake:requests("MsgSendReq"))
    end)
  end)

  describe("answers and pushes with mistyped fields", function()
    it("ends a message answered with a mistyped Result as a protocol error, maybe sent", function()
      fake:script { method = "MsgSendReq", fault = "silent", times = 1,
        frames = { { method = "MsgSendRes", body = { UserMsgId = "typed-1", UserMsgSubId = "", Result = "zero" } } } }
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local r, err = s:send(msg("typed-1"), 5)
      assert.is_nil(r)
      is_error(err, "protocol", "bad_answer")
      assert.is_true(err.maybe_sent)
      s:close()
    end)

    it("neither delivers nor acknowledges mistyped reports, keeps the error, and goes on", function()
      local reports = {}
      local s = session.new(opts(fake, { on_report = function(ev) reports[#reports + 1] = ev end }))
      assert(s:connect(5))
      send_frames(fake, {
        { method = "ReportReq", body = { UserMsgId = { "x" }, UserMsgSubId = "", ServerMsgId = "1", Result = 0 } },
        { method = "ReportReq", body = { UserMsgId = "x", ServerMsgId = { 1 }, Result = 0 } },
        { method = "ReportReq", body = { UserMsgId = "x", ServerMsgId = "2", Result = "delivered" } },
        { method = "SpamReq", body = { SpamId = true, PhoneNo = "01000000000", DenyNo = "080" } },
        { method = "MsgSendRes", body = { UserMsgId = "never-sent", UserMsgSubId = "", Result = 0 } },
        { method = "NoSuchReq", body = { Result = 0 } },
      })
      local deadline = monotonic() + 3
      while monotonic() < deadline and not (s.last_error and s.last_error.code == "unexpected_method") do
        s:poll(0.05)
      end
      is_error(s.last_error, "protocol", "unexpected_method")
      assert.equal(0, #reports)
      assert.equal(0, #fake:requests("ReportRes"))
      assert.equal(0, #fake:requests("SpamRes"))
      -- The session is still bound and works: a real report arrives and is acknowledged.
      assert(s:send(msg("typed-2"), 5))
      deadline = monotonic() + 3
      while monotonic() < deadline and #reports == 0 do s:poll(0.05) end
      assert.equal(1, #reports)
      assert.equal("typed-2", reports[1].user_msg_id)
      s:close()
      assert.equal(1, fake:stats().connections)
    end)
  end)

  describe("slow drips and stalled frames", function()
    it("gives up on a message whose answer drips, at the send's timeout, and closes in bounded time", function()
      fake:script { method = "MsgSendReq", fault = "drip", times = 1 }
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local m, r, err = measured(function() return s:send(msg("drip-1"), 1) end)
      assert.is_nil(r)
      is_error(err, "unknown", "no_outcome")
      assert.is_true(err.maybe_sent)
      bounded(m, 2, "send")
      local mc = measured(function() s:close() end)
      bounded(mc, 4.5, "close")
    end)

    it("drops a connection whose frame never ends (keepalive unanswered), giving the maybe-sent outcome", function()
      -- A 60,000-byte frame announced, then dripped: the AliveReq's answer
      -- waits behind it, so the keepalive declares the connection dead.
      fake:script { method = "MsgSendReq", fault = "drip", times = 1,
        frames = { { raw = "Content-Length:60000\r\n" .. ("x"):rep(200) } } }
      local s = session.new(opts(fake, { keepalive_interval = 0.3, alive_timeout = 0.3 }))
      assert(s:connect(5))
      local m, r, err = measured(function() return s:send(msg("stall-1"), 10) end)
      assert.is_nil(r)
      is_error(err, "unknown", "connection_lost")
      assert.is_true(err.maybe_sent)
      is_error(s.last_error, "network", "alive_timeout")
      bounded(m, 3, "send")
      s:close()
    end)

    it("drops a connection on a frame header announcing 4 GiB in answer to a message", function()
      fake:script { method = "MsgSendReq", fault = "huge_length", times = 1 }
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local m, r, err = measured(function() return s:send(msg("huge-1"), 10) end)
      assert.is_nil(r)
      is_error(err, "unknown", "connection_lost")
      is_error(s.last_error, "protocol", "too_large")
      bounded(m, 2, "send")
      s:close()
    end)
  end)
end)
