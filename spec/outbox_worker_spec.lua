-- The outbox worker end to end: real clients (Senders over libcurl, the
-- OneShot session) against the fakes, on every store of outbox_stores.
-- Each message is sent once, its outcome recorded as it comes, expired
-- records never sent, and at most `concurrency` requests ever in flight.
local ksms = require "ksms"
local outbox = require "ksms.outbox"
local core = require "ksms.core"
local fake_control = require "fake_control"
local stores = require "outbox_stores"
local H = require "helper"

local KEY = "test-senders-key"
local FROM = "0212345678"

local function msg(text)
  return { to = "01012345678", from = FROM, text = text }
end

-- The texts the fake received, each with how many times.
local received = H.senders_texts

describe("ksms.outbox worker", function()
  local fake, client
  setup(function()
    fake = fake_control.start("senders")
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
  end)
  teardown(function()
    client:close()
    fake_control.stop_all()
  end)

  for _, kind in ipairs(stores.list) do
    describe("on the " .. kind.name .. " store", function()
      local spec, cleanup, ob
      before_each(function()
        fake:reset()
        spec, cleanup = kind.new()
        ob = assert(outbox.open { store = spec, clients = { senders = client } })
      end)
      after_each(function()
        if ob then ob:close() end
        cleanup()
      end)

      it("sends every queued record once, recording each outcome, concurrency at most", function()
        fake:script { latency_ms = 50 }
        local list = {}
        for i = 1, 40 do list[i] = { msg("m" .. i), { key = "k" .. i } } end
        assert(ob:enqueue_many(list))
        -- the client, watched: how many records are sending each time one is handed over
        local peak = 0
        local watched = {
          check = function(_, m) return client:check(m) end,
          send_many = function(_, msgs, o)
            local on_sending = o.on_sending
            o.on_sending = function(i)
              local go = on_sending(i)
              local n = ob.store:counts().sending
              if n > peak then peak = n end
              return go
            end
            return client:send_many(msgs, o)
          end,
        }
        local t0 = core.monotonic()
        local sum = assert(ob:run { clients = { senders = watched }, concurrency = 8, until_idle = true, batch = 16 })
        local took = core.monotonic() - t0
        assert.is_true(peak >= 2 and peak <= 8, "peak sending " .. peak)
        assert.same({ sent = 40, failed = 0, maybe_sent = 0, expired = 0 }, sum)
        local seen = received(fake)
        for i = 1, 40 do assert.equal(1, seen["m" .. i], "m" .. i) end
        assert.is_true(fake:stats().max_in_flight <= 8)
        -- 40 at 8 at once, 50 ms each: 5 waves (0.25 s); a loose bound for a busy machine
        assert.is_true(took < 2, "took " .. took)
        for i = 1, 40 do
          local rec = ob:status("k" .. i)
          assert.equal("sent", rec.state)
          assert.is_not_nil(rec.code) -- Senders gives no message id: provider_id stays nil
          assert.is_nil(rec.owner)
        end
        assert.equal(40, ob:counts().sent)
        -- nothing left: a second run sends nothing
        assert.same({ sent = 0, failed = 0, maybe_sent = 0, expired = 0 }, ob:run { until_idle = true })
        assert.equal(40, #fake:requests("/APIV2/sms_send"))
      end)

      it("records refused as failed and a lost answer as maybe_sent, never resending it", function()
        assert(ob:enqueue(msg("ok"), { key = "ok" }))
        assert(ob:run { until_idle = true })
        fake:reset()
        fake:script { path = "/APIV2/sms_send", result = "185", times = 1 }
        assert(ob:enqueue(msg("refused"), { key = "refused" }))
        assert(ob:run { until_idle = true, concurrency = 1 })
        fake:script { path = "/APIV2/sms_send", fault = "close", times = 1 }
        assert(ob:enqueue(msg("lost"), { key = "lost" }))
        local sum = assert(ob:run { until_idle = true, concurrency = 1 })
        assert.equal(1, sum.maybe_sent)
        local f = ob:status("refused")
        assert.equal("failed", f.state)
        assert.equal("185", tostring(f.code))
        assert.equal("balance", f.error.category)
        local m = ob:status("lost")
        assert.equal("maybe_sent", m.state)
        assert.is_true(m.error.maybe_sent)
        -- ksms never resends it by itself; resolve does
        assert.same({ sent = 0, failed = 0, maybe_sent = 0, expired = 0 }, ob:run { until_idle = true })
        assert.equal(1, received(fake).lost)
        assert(ob:resolve("lost", "resend"))
        assert.equal(1, ob:run { until_idle = true }.sent)
        assert.equal(2, received(fake).lost)
        assert.equal(1, ob:status("lost").attempts)
      end)

      it("never sends a record past its expires_at", function()
        local now = os.time()
        assert(ob:enqueue(msg("late"), { key = "late", expires_at = now - 1 }))
        assert(ob:enqueue(msg("fine"), { key = "fine", expires_at = now + 3600 }))
        local sum = assert(ob:run { until_idle = true })
        assert.equal(1, sum.expired)
        assert.equal(1, sum.sent)
        assert.equal("expired", ob:status("late").state)
        assert.is_nil(received(fake).late)
        -- expiring while others are in front of it: one at a time, 600 ms each
        fake:script { latency_ms = 600 }
        local exp = os.time() + 1
        for i = 1, 4 do assert(ob:enqueue(msg("q" .. i), { key = "q" .. i, expires_at = exp })) end
        sum = assert(ob:run { until_idle = true, concurrency = 1 })
        assert.is_true(sum.sent >= 1)
        assert.is_true(sum.expired >= 1)
        assert.equal(4, sum.sent + sum.expired)
        local seen = received(fake)
        for i = 1, 4 do
          local rec = ob:status("q" .. i)
          assert.equal(rec.state == "sent" and 1 or nil, seen["q" .. i], "q" .. i .. " " .. rec.state)
        end
      end)

      it("stops at its deadline and with ob:stop, leaving the rest queued and unowned", function()
        for i = 1, 5 do assert(ob:enqueue(msg("d" .. i), { key = "d" .. i })) end
        local sum = assert(ob:run { deadline = os.time() - 1 })
        assert.equal(0, sum.sent)
        assert.equal(0, #fake:requests())
        fake:script { latency_ms = 30 }
        local stopper = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
        local n = 0
        local wrapped = setmetatable({}, { __index = function(_, k)
          local v = stopper[k]
          if type(v) == "function" then return function(_, ...) return v(stopper, ...) end end
          return v
        end })
        -- a client whose outcomes make the worker stop after the second
        wrapped.send_many = function(_, msgs, o)
          local on_outcome = o.on_outcome
          o.on_outcome = function(i, out) on_outcome(i, out); n = n + 1; if n == 2 then ob:stop() end end
          return stopper:send_many(msgs, o)
        end
        sum = assert(ob:run { clients = { senders = wrapped }, concurrency = 1 })
        stopper:close()
        assert.equal(2, sum.sent)
        local c = ob:counts()
        assert.equal(2, c.sent)
        assert.equal(3, c.queued)
        for rec in ob:list { state = "queued" } do assert.is_nil(rec.owner) end
      end)

      it("sends each client's records through that client", function()
        local second = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
        ob:close()
        ob = assert(outbox.open { store = spec, clients = { a = client, b = second } })
        for i = 1, 6 do assert(ob:enqueue(msg("c" .. i), { key = "c" .. i, client = (i % 2 == 0) and "a" or "b" })) end
        local sum = assert(ob:run { until_idle = true })
        second:close()
        assert.equal(6, sum.sent)
        local seen = received(fake)
        for i = 1, 6 do
          assert.equal(1, seen["c" .. i])
          assert.equal((i % 2 == 0) and "a" or "b", ob:status("c" .. i).client)
        end
        for name in pairs { a = 1, b = 1 } do
          local n = 0
          for _ in ob:list { client = name, state = "sent" } do n = n + 1 end
          assert.equal(3, n)
        end
      end)

      it("returns nil, err when its store fails mid-run, handing nothing more over", function()
        for i = 1, 6 do assert(ob:enqueue(msg("f" .. i), { key = "f" .. i })) end
        local handed = 0
        local failing = {
          check = function(_, m) return client:check(m) end,
          send_many = function(_, msgs, o)
            local on_sending = o.on_sending
            o.on_sending = function(i)
              local go = on_sending(i)
              if go ~= false then handed = handed + 1 end
              if handed == 2 then ob.store:close() end -- the store goes away under the worker
              return go
            end
            return client:send_many(msgs, o)
          end,
        }
        local sum, err = ob:run { clients = { senders = failing }, concurrency = 1, until_idle = true }
        assert.is_nil(sum)
        assert.equal("store", err.category)
        assert.equal(2, handed)
        assert.is_true(#fake:requests("/APIV2/sms_send") <= 2)
        ob = nil -- closed
      end)

      it("lets two workers on one store share the queue without sending a record twice", function()
        fake:script { latency_ms = 20 }
        for i = 1, 30 do assert(ob:enqueue(msg("w" .. i), { key = "w" .. i })) end
        local ob2 = assert(outbox.open { store = kind.file and spec or ob.store, clients = { senders = client } })
        -- the second worker holds a claim while the first runs
        local held = assert(ob2.store:claim("senders", ob2.owner, 10, os.time()))
        assert.equal(10, #held)
        local s1 = assert(ob:run { until_idle = true, concurrency = 4 })
        assert.equal(20, s1.sent)
        ob2.store:release(ob2.owner)
        local s2 = assert(ob2:run { until_idle = true, concurrency = 4 })
        assert.equal(10, s2.sent)
        local seen = received(fake)
        for i = 1, 30 do assert.equal(1, seen["w" .. i], "w" .. i) end
        if kind.file then ob2:close() end
      end)
    end)
  end

  if stores.list[2] and stores.list[2].file then
    it("after kill -9 of a worker process, only the records in flight are maybe_sent", function()
      fake:reset()
      fake:script { latency_ms = 2000 }
      local spec, cleanup = stores.list[2].new()
      local ob = assert(outbox.open { store = spec, clients = { senders = client } })
      for i = 1, 40 do assert(ob:enqueue(msg("x" .. i), { key = "x" .. i })) end
      ob:close()
      local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
      local script = os.tmpname()
      H.write_file(script, ([[
        local ksms = require "ksms"
        local c = ksms.client("senders", { api_key = %q, base_url = %q })
        local ob = assert(require("ksms.outbox").open { store = %q, clients = { senders = c } })
        io.stdout:write("READY\n"); io.stdout:flush()
        ob:run { concurrency = 8, until_idle = true }
      ]]):format(KEY, fake.base_url, spec))
      local pidfile = script .. ".pid"
      os.execute(("%s %s >/dev/null 2>&1 & echo $! > %s"):format(lua, script, pidfile))
      local pid = tonumber(H.read_file(pidfile):match("%d+"))
      -- wait until the first wave is at the provider, then kill it mid-flight
      local deadline = core.monotonic() + 10
      while #fake:requests("/APIV2/sms_send") < 8 and core.monotonic() < deadline do core.sleep(0.05) end
      os.execute("kill -9 " .. pid)
      core.sleep(0.3)
      assert.is_false(core.pid_alive(pid))
      fake:script { latency_ms = 0 }
      ob = assert(outbox.open { store = spec, clients = { senders = client } })
      local c = ob:counts()
      assert.is_true(c.maybe_sent <= 8, "maybe_sent " .. c.maybe_sent)
      assert.equal(0, c.sending)
      assert.equal(40, c.queued + c.maybe_sent + c.sent)
      local sum = assert(ob:run { until_idle = true })
      assert.equal(c.queued, sum.sent)
      local seen = received(fake)
      for i = 1, 40 do
        local rec = ob:status("x" .. i)
        assert.is_true(seen["x" .. i] == nil or seen["x" .. i] == 1, "x" .. i .. " sent twice")
        if rec.state == "sent" then assert.equal(1, seen["x" .. i]) end
      end
      ob:close()
      cleanup()
      os.remove(script); os.remove(pidfile)
    end)
  end

  describe("over the OneShot session", function()
    it("sends queued records and records their outcomes", function()
      local os1 = fake_control.start("oneshot")
      local c = ksms.client("oneshot", os1:session_options { reconnect_delay = 0.2 })
      local ob = assert(outbox.open { store = "memory", clients = { oneshot = c } })
      for i = 1, 5 do assert(ob:enqueue(msg("o" .. i), { key = "o" .. i })) end
      local sum = assert(ob:run { until_idle = true })
      assert.equal(5, sum.sent)
      -- delivered when its pushed report came during the run (the outbox
      -- records OneShot reports: ksms.outbox.track)
      for i = 1, 5 do
        local st = ob:status("o" .. i).state
        assert.is_true(st == "sent" or st == "delivered", st)
      end
      c:close()
      os1:stop()
    end)
  end)
end)
