-- ob:track and ob:reconcile (ksms.outbox.track): real clients against the
-- real fakes (ppurio reports, Cafe24 history, OneShot pushed reports,
-- Senders without a lookup), records in every store of
-- spec/outbox_stores.lua (memory, SQLite files, a real redis-server). Sent and maybe_sent records are made the way the worker
-- makes them: the message is sent for real, then the store records the
-- outcome (queued -> sending -> sent | maybe_sent, provider_id = the id).
local ksms = require "ksms"
local outbox = require "ksms.outbox"
local fake_control = require "fake_control"
local stores = require "outbox_stores"

local FROM = "02-1234-5678"

-- The worker's path for one record, with a real send.
local function send_record(ob, name, msg, key)
  local rec = assert(ob:enqueue(msg, { key = key, client = name }))
  local st = ob.store
  assert.is_true(st:update(rec.key, { "queued" }, "sending", {}))
  local res, err = ob.clients[name]:send(msg)
  if res then
    assert.is_true(st:update(rec.key, { "sending" }, "sent", { provider_id = res.id, code = res.code }))
  elseif err.maybe_sent then
    assert.is_true(st:update(rec.key, { "sending" }, "maybe_sent", { error = err }))
  else
    error("the send failed: " .. tostring(err))
  end
  return ob:status(rec.key), res, err
end

for _, store_kind in ipairs(stores.list) do
  local kind = store_kind.name
  describe("ob:track and ob:reconcile (" .. kind .. " store)", function()
    local fakes, clients, cleanups = {}, {}, {}

    -- A fresh store of this kind (spec/outbox_stores.lua), removed in teardown.
    local function new_spec()
      local spec, cleanup = store_kind.new()
      cleanups[#cleanups + 1] = cleanup
      return spec
    end
    local function open()
      return assert(outbox.open { store = new_spec(), clients = clients })
    end

    setup(function()
      for _, name in ipairs { "ppurio", "cafe24", "senders", "oneshot" } do
        fakes[name] = fake_control.start(name)
      end
      clients.ppurio = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key",
        base_url = fakes.ppurio.base_url, timeout = 5 })
      clients.cafe24 = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key",
        base_url = fakes.cafe24.base_url, history_url = fakes.cafe24.history_url, timeout = 5 })
      clients.senders = ksms.client("senders", { api_key = "test-senders-key", base_url = fakes.senders.base_url,
        timeout = 5 })
      clients.oneshot = ksms.client("oneshot", fakes.oneshot:session_options { reconnect_delay = 0.2 })
    end)

    teardown(function()
      for _, c in pairs(clients) do c:close() end
      fake_control.stop_all()
      for _, cleanup in ipairs(cleanups) do cleanup() end
    end)

    before_each(function()
      for name, f in pairs(fakes) do if name ~= "oneshot" then f:reset() end end
    end)

    it("settles ppurio records from report(cmid): delivered, undelivered, and an undocumented code stays sent",
      function()
        local ob = open()
        local a = send_record(ob, "ppurio", { to = "01011112222", from = "0212345678", text = "one" }, "p-a")
        local b = send_record(ob, "ppurio", { to = "01033334444", from = "0212345678", text = "two" }, "p-b")
        local c = send_record(ob, "ppurio", { to = "01055556666", from = "0212345678", text = "three" }, "p-c")
        assert.equal("sent", a.state)
        assert.is_string(a.provider_id)
        fakes.ppurio:state { reports = { [b.provider_id] = "4410", [c.provider_id] = "7777" } }
        local s = assert(ob:track { clients = { ppurio = clients.ppurio }, rounds = 1 })
        assert.equal(3, s.lookups)
        assert.equal(1, s.delivered)
        assert.equal(1, s.undelivered)
        assert.equal(1, s.pending)
        local ra, rb, rc = ob:status("p-a"), ob:status("p-b"), ob:status("p-c")
        assert.equal("delivered", ra.state)
        assert.equal("4100", tostring(ra.code))
        assert.equal("undelivered", rb.state)
        assert.equal("4410", tostring(rb.code))
        assert.equal("recipient", rb.error.category)
        assert.equal("ppurio", rb.error.provider)
        assert.equal("sent", rc.state)
        -- The report lookups went to the fake: one per sent record.
        assert.equal(3, #fakes.ppurio:requests("/ppurio/1/message/report/ksmstest"))
        -- Once the code is a documented one, the next round settles it.
        fakes.ppurio:state { reports = { [c.provider_id] = "6600" } }
        s = assert(ob:track { clients = { ppurio = clients.ppurio }, until_idle = true, interval = 0.05,
          deadline = os.time() + 10 })
        assert.equal(1, s.delivered)
        assert.equal(0, s.pending)
        assert.equal("delivered", ob:status("p-c").state)
        ob:close()
      end)

    it("keeps ppurio records without a report yet, counts refused lookups, and reconciles by cmid", function()
      local ob = open()
      local function record(key, state, cmid)
        local rec = assert(ob:enqueue({ to = "01011112222", from = "0212345678", text = key },
          { key = key, client = "ppurio" }))
        assert.is_true(ob.store:update(rec.key, { "queued" }, "sending", {}))
        assert.is_true(ob.store:update(rec.key, { "sending" }, state, { provider_id = cmid }))
      end
      record("u-1", "sent", "20000101000000000") -- a cmid the provider has no report for
      local s = assert(ob:track { clients = { ppurio = clients.ppurio }, rounds = 1 })
      assert.equal(1, s.lookups)
      assert.equal(0, s.errors)
      assert.equal(1, s.pending)
      assert.equal("sent", ob:status("u-1").state)
      local wrong = ksms.client("ppurio", { client_id = "ksmstest", api_key = "not-the-key",
        base_url = fakes.ppurio.base_url, timeout = 5 })
      s = assert(ob:track { clients = { ppurio = wrong }, rounds = 1 })
      assert.equal(1, s.errors)
      wrong:close()
      -- maybe_sent with a cmid (an application that recorded it): the report settles it.
      local res = assert(clients.ppurio:send { to = "01011112222", from = "0212345678", text = "had it" })
      record("u-2", "maybe_sent", res.id)
      record("u-3", "maybe_sent", "20000101000000001")
      local rep = assert(ob:reconcile("u-2"))
      assert.equal("sent", rep.outcome)
      assert.equal("4100", rep.evidence.call_status)
      assert.equal("sent", ob:status("u-2").state)
      assert.equal("not_found", assert(ob:reconcile("u-3")).outcome)
      assert.equal("maybe_sent", ob:status("u-3").state)
      ob:close()
    end)

    it("bounds ppurio polling per round and never raises on what the report answers", function()
      local ob = open()
      for i = 1, 5 do
        send_record(ob, "ppurio", { to = "01011112222", from = "0212345678", text = "n" .. i }, "q-" .. i)
      end
      fakes.ppurio:script { path = "/ppurio/1/message/report/ksmstest", body = "{not json", times = 2 }
      local before = #fakes.ppurio:requests("/ppurio/1/message/report/ksmstest")
      local s = assert(ob:track { clients = { ppurio = clients.ppurio }, rounds = 1, per_round = 2 })
      assert.equal(2, s.lookups)
      assert.equal(2, #fakes.ppurio:requests("/ppurio/1/message/report/ksmstest") - before)
      assert.equal(2, s.errors)
      assert.equal(0, s.delivered)
      s = assert(ob:track { clients = { ppurio = clients.ppurio }, rounds = 3, per_round = 2, interval = 0 })
      -- The two whose answers were not JSON are asked again: all five settle.
      assert.equal(0, s.errors)
      assert.equal(5, s.delivered)
      assert.equal(5, s.lookups)
      s = assert(ob:track { clients = { ppurio = clients.ppurio }, until_idle = true, interval = 0,
        deadline = os.time() + 10 })
      assert.equal(0, s.lookups)
      assert.equal(1, s.rounds)
      assert.same({ delivered = 5 }, (function()
        local n = 0
        for rec in ob:list { state = "delivered" } do if rec.key:match("^q%-") then n = n + 1 end end
        return { delivered = n }
      end)())
      ob:close()
    end)

    it("matches Cafe24 history by recipient, time and text: requested stays sent, then delivered or undelivered",
      function()
        local ob = open()
        fakes.cafe24:state { delivery_delay = 2, failing_numbers = { "010-3333-4444" } }
        send_record(ob, "cafe24", { to = "010-1111-2222", from = FROM, text = "hello" }, "c-ok")
        send_record(ob, "cafe24", { to = "010-3333-4444", from = FROM, text = "hello" }, "c-fail")
        -- The same text to the same number twice: two records, two entries.
        send_record(ob, "cafe24", { to = "010-5555-6666", from = FROM, text = "again" }, "c-twice-1")
        send_record(ob, "cafe24", { to = "010-5555-6666", from = FROM, text = "again" }, "c-twice-2")
        -- A text the history never shows for that number: not matched.
        local s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
        assert.equal(4, s.lookups)
        assert.equal(0, s.delivered + s.undelivered)
        assert.equal(4, s.pending)
        assert.equal("sent", ob:status("c-ok").state)
        s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, until_idle = true, interval = 0.5,
          deadline = os.time() + 15 })
        assert.equal(3, s.delivered)
        assert.equal(1, s.undelivered)
        local ok, bad = ob:status("c-ok"), ob:status("c-fail")
        assert.equal("delivered", ok.state)
        assert.matches("^c24:01011112222:%d+:1$", ok.provider_id)
        assert.equal("undelivered", bad.state)
        assert.equal("cafe24", bad.error.provider)
        assert.matches("refunded", bad.error.message)
        local t1, t2 = ob:status("c-twice-1"), ob:status("c-twice-2")
        assert.equal("delivered", t1.state)
        assert.equal("delivered", t2.state)
        assert.are_not.equal(t1.provider_id, t2.provider_id)
        -- Each history query named the recipient (one query per record a round, at most max_pages).
        for _, req in ipairs(fakes.cafe24.history:requests("/sms_list.php")) do
          local found = false
          for _, pair in ipairs(req.form) do if pair[1] == "receivePhone" then found = true end end
          assert.is_true(found)
        end
        ob:close()
      end)

    it("does not match Cafe24 history of another text, and never raises on a history it cannot read", function()
      local ob = open()
      send_record(ob, "cafe24", { to = "010-1111-2222", from = FROM, text = "first text" }, "h-1")
      -- The history holds "other text" for 010-2222-3333 (sent outside the
      -- outbox); a record of another text to that number is not matched.
      assert(clients.cafe24:send { to = "010-2222-3333", from = FROM, text = "other text" })
      local rec = assert(ob:enqueue({ to = "010-2222-3333", from = FROM, text = "never sent" },
        { key = "h-2", client = "cafe24" }))
      assert.is_true(ob.store:update(rec.key, { "queued" }, "sending", {}))
      assert.is_true(ob.store:update(rec.key, { "sending" }, "sent", {}))
      fakes.cafe24:script { path = "/sms_list.php", body = "<result><code>0000</code><data><record>", times = 1 }
      fakes.cafe24:script { path = "/sms_list.php", body = string.rep("x", 100), status = 500, times = 1 }
      local s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
      assert.equal(2, s.errors)
      assert.equal("sent", ob:status("h-1").state)
      s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
      assert.equal(1, s.delivered)
      assert.equal(1, s.pending)
      assert.equal("delivered", ob:status("h-1").state)
      assert.equal("sent", ob:status("h-2").state)
      ob:close()
    end)

    it("matches Cafe24 history only within the record's time window (skew)", function()
      -- An outbox whose clock is an hour behind the provider's: the record's
      -- times are an hour before the history entry's registration.
      local ob = assert(outbox.open { store = new_spec(), clients = clients, now = function() return os.time() - 3600 end })
      send_record(ob, "cafe24", { to = "010-4444-5555", from = FROM, text = "clock" }, "w-1")
      local s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
      assert.equal(1, s.lookups)
      assert.equal(0, s.delivered)
      assert.equal("sent", ob:status("w-1").state)
      s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1, skew = 2 * 3600 })
      assert.equal(1, s.delivered)
      assert.equal("delivered", ob:status("w-1").state)
      ob:close()
    end)

    it("matches Cafe24 entries without regDate by the document's sendDateTime (reservations by their time)",
      function()
        local schedule = require "ksms.rules.schedule"
        local ob = open()
        local now = os.time()
        local at = now + 900
        send_record(ob, "cafe24", { to = "010-6666-7777", from = FROM, text = "no regdate" }, "d-1")
        send_record(ob, "cafe24", { to = "010-6666-8888", from = FROM, text = "reserved", at = at }, "d-2")
        send_record(ob, "cafe24", { to = "010-6666-9999", from = FROM, text = "reserved too", at = at }, "d-3")
        -- The history as the document lists it: no regDate.
        local function answer(send_type, to, text, t)
          return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<result><code>0000</code><data><record>"
            .. "<sendType>" .. send_type .. "</sendType><sendPhone>02-1234-5678</sendPhone><receivePhone>" .. to
            .. "</receivePhone><msg>" .. text .. "</msg><sendDateTime>" .. schedule.format(t, "YYYYMMDDhhmm")
            .. "</sendDateTime><sendStatus>3</sendStatus><refundDate></refundDate></record></data></result>"
        end
        fakes.cafe24:script { path = "/sms_list.php", times = 1, body = answer("I", "010-6666-7777", "no regdate", now) }
        fakes.cafe24:script { path = "/sms_list.php", times = 1, body = answer("R", "010-6666-8888", "reserved", at) }
        -- Sent now, not at the reserved time: not this record's entry.
        fakes.cafe24:script { path = "/sms_list.php", times = 1, body = answer("R", "010-6666-9999", "reserved too", now) }
        local s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
        assert.equal(3, s.lookups)
        assert.equal(2, s.delivered)
        assert.equal("delivered", ob:status("d-1").state)
        assert.equal("delivered", ob:status("d-2").state)
        assert.equal("sent", ob:status("d-3").state)
        ob:close()
      end)

    it("reconciles a Cafe24 maybe_sent record: sent with the matching entry, or not found with the search",
      function()
        local ob = open()
        -- The provider takes the message, then the answer is lost.
        fakes.cafe24:script { path = "/sms_sender.php", fault = "close", process = true, times = 1 }
        local r1 = send_record(ob, "cafe24", { to = "010-7777-8888", from = FROM, text = "lost answer" }, "m-1")
        assert.equal("maybe_sent", r1.state)
        -- Never reached the provider.
        fakes.cafe24:script { path = "/sms_sender.php", fault = "close", times = 1 }
        local r2 = send_record(ob, "cafe24", { to = "010-7777-9999", from = FROM, text = "never arrived" }, "m-2")
        assert.equal("maybe_sent", r2.state)
        local rep = assert(ob:reconcile("m-1"))
        assert.equal("sent", rep.outcome)
        assert.equal("sent", rep.state)
        assert.equal("sent", ob:status("m-1").state)
        assert.equal("reconciled", ob:status("m-1").code)
        assert.matches("^c24:01077778888:%d+:1$", ob:status("m-1").provider_id)
        assert.equal(rep.evidence.ref, ob:status("m-1").provider_id)
        assert.equal("010-7777-8888", rep.evidence.searched[1].entry.to)
        assert.matches('"evidence"', ob.store:meta_get("reconcile:m-1"))
        local rep2 = assert(ob:reconcile("m-2"))
        assert.equal("not_found", rep2.outcome)
        assert.equal("maybe_sent", rep2.state)
        assert.equal("maybe_sent", ob:status("m-2").state)
        assert.equal(0, rep2.evidence.searched[1].candidates)
        assert.is_true(rep2.evidence.searched[1].pages >= 1)
        assert.equal("01077779999", rep2.evidence.searched[1].to)
        -- A settled record is not reconciled again; track then delivers it.
        assert.equal("not_maybe_sent", assert(ob:reconcile("m-1")).outcome)
        local s = assert(ob:track { clients = { cafe24 = clients.cafe24 }, rounds = 1 })
        assert.equal(1, s.delivered)
        assert.equal("delivered", ob:status("m-1").state)
        ob:close()
      end)

    it("says where no lookup exists, and refuses unknown keys and misuse", function()
      local ob = open()
      fakes.senders:script { path = "/APIV2/sms_send", fault = "close", times = 1 }
      local r = send_record(ob, "senders", { to = "01011112222", from = "0212345678", text = "x" }, "n-1")
      assert.equal("maybe_sent", r.state)
      local rep = assert(ob:reconcile("n-1"))
      assert.equal("no_lookup", rep.outcome)
      assert.equal("maybe_sent", rep.state)
      assert.equal("senders", rep.provider)
      fakes.ppurio:script { path = "/ppurio/1/message/sms/ksmstest", fault = "close", times = 1 }
      r = send_record(ob, "ppurio", { to = "01011112222", from = "0212345678", text = "x" }, "n-2")
      assert.equal("maybe_sent", r.state)
      rep = assert(ob:reconcile("n-2"))
      assert.equal("no_lookup", rep.outcome)
      assert.matches("cmid", rep.evidence.reason)
      local rec = assert(ob:enqueue({ to = "01011112222", from = "15666639", text = "x" },
        { key = "n-3", client = "oneshot" }))
      assert.is_true(ob.store:update(rec.key, { "queued" }, "sending", {}))
      assert.is_true(ob.store:update(rec.key, { "sending" }, "maybe_sent", {}))
      assert.equal("no_lookup", assert(ob:reconcile("n-3")).outcome)
      local none, err = ob:reconcile("no-such-key")
      assert.is_nil(none)
      assert.equal("unknown_key", err.code)
      assert.has_error(function() ob:reconcile(42) end)
      assert.has_error(function() ob:track { interval = "soon" } end)
      assert.has_error(function() ob:track { bogus = 1 } end)
      -- Senders records stay sent: track lists it as having no lookup.
      send_record(ob, "senders", { to = "01011112222", from = "0212345678", text = "y" }, "n-4")
      local s = assert(ob:track { clients = { senders = clients.senders }, rounds = 1 })
      assert.same({ "senders" }, s.no_lookup)
      assert.equal(0, s.lookups)
      assert.equal("sent", ob:status("n-4").state)
      ob:close()
    end)

    it("records OneShot pushed reports by UserMsgId, and counts reports for no record", function()
      local ob = open()
      fakes.oneshot:reset()
      fakes.oneshot:state { report_delay_ms = 300 }
      -- What ob:run does for the OneShot clients it runs.
      require("ksms.outbox.track").watch(ob, "oneshot", clients.oneshot)
      -- A message sent outside the outbox: its report matches no record.
      assert(clients.oneshot:send { to = "01033334444", from = "15666639", text = "not ours" })
      local a = send_record(ob, "oneshot", { to = "01011112222", from = "15666639", text = "push me" }, "o-1")
      assert.equal("sent", a.state)
      assert.is_string(a.provider_id)
      local s = assert(ob:track { clients = { oneshot = clients.oneshot }, until_idle = true, interval = 0.2,
        deadline = os.time() + 10 })
      assert.equal("delivered", ob:status("o-1").state)
      assert.equal(1, s.reports)
      assert.is_true(s.unmatched >= 1)
      -- A failed delivery.
      fakes.oneshot:state { report_result = 31 }
      send_record(ob, "oneshot", { to = "01055556666", from = "15666639", text = "fail me" }, "o-2")
      s = assert(ob:track { clients = { oneshot = clients.oneshot }, until_idle = true, interval = 0.2,
        deadline = os.time() + 10 })
      local b = ob:status("o-2")
      assert.equal("undelivered", b.state)
      assert.equal("oneshot", b.error.provider)
      assert.equal(31, tonumber(b.code))
      -- Every report was acknowledged.
      local acked = 0
      for _, r in ipairs(fakes.oneshot:reports()) do if r.status == "acked" then acked = acked + 1 end end
      assert.equal(3, acked)
      fakes.oneshot:state { report_result = 0 }
      ob:close()
    end)

    it("end to end: ob:run sends, OneShot reports pushed during the run are recorded, track settles the rest",
      function()
        local ob = open()
        fakes.oneshot:reset()
        fakes.oneshot:state { report_delay_ms = 10 }
        fakes.cafe24:state { failing_numbers = { "010-9999-0000" } }
        for i = 1, 6 do
          assert(ob:enqueue({ to = "0101111000" .. i, from = "15666639", text = "os " .. i },
            { key = "r-o" .. i, client = "oneshot" }))
        end
        assert(ob:enqueue({ to = "01011112222", from = "0212345678", text = "pp" }, { key = "r-p", client = "ppurio" }))
        assert(ob:enqueue({ to = "010-9999-0000", from = FROM, text = "c24" }, { key = "r-c", client = "cafe24" }))
        assert(ob:enqueue({ to = "01011112222", from = "0212345678", text = "sd" }, { key = "r-s", client = "senders" }))
        local summary = assert(ob:run { until_idle = true, concurrency = 4 })
        assert.equal(9, summary.sent)
        -- Let the last reports arrive on the session the run used.
        local deadline = os.time() + 5
        while os.time() < deadline do
          local n = 0
          for _, r in ipairs(fakes.oneshot:reports()) do if r.status == "acked" then n = n + 1 end end
          if n == 6 then break end
          clients.oneshot.session:poll(0.1)
        end
        local s = assert(ob:track { until_idle = true, interval = 0.1, deadline = os.time() + 10 })
        assert.same({ "senders" }, s.no_lookup)
        for i = 1, 6 do
          local r = ob:status("r-o" .. i)
          assert.equal("delivered", r.state, "r-o" .. i)
          assert.is_string(r.provider_id)
        end
        assert.equal("delivered", ob:status("r-p").state)
        assert.equal("undelivered", ob:status("r-c").state)
        assert.equal("sent", ob:status("r-s").state)
        assert.equal(0, s.pending)
        ob:close()
      end)

    it("keeps a OneShot report that comes before its outcome is recorded, and applies it later", function()
      local ob = open()
      fakes.oneshot:reset()
      fakes.oneshot:state { report_delay_ms = 0 }
      local track = require "ksms.outbox.track"
      track.watch(ob, "oneshot", clients.oneshot)
      local msg = { to = "01011112222", from = "15666639", text = "early report" }
      local rec = assert(ob:enqueue(msg, { key = "e-1", client = "oneshot" }))
      assert.is_true(ob.store:update(rec.key, { "queued" }, "sending", {}))
      local res = assert(clients.oneshot:send(msg))
      -- The report arrives while the record is still sending (the store
      -- has no provider_id for it yet): unmatched, acknowledged, kept.
      clients.oneshot.session:poll(0.5)
      local d = ob._delivery
      assert.equal(1, d.reports)
      assert.equal("sending", ob:status("e-1").state)
      -- Once the outcome is recorded with its UserMsgId the report matches.
      assert.is_true(ob.store:update(rec.key, { "sending" }, "sent", { provider_id = res.id }))
      -- A report for a record in sending: kept, then applied by track.
      -- (The UserMsgId is chosen and recorded before the send here, so the
      -- report finds the record whenever it comes.)
      local msg2 = { to = "01033334444", from = "15666639", text = "second", user_msg_id = "e2-umid" }
      local rec2 = assert(ob:enqueue(msg2, { key = "e-2", client = "oneshot" }))
      assert.is_true(ob.store:update(rec2.key, { "queued" }, "sending", { provider_id = "e2-umid" }))
      local res2 = assert(clients.oneshot:send(msg2))
      assert.equal("e2-umid", res2.id)
      clients.oneshot.session:poll(0.5)
      assert.equal(2, d.stashed)
      assert.equal("sending", ob:status("e-2").state)
      assert.is_true(ob.store:update(rec2.key, { "sending" }, "sent", {}))
      local s = assert(ob:track { clients = { oneshot = clients.oneshot }, rounds = 1 })
      assert.equal(2, s.reports)
      assert.equal("delivered", ob:status("e-2").state)
      assert.equal("delivered", ob:status("e-1").state)
      -- Both were acknowledged when they came.
      local acked = 0
      for _, r in ipairs(fakes.oneshot:reports()) do if r.status == "acked" then acked = acked + 1 end end
      assert.equal(2, acked)
      ob:close()
    end)
  end)
end

describe("ob:track's memory", function()
  -- The peak of live memory during track (sampled, after a full collection,
  -- every few calls of the outbox's clock, which track reads every round)
  -- over a pass of n sent records in a real SQLite file, above what was
  -- live before it started.
  local function peak_for(n)
    local p = os.tmpname()
    os.remove(p)
    local c = ksms.client("ppurio", { client_id = "x", api_key = "k", base_url = "http://127.0.0.1:1" })
    local peak, calls, sampling = 0, 0, false
    local ob = assert(outbox.open { store = "sqlite:" .. p, clients = { ppurio = c }, now = function()
      calls = calls + 1
      if sampling and calls % 3 == 0 then
        collectgarbage("collect")
        local k = collectgarbage("count")
        if k > peak then peak = k end
      end
      return os.time()
    end })
    local list = {}
    for i = 1, n do list[i] = { { to = "01011112222", from = "0212345678", text = "m" .. i }, { key = "f" .. i } } end
    assert(ob:enqueue_many(list))
    list = nil
    for i = 1, n do
      assert(ob.store:update("f" .. i, { "queued" }, "sending", {}))
      assert(ob.store:update("f" .. i, { "sending" }, "sent", {})) -- no cmid: read, not asked
    end
    collectgarbage("collect")
    collectgarbage("collect")
    local base = collectgarbage("count")
    sampling = true
    local s = assert(ob:track { rounds = n / 100 + 1, interval = 0, per_round = 50 })
    sampling = false
    assert.is_true(s.stale >= n)
    assert.equal(0, s.lookups)
    ob:close()
    os.remove(p); os.remove(p .. "-wal"); os.remove(p .. "-shm")
    return peak - base
  end

  it("stays flat whatever the number of sent records (one page of 2 * per_round at a time)", function()
    peak_for(500) -- the first run loads the modules and fills the caches
    -- What track adds to live memory while it runs, from before it starts.
    -- (Measured: 7 and 47 KB under LuaJIT for 500 and 5000, 18 KB for
    -- 20,000: the interpreter's own tables, not a cost per record. A cost
    -- of 16 bytes a record would be 150 KB more over 10,000.)
    local small, large = peak_for(500), peak_for(10000)
    assert.is_true(large - small < 128, ("track grew memory by %.0f KB over 500 records, %.0f KB over 10000")
      :format(small, large))
  end)
end)

describe("client:add_report_handler (OneShot)", function()
  it("runs after the client's own on_report, and stops when removed", function()
    local fake = fake_control.start("oneshot", { state = { report_delay_ms = 10 } })
    local own, added = 0, 0
    local opts = fake:session_options { reconnect_delay = 0.2, on_report = function() own = own + 1 end }
    local c = ksms.client("oneshot", opts)
    local order = {}
    local first_own = opts.on_report
    local remove = c:add_report_handler(function(ev)
      added = added + 1
      order[#order + 1] = own -- the client's own handler ran first
      assert.is_string(ev.user_msg_id)
    end)
    -- The caller's options table is not changed (it may make other clients).
    assert.equal(first_own, opts.on_report)
    local function wait_for(n)
      local deadline = os.time() + 5
      while own < n and os.time() < deadline do c.session:poll(0.05) end
    end
    assert(c:send { to = "01011112222", from = "15666639", text = "one" })
    wait_for(1)
    assert.equal(1, own)
    assert.equal(1, added)
    assert.same({ 1 }, order)
    remove()
    remove() -- idempotent
    assert(c:send { to = "01011112222", from = "15666639", text = "two" })
    wait_for(2)
    assert.equal(2, own)
    assert.equal(1, added)
    assert.has_error(function() c:add_report_handler("no") end)
    c:close()
    fake:stop()
  end)
end)

describe("ob:track when the store fails", function()
  -- The memory store behind a store of one's own (the contract's table
  -- form) whose update fails once `failing` is set, as a full disk does.
  local function failing_store()
    local mem = assert(require("ksms.outbox.memory").open(nil, {}))
    local st = { failing = false }
    for _, name in ipairs { "insert", "get", "update", "iterate", "counts", "meta_get", "meta_set", "find_ref",
      "claim", "release", "owners", "recover", "close" } do
      st[name] = function(self, ...)
        if name == "update" and self.failing then
          return nil, require("ksms.outbox.store").error("full", "database or disk is full", true)
        end
        return mem[name](mem, ...)
      end
    end
    return st
  end

  it("returns nil, err with the summary, and leaves a OneShot report unacknowledged", function()
    local pp = fake_control.start("ppurio")
    local os1 = fake_control.start("oneshot", { state = { report_delay_ms = 200 } })
    local ppurio = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key",
      base_url = pp.base_url, timeout = 5 })
    local oneshot = ksms.client("oneshot", os1:session_options { reconnect_delay = 0.2 })
    local st = failing_store()
    local ob = assert(outbox.open { store = st, clients = { ppurio = ppurio, oneshot = oneshot } })
    send_record(ob, "ppurio", { to = "01011112222", from = "0212345678", text = "x" }, "f-1")
    require("ksms.outbox.track").watch(ob, "oneshot", oneshot)
    send_record(ob, "oneshot", { to = "01011112222", from = "15666639", text = "y" }, "f-2")
    st.failing = true
    local s, err = ob:track { clients = { ppurio = ppurio }, rounds = 1 }
    assert.is_nil(s)
    assert.equal("store", err.category)
    assert.equal("full", err.code)
    assert.equal(1, err.summary.lookups)
    assert.equal("sent", ob:status("f-1").state)
    -- The OneShot report comes while the store fails: not acknowledged.
    local deadline = os.time() + 3
    while os.time() < deadline do oneshot.session:poll(0.1) end
    local reports = os1:reports()
    assert.equal(1, #reports)
    assert.are_not.equal("acked", reports[1].status)
    assert.equal("sent", ob:status("f-2").state)
    oneshot:close(); ppurio:close()
    pp:stop(); os1:stop()
  end)
end)

describe("ob:track without bounds", function()
  it("returns after ob:stop(), called from a callback (here the outbox's clock)", function()
    -- ppurio: each round reads the clock (there are no records to ask about)
    local c = ksms.client("ppurio", { client_id = "x", api_key = "k", base_url = "http://127.0.0.1:1" })
    local ob
    local calls = 0
    ob = assert(outbox.open { store = "memory", clients = { ppurio = c }, now = function()
      calls = calls + 1
      if calls == 20 and ob then ob:stop() end
      return os.time()
    end })
    local s = assert(ob:track { interval = 0.01 })
    assert.is_true(s.rounds >= 1)
    assert.is_true(calls >= 20)
    -- A later track is not stopped by the earlier stop.
    s = assert(ob:track { interval = 0, rounds = 3 })
    assert.equal(3, s.rounds)
    ob:close()
  end)
end)
