-- ksms.outbox: the API, the states, duplicates, expiry, resolve, list and
-- counts, recovery of a dead worker's records, misuse, and (SQLite) files
-- that are not an outbox. Every case runs on each store of outbox_stores.
-- Clients are real ksms clients (Senders) pointed at the Senders fake; the
-- worker end to end is outbox_worker_spec.
local ksms = require "ksms"
local outbox = require "ksms.outbox"
local states = require "ksms.outbox.states"
local core = require "ksms.core"
local fake_control = require "fake_control"
local stores = require "outbox_stores"
local H = require "helper"

local KEY = "test-senders-key"
local FROM = "0212345678"

local function msg(text, to)
  return { to = to or "01012345678", from = FROM, text = text or "hello" }
end

-- A pid that was alive a moment ago and is not now (a finished shell).
local function dead_pid()
  local out = H.run("sh -c 'echo $$'")
  local pid = tonumber(out:match("%d+"))
  assert.is_false(core.pid_alive(pid))
  return pid
end

describe("ksms.outbox", function()
  local fake, client, other
  setup(function()
    fake = fake_control.start("senders")
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
    other = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
  end)
  teardown(function()
    client:close(); other:close()
    fake_control.stop_all()
  end)

  for _, kind in ipairs(stores.list) do
    describe("on the " .. kind.name .. " store", function()
      local spec, cleanup, path, ob
      before_each(function()
        spec, cleanup, path = kind.new()
        ob = assert(outbox.open { store = spec, clients = { senders = client } })
      end)
      after_each(function()
        if ob then ob:close() end
        cleanup()
      end)

      it("enqueues a checked message as a queued record and shows it by key", function()
        local rec = assert(ob:enqueue(msg("안녕하세요"), { key = "order-1" }))
        assert.equal("order-1", rec.key)
        assert.equal("queued", rec.state)
        assert.is_false(rec.duplicate)
        assert.equal("senders", rec.client)
        assert.equal("안녕하세요", rec.message.text)
        assert.equal(0, rec.attempts)
        assert.is_number(rec.created_at)
        assert.is_number(rec.seq)
        local st = ob:status("order-1")
        assert.equal("queued", st.state)
        assert.equal("안녕하세요", st.message.text)
        assert.equal(FROM, st.message.from)
        assert.is_nil(ob:status("nope"))
        -- a fresh table each time: changing it changes nothing stored
        st.message.text = "changed"
        assert.equal("안녕하세요", ob:status("order-1").message.text)
      end)

      it("generates a key when none is given, a different one each time", function()
        local a = assert(ob:enqueue(msg()))
        local b = assert(ob:enqueue(msg()))
        assert.is_string(a.key)
        assert.are_not.equal(a.key, b.key)
        assert.equal(2, ob:counts().queued)
      end)

      it("returns the stored record with duplicate = true for a key it has, storing nothing", function()
        assert(ob:enqueue(msg("first"), { key = "k" }))
        local again = assert(ob:enqueue(msg("second"), { key = "k" }))
        assert.is_true(again.duplicate)
        assert.equal("first", again.message.text)
        assert.equal(1, ob:counts().queued)
      end)

      it("refuses a message the client refuses, with the client's error, and stores nothing", function()
        local rec, err = ob:enqueue(msg("x", "12"), { key = "bad" })
        assert.is_nil(rec)
        assert.equal("recipient", err.category)
        assert.is_nil(ob:status("bad"))
        for _, n in pairs(ob:counts()) do assert.equal(0, n) end
        assert.equal(0, #fake:requests())
      end)

      it("enqueue_many stores messages and pairs in one call, errors in place, duplicates found", function()
        local out = assert(ob:enqueue_many({
          msg("a"),
          { msg("b"), { key = "kb" } },
          msg("c", "12"),
          { msg("b again"), { key = "kb" } },
        }, { expires_at = os.time() + 3600 }))
        assert.equal(4, #out)
        assert.equal("queued", out[1].state)
        assert.equal("kb", out[2].key)
        assert.equal("recipient", out[3].category)
        assert.is_true(out[4].duplicate)
        assert.equal("b", out[4].message.text)
        assert.equal(out[2].expires_at, out[1].expires_at)
        assert.equal(2, ob:counts().queued)
      end)

      it("takes expires_at from the message too, and refuses two that differ", function()
        local at = os.time() + 60
        local m = msg("e")
        m.expires_at = at
        assert.equal(at, assert(ob:enqueue(m, { key = "me" })).expires_at)
        assert.equal(at, assert(ob:enqueue(m, { key = "me2", expires_at = at })).expires_at)
        assert.has_error(function() ob:enqueue(m, { key = "me3", expires_at = at + 1 }) end)
      end)

      it("names the client when open got several, and refuses a missing name", function()
        ob:close()
        ob = assert(outbox.open { store = spec, clients = { a = client, b = other } })
        local rec = assert(ob:enqueue(msg(), { client = "b" }))
        assert.equal("b", rec.client)
        assert.has_error(function() ob:enqueue(msg()) end)
        assert.has_error(function() ob:enqueue(msg(), { client = "c" }) end)
      end)

      it("raises for misuse at the caller's line", function()
        local function raises(fn, pattern)
          local ok, e = pcall(fn)
          assert.is_false(ok)
          assert.matches("outbox_spec.lua:%d+:", tostring(e))
          if pattern then assert.matches(pattern, tostring(e)) end
        end
        raises(function() ob:enqueue("text") end, "message table")
        raises(function() ob:enqueue(msg(), { keys = "x" }) end, "unknown option 'keys'")
        raises(function() ob:enqueue(msg(), { key = "" }) end, "key")
        raises(function() ob:enqueue(msg(), { key = "a\0b" }) end, "NUL")
        raises(function() ob:enqueue(msg(), { key = ("k"):rep(300) }) end, "key")
        raises(function() ob:enqueue(msg(), { expires_at = "soon" }) end, "expires_at")
        raises(function() ob:enqueue({ to = "01012345678", from = FROM }) end, "text")
        raises(function() ob:list { state = "lost" } end, "unknown state")
        raises(function() ob:resolve("k", "forget") end, "action")
        raises(function() ob:status(5) end, "key")
        raises(function() ob:run { concurrency = 0 } end, "concurrency")
        raises(function() outbox.open { clients = {} } end, "store")
        raises(function() outbox.open { store = "postgres:x" } end, "unknown store")
        raises(function() outbox.open { store = "memory", clients = { x = {} } } end, "not a ksms client")
        raises(function() ob.store:update("k", "delivered", "queued") end, "no transition")
        raises(function() ob.store:update("k", "queued", "lost") end, "unknown state")
        raises(function() ob.store:update("k", "queued", "sending", { colour = "red" }) end, "cannot set")
      end)

      it("keeps every transition in one table, and the store follows it", function()
        for from, tos in pairs(states.transitions) do
          assert.is_true(states.is_state(from), from)
          for to in pairs(tos) do assert.is_true(states.allowed(from, to), from .. " -> " .. to) end
        end
        assert.is_false(states.allowed("sent", "queued"))
        assert.is_false(states.allowed("delivered", "sent"))
        assert(ob:enqueue(msg(), { key = "t" }))
        -- compare-and-set: only from the named states, only for the owner named
        assert.is_false(ob.store:update("t", "sending", "sent", { provider_id = "p1" }))
        local got = assert(ob.store:claim("senders", "1@h:ab", 10, os.time()))
        assert.equal(1, #got)
        assert.equal("queued", got[1].state)
        assert.equal("1@h:ab", got[1].owner)
        assert.is_false(ob.store:update("t", "queued", "sending", nil, { owner = "2@h:cd" }))
        assert.is_true(ob.store:update("t", "queued", "sending", nil, { owner = "1@h:ab" }))
        assert.is_true(ob.store:update("t", "sending", "sent", { provider_id = "p1", code = 0 }, { owner = "1@h:ab" }))
        local rec = ob:status("t")
        assert.equal("sent", rec.state)
        assert.equal("p1", rec.provider_id)
        assert.is_nil(rec.owner) -- a final state holds no owner
        assert.equal("t", ob.store:find_ref("senders", "p1").key)
        assert.is_nil(ob.store:find_ref("other", "p1"))
        assert.has_error(function() ob.store:update("t", "sent", "queued") end)
      end)

      it("claims the oldest queued records once, marking those past expires_at expired", function()
        local now = os.time()
        assert(ob:enqueue(msg("1"), { key = "e1", expires_at = now - 10 }))
        assert(ob:enqueue(msg("2"), { key = "e2" }))
        assert(ob:enqueue(msg("3"), { key = "e3", expires_at = now + 3600 }))
        assert(ob:enqueue(msg("4"), { key = "e4" }))
        local a, expired = ob.store:claim("senders", "1@h:aa", 2, now)
        assert.equal(1, expired)
        assert.equal(1, #a)
        assert.equal("e2", a[1].key)
        local b = ob.store:claim("senders", "2@h:bb", 10, now)
        assert.same({ "e3", "e4" }, { b[1].key, b[2].key })
        assert.equal(0, #ob.store:claim("senders", "3@h:cc", 10, now))
        local e = ob:status("e1")
        assert.equal("expired", e.state)
        assert.equal("expired", e.code)
        assert.equal("expired", e.error.category)
        assert.equal(2, ob.store:release("2@h:bb"))
        assert.equal(2, #ob.store:claim("senders", "3@h:cc", 10, now))
      end)

      it("resolves: resend, sent and drop, only from the states they take", function()
        for _, k in ipairs({ "m1", "m2", "m3", "f1" }) do assert(ob:enqueue(msg(k), { key = k })) end
        ob.store:claim("senders", "1@h:aa", 10, os.time())
        for _, k in ipairs({ "m1", "m2", "m3" }) do
          assert.is_true(ob.store:update(k, "queued", "sending", nil, { owner = "1@h:aa" }))
          assert.is_true(ob.store:update(k, "sending", "maybe_sent", { code = "timeout" }))
        end
        assert.is_true(ob.store:update("f1", "queued", "failed", { code = "185" }))
        local r = assert(ob:resolve("m1", "resend"))
        assert.equal("queued", r.state)
        assert.equal(1, r.attempts)
        assert.is_nil(r.owner)
        assert.equal("sent", assert(ob:resolve("m2", "sent")).state)
        local d = assert(ob:resolve("m3", "drop"))
        assert.equal("failed", d.state)
        assert.equal("dropped", d.code)
        assert.equal("queued", assert(ob:resolve("f1", "resend")).state)
        local none, err = ob:resolve("m2", "resend")
        assert.is_nil(none)
        assert.equal("wrong_state", err.code)
        local _, nf = ob:resolve("missing", "drop")
        assert.equal("not_found", nf.code)
      end)

      it("lists by seq a page at a time, filtered by state, resumable with since", function()
        local list = {}
        for i = 1, 600 do list[i] = { msg("n" .. i), { key = string.format("k%04d", i) } } end
        assert(ob:enqueue_many(list))
        for i = 1, 600, 3 do assert(ob.store:update(string.format("k%04d", i), "queued", "failed", { code = "x" })) end
        local seen, last = 0, 0
        for rec in ob:list() do
          seen = seen + 1
          assert.is_true(rec.seq > last)
          last = rec.seq
        end
        assert.equal(600, seen)
        local failed = {}
        for rec in ob:list { state = "failed" } do failed[#failed + 1] = rec.key end
        assert.equal(200, #failed)
        assert.equal("k0001", failed[1])
        assert.equal("k0598", failed[200])
        local first = {}
        for rec in ob:list { limit = 5 } do first[#first + 1] = rec end
        assert.equal(5, #first)
        local rest = 0
        for _ in ob:list { since = first[5].seq } do rest = rest + 1 end
        assert.equal(595, rest)
        local c = ob:counts()
        assert.equal(400, c.queued)
        assert.equal(200, c.failed)
        for _, s in ipairs(states.names) do assert.is_number(c[s], s) end
      end)

      it("on open, turns a dead worker's sending records into maybe_sent and frees its claims", function()
        local dead = string.format("%d@%s:%s", dead_pid(), core.hostname(), "0badc0de")
        local alive = string.format("%d@%s:%s", 1, core.hostname(), "00000001") -- pid 1 lives
        local remote = string.format("%d@%s:%s", dead_pid(), "another-host", "00000002")
        for i = 1, 6 do assert(ob:enqueue(msg("r" .. i), { key = "r" .. i })) end
        local now = os.time()
        local function hold(owner, n, sending)
          local got = ob.store:claim("senders", owner, n, now)
          for i = 1, sending do assert.is_true(ob.store:update(got[i].key, "queued", "sending", nil, { owner = owner })) end
        end
        hold(dead, 2, 1)   -- r1 sending, r2 claimed
        hold(alive, 2, 1)  -- r3 sending, r4 claimed
        hold(remote, 2, 1) -- r5 sending, r6 claimed
        local store = ob.store
        local ob2 = assert(outbox.open { store = kind.file and spec or store, clients = { senders = client } })
        local function state(k) return ob2:status(k).state, ob2:status(k).owner end
        assert.equal("maybe_sent", (state("r1")))
        assert.equal("worker_died", ob2:status("r1").code)
        assert.is_true(ob2:status("r1").error.maybe_sent)
        local s2, o2 = state("r2")
        assert.equal("queued", s2)
        assert.is_nil(o2)
        assert.equal("sending", (state("r3")))
        assert.equal(alive, select(2, state("r4")))
        assert.equal("sending", (state("r5"))) -- another host's: never recovered here
        assert.equal(remote, select(2, state("r6")))
        if kind.file then ob2:close() end
      end)

      it("stores no secret: the client is referred to by name only", function()
        assert(ob:enqueue(msg("secret-free"), { key = "s" }))
        for rec in ob:list() do
          for k, v in pairs(rec) do
            assert.is_falsy(tostring(v):find(KEY, 1, true), k)
          end
        end
        if path then
          ob:close(); ob = nil
          assert.is_nil(H.read_file(path):find(KEY, 1, true))
        end
      end)

      if kind.file then
        it("keeps its records across close and open", function()
          assert(ob:enqueue(msg("kept"), { key = "keep" }))
          ob:close()
          ob = assert(outbox.open { store = spec, clients = { senders = client } })
          local rec = ob:status("keep")
          assert.equal("queued", rec.state)
          assert.equal("kept", rec.message.text)
          assert.equal("1", ob.store:meta_get("schema"))
          assert.is_true(ob.store:meta_set("cli.run", "7"))
          assert.equal("7", ob.store:meta_get("cli.run"))
        end)

        it("reads back big numbers and times exactly (no 32-bit truncation)", function()
          local far = 2 ^ 40 + 0.5
          assert(ob:enqueue(msg(), { key = "big", expires_at = far }))
          assert.equal(far, ob:status("big").expires_at)
          assert.is_true(ob.store:update("big", "queued", "failed", { attempts = 3000000000 }))
          assert.equal(3000000000, ob:status("big").attempts)
        end)
      end
    end)
  end

  describe("an SQLite file that is not an outbox", function()
    local dir
    before_each(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) ~= false)
    end)
    after_each(function() os.execute("rm -rf " .. dir) end)

    local function refused(path, code, pattern)
      local ob, err = outbox.open { store = "sqlite:" .. path }
      assert.is_nil(ob)
      assert.equal("store", err.category)
      assert.equal(code, err.code)
      if pattern then assert.matches(pattern, err.message) end
      return err
    end

    it("refuses garbage bytes", function()
      H.write_file(dir .. "/g.db", ("not a database at all\n"):rep(100))
      refused(dir .. "/g.db", "not_an_outbox", "not an SQLite database")
    end)

    it("refuses another application's SQLite database and leaves it as it was", function()
      local DBI = require "DBI"
      local db = assert(DBI.Connect("SQLite3", dir .. "/f.db"))
      db:autocommit(true)
      assert(DBI.Do(db, "CREATE TABLE customers (name TEXT)"))
      db:close()
      local before = H.read_file(dir .. "/f.db")
      refused(dir .. "/f.db", "not_an_outbox", "something else")
      assert.equal(before, H.read_file(dir .. "/f.db"))
    end)

    it("refuses a truncated outbox", function()
      local ob = assert(outbox.open { store = "sqlite:" .. dir .. "/t.db", clients = { senders = client } })
      local list = {}
      for i = 1, 2000 do list[i] = msg(("long text "):rep(5) .. i) end
      assert(ob:enqueue_many(list))
      ob:close()
      local whole = H.read_file(dir .. "/t.db")
      assert.is_true(#whole > 8192)
      H.write_file(dir .. "/t.db", whole:sub(1, 4096 + 100))
      refused(dir .. "/t.db", "corrupt", "damaged")
    end)

    it("refuses an outbox of a newer schema", function()
      local ob = assert(outbox.open { store = "sqlite:" .. dir .. "/v.db" })
      assert(ob.store:meta_set("schema", "99"))
      ob:close()
      refused(dir .. "/v.db", "schema_version", "schema 99")
    end)

    it("says why a file cannot be opened", function()
      refused(dir .. "/no/such/dir/o.db", "open_failed")
    end)

    it("creates an outbox in an empty file", function()
      H.write_file(dir .. "/e.db", "")
      local ob = assert(outbox.open { store = "sqlite:" .. dir .. "/e.db", clients = { senders = client } })
      assert(ob:enqueue(msg()))
      ob:close()
    end)
  end)
end)
