-- ksms.oneshot.driver, the one OneShot session driver, against the fake
-- OneShot server: a user callback that raises stops nothing (it is
-- recorded in last_error, the loop goes on, no other callback loses its
-- outcome, and the bytes the protocol produced are still written), one
-- set of option names, and the LuaSocket adapter end to end.
local session = require "ksms.oneshot.session"
local driver = require "ksms.oneshot.driver"
local core = require "ksms.core"
local fake_control = require "fake_control"

local monotonic = core.monotonic

local opts = require("spec_helper").oneshot_options

local msg = require("spec_helper").oneshot_msg

-- Frames the fake writes now, in one write, on the bound connection.
local function send_frames(fake, frames) return fake:control("POST", "send", { frames = frames }) end

local function report_body(server_msg_id, user_msg_id)
  return { ServerMsgId = server_msg_id, UserMsgId = user_msg_id, UserMsgSubId = "", PhoneNo = "01012345678",
    MsgType = 4, Result = 0, Telecom = "SKT", DeliveryTime = "2024-01-01 09:00:00.000", UserData = "" }
end

local function poll_until(s, seconds, done)
  local deadline = monotonic() + seconds
  while monotonic() < deadline and not done() do s:poll(0.05) end
  return done()
end

local function is_callback_error(e, name)
  assert.is_table(e)
  assert.equal("unknown", e.category)
  assert.equal("callback", e.code)
  assert.equal("oneshot", e.provider)
  assert.matches(name .. " raised: ", e.message, 1, true)
end

describe("the oneshot driver", function()
  local fake
  setup(function() fake = fake_control.start("oneshot", { state = { speed = 100, report_delay_ms = 20 } }) end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  describe("with a callback that raises", function()
    it("records it in last_error and keeps the loop going: flush ends, later messages are sent", function()
      fake:state { reports = false }
      local s = session.new(opts(fake))
      assert(s:connect())
      local calls = 0
      for i = 1, 3 do
        assert(s:submit(msg("r" .. i), function() calls = calls + 1; error("boom " .. i) end))
      end
      assert.is_true(s:flush(5))
      assert.equal(3, calls)
      is_callback_error(s.last_error, "on_result")
      assert.matches("boom", s.last_error.message, 1, true)
      -- The session still works after them.
      local r = assert(s:send(msg("after")))
      assert.is_true(r.ok)
      s:close()
      assert.equal(4, #fake:requests("MsgSendReq"))
    end)

    it("never loses another callback's outcome in the same batch of answers", function()
      fake:state { reports = false }
      local s = session.new(opts(fake))
      assert(s:connect())
      -- The server keeps both answers back, then writes them in one burst.
      fake:script { method = "MsgSendReq", fault = "silent", times = 2 }
      local outcome
      assert(s:submit(msg("first"), function() error("first raises") end))
      assert(s:submit(msg("second"), function(r, e) outcome = r or e end))
      assert.is_true(poll_until(s, 5, function() return #fake:requests("MsgSendReq") == 2 end))
      send_frames(fake, {
        { method = "MsgSendRes", body = { UserMsgId = "first", UserMsgSubId = "", Result = 0 } },
        { method = "MsgSendRes", body = { UserMsgId = "second", UserMsgSubId = "", Result = 0 } },
      })
      assert.is_true(s:flush(5))
      assert.is_table(outcome)
      assert.is_true(outcome.ok, tostring(outcome.message))
      assert.equal("second", outcome.id)
      is_callback_error(s.last_error, "on_result")
      s:close()
    end)

    it("still writes the AliveRes the protocol produced in the batch where on_result raised", function()
      fake:state { reports = false }
      local s = session.new(opts(fake))
      assert(s:connect())
      fake:script { method = "MsgSendReq", fault = "silent", times = 1 }
      assert(s:submit(msg("alive"), function() error("raises before the AliveRes is written") end))
      assert.is_true(poll_until(s, 5, function() return #fake:requests("MsgSendReq") == 1 end))
      assert.equal(0, #fake:requests("AliveRes"))
      send_frames(fake, {
        { method = "MsgSendRes", body = { UserMsgId = "alive", UserMsgSubId = "", Result = 0 } },
        { method = "AliveReq" },
      })
      assert.is_true(poll_until(s, 5, function() return #fake:requests("AliveRes") == 1 end))
      is_callback_error(s.last_error, "on_result")
      assert.is_true(s.bound)
      s:close()
    end)

    it("acknowledges the other reports of the batch, and not the one whose on_report raised", function()
      local seen = {}
      local s = session.new(opts(fake, { on_report = function(ev)
        seen[#seen + 1] = ev.user_msg_id
        if ev.user_msg_id == "bad" then error("on_report fails for this one") end
      end }))
      assert(s:connect())
      send_frames(fake, {
        { method = "ReportReq", body = report_body("9001", "good1") },
        { method = "ReportReq", body = report_body("9002", "bad") },
        { method = "ReportReq", body = report_body("9003", "good2") },
        { method = "AliveReq" },
      })
      assert.is_true(poll_until(s, 5, function() return #fake:requests("AliveRes") == 1 and #seen == 3 end))
      assert.is_true(poll_until(s, 2, function() return #fake:requests("ReportRes") == 2 end))
      s:poll(0.2)
      local acked = {}
      for _, r in ipairs(fake:requests("ReportRes")) do acked[#acked + 1] = r.body.UserMsgId end
      table.sort(acked)
      assert.same({ "good1", "good2" }, acked)
      assert.same({ "good1", "bad", "good2" }, seen)
      is_callback_error(s.last_error, "on_report")
      s:close()
    end)

    it("calls on_sending before each MsgSendReq is written, once per attempt, and survives it raising", function()
      fake:state { reports = false }
      local told, already = {}, {}
      local s = session.new(opts(fake, { on_sending = function(rec)
        told[#told + 1] = rec.id
        -- Asked of the fake now: has this message reached it yet?
        for _, r in ipairs(fake:requests("MsgSendReq")) do
          if r.body.UserMsgId == rec.id then already[#already + 1] = rec.id end
        end
        error("on_sending raises")
      end }))
      assert(s:connect())
      for i = 1, 3 do assert(s:submit(msg("s" .. i))) end
      assert.is_true(s:flush(5))
      assert.same({ "s1", "s2", "s3" }, told)
      assert.same({}, already)
      is_callback_error(s.last_error, "on_sending")
      s:close()
      assert.equal(3, #fake:requests("MsgSendReq"))
    end)
  end)

  describe("options", function()
    it("are one set: write_timeout (the binder's send_timeout is gone), and an unknown one names them all", function()
      local s = session.new(opts(fake, { write_timeout = 5, read_timeout = 60 }))
      assert.equal(5, s.write_timeout)
      s:close()
      assert.error_matches(function() session.new(opts(fake, { send_timeout = 5 })) end,
        "unknown option 'send_timeout'")
      local ok, err = pcall(session.new, opts(fake, { reconect_delay = 1 }))
      assert.is_false(ok)
      assert.matches("unknown option 'reconect_delay' (did you mean reconnect_delay?)", err, 1, true)
      for _, k in ipairs { "socket", "on_sending", "write_timeout", "read_timeout", "auto_reconnect", "clock" } do
        assert.matches(k, err, 1, true)
      end
      assert.error_matches(function() session.new(opts(fake, { reconnect_delay = "1" })) end,
        "reconnect_delay must be a number")
      assert.error_matches(function() session.new(opts(fake, { socket = "nosuch" })) end,
        "socket is \"core\", \"luasocket\" or an adapter table")
      for k in pairs(driver.options) do assert.is_string(session.options[k], k) end
    end)

    it("raise at the caller's line for a closed session", function()
      local s = session.new(opts(fake))
      s:close()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() local r = s:submit(msg("late")); return r end)
      assert.is_false(ok)
      assert.matches("oneshot_driver_spec.lua:" .. line .. ": ksms.oneshot.session: closed", err, 1, true)
    end)
  end)

  describe("over LuaSocket (socket = \"luasocket\")", function()
    it("binds, sends messages, receives and acknowledges their reports, and unbinds", function()
      local reports = {}
      local s = session.new(opts(fake, { socket = "luasocket",
        on_report = function(ev) reports[#reports + 1] = ev end }))
      assert(s:connect())
      assert.is_true(s.bound)
      local r = assert(s:send { to = "010-1234-5678", from = "1566-6639", text = "루아소켓" })
      assert.is_true(r.ok)
      local outcomes = {}
      for i = 1, 5 do
        assert(s:submit(msg("ls" .. i), function(res, e) outcomes[#outcomes + 1] = res or e end))
      end
      assert.is_true(s:flush(10))
      assert.is_true(poll_until(s, 5, function() return #reports == 6 end))
      s:poll(0.2)
      s:close()
      assert.equal(5, #outcomes)
      for _, o in ipairs(outcomes) do assert.is_true(o.ok, tostring(o.message)) end
      assert.equal(6, #reports)
      assert.equal(0, reports[1].result)
      local st = fake:stats()
      assert.equal(6, st.reports_acked)
      assert.equal(1, st.unbinds)
      assert.equal(6, #fake:requests("MsgSendReq"))
    end)

    it("writes large bursts whole and uploads an MMS image", function()
      fake:state { speed = 100000, reports = false }
      local s = session.new(opts(fake, { socket = "luasocket", queue_limit = 3000 }))
      assert(s:connect())
      local ok = 0
      for i = 1, 2000 do
        assert(s:submit(msg("b" .. i, ("긴 글 %d "):format(i) .. ("가"):rep(500)), function(r) if r then ok = ok + 1 end end))
      end
      assert.is_true(s:flush(30))
      assert.equal(2000, ok)
      local jpeg = "\255\216\255\224" .. ("j"):rep(200000) .. "\255\217"
      local r = assert(s:send { to = "01012345678", from = "15666639", subject = "사진", text = "사진", images = { { data = jpeg } } })
      assert.is_true(r.ok)
      s:close()
      assert.equal(1, #fake:requests("UploadFileFinishReq"))
    end)

    it("gives a maybe-sent outcome when the connection dies, and reconnects for the rest", function()
      local s = session.new(opts(fake, { socket = "luasocket" }))
      assert(s:connect())
      fake:script { method = "MsgSendReq", fault = "close", times = 1 }
      local outcomes = {}
      for i = 1, 3 do
        assert(s:submit(msg("lc" .. i), function(res, e) outcomes[i] = res or e end))
      end
      assert.is_true(s:flush(10))
      s:close()
      local maybe = 0
      for i = 1, 3 do
        if not outcomes[i].ok then
          assert.equal("unknown", outcomes[i].category)
          assert.is_true(outcomes[i].maybe_sent)
          maybe = maybe + 1
        end
      end
      assert.is_true(maybe >= 1)
      assert.is_true(fake:stats().binds >= 2)
    end)

    it("reports a refused connect as a network error, with the reconnect jittered", function()
      local port = require("spec_helper").free_port()
      local s = session.new(opts(fake, { socket = "luasocket", port = port, reconnect_delay = 100 }))
      local ok, err = s:connect(2)
      assert.is_nil(ok)
      assert.equal("network", err.category)
      assert.equal("connect", err.code)
      assert.equal("oneshot", err.provider)
      local factor = (s.reconnect_at - monotonic()) / 100
      assert.is_true(factor >= 0.79 and factor <= 1.2, "jitter factor " .. factor)
      s:close()
    end)
  end)
end)
