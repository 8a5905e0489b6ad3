-- ksms.oneshot.fleet in one process: the fenced lock, and fleet members
-- stepped in turn (f:step() is one round of the loop run() runs) against
-- the fake OneShot server and a real redis-server on 127.0.0.1. The
-- three-process faults (kill -9, SIGSTOP, a Redis restart) are in
-- fleet_faults_spec.
local fleet = require "ksms.oneshot.fleet"
local lock_mod = require "ksms.oneshot.fleet.lock"
local kredis = require "ksms.redis"
local socket = require "socket"
local fake_control = require "fake_control"
local redis_control = require "redis_control"

local n = 0
local function fresh_ns()
  n = n + 1
  return "fleet-spec-" .. n .. "-" .. os.time()
end

describe("ksms.oneshot.fleet.lock", function()
  local srv, conn
  setup(function()
    srv = redis_control.start()
    conn = assert(kredis.connect { url = srv.url })
  end)
  teardown(function()
    conn:close()
    redis_control.stop_all()
  end)

  it("one holder at a time, a larger token at each hold, renew only while ours", function()
    local ns = fresh_ns()
    local function new(owner, ttl)
      return lock_mod.new(conn, { key = ns .. ":lock", fence_key = ns .. ":fence", owner = owner, ttl = ttl or 1 })
    end
    local a, b = new("a"), new("b")
    assert.is_true(a:acquire())
    assert.is_true(a:fresh())
    local got, holder = b:acquire()
    assert.is_false(got)
    assert.equal(a.value, holder)
    assert.is_true(a:renew())
    assert.is_false(b:renew()) -- never held
    socket.sleep(1.1) -- a is not renewed: the key expires on the server
    assert.is_false(a:fresh()) -- and a knows without asking
    assert.is_true(b:acquire())
    assert.is_true(b.token > a.token)
    assert.is_false(a:renew()) -- lost: b holds it now
    assert.is_false(a:fresh())
    assert.is_false(a:release())
    assert.equal(b.value, conn:call("GET", ns .. ":lock"))
    assert.equal("b:" .. b.token, b.value)
    assert.is_true(b:release())
    assert.is_true(a:acquire())
  end)

  it("fresh() goes stale at two thirds of the TTL without a renewal", function()
    local ns = fresh_ns()
    local l = lock_mod.new(conn, { key = ns .. ":lock", fence_key = ns .. ":fence", owner = "x", ttl = 1.5 })
    assert.is_true(l:acquire())
    socket.sleep(0.8)
    assert.is_true(l:fresh())
    socket.sleep(0.3) -- 1.1 s > 2/3 of 1.5 s
    assert.is_false(l:fresh())
    assert.is_true(l:renew()) -- the key itself still lives
    assert.is_true(l:fresh())
  end)

  it("refuses misuse at the caller's line", function()
    assert.has_error(function() lock_mod.new(conn, { key = "k", fence_key = "f", owner = "o" }) end)
    assert.has_error(function() lock_mod.new({}, { key = "k", fence_key = "f", owner = "o", ttl = 1 }) end)
  end)
end)

describe("ksms.oneshot.fleet, members stepped in one process", function()
  local srv, fake
  setup(function()
    srv = redis_control.start()
    fake = fake_control.start("oneshot", { state = { speed = 50, report_delay_ms = 20 } })
  end)
  teardown(function()
    fake_control.stop_all()
    redis_control.stop_all()
  end)
  before_each(function() fake:reset(); fake:state { speed = 50, report_delay_ms = 20 } end)

  local function member(ns, extra)
    local o = fake:session_options { redis = srv.url, account = "acct", namespace = ns,
      outbox_namespace = ns .. ":ob", lock_ttl = 2, reconnect_delay = 0.3, quiet = 0.3, window = 20,
      keepalive_interval = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return fleet.new(o)
  end
  local function producer(ns)
    return assert(fleet.outbox { redis = srv.url, account = "acct", outbox_namespace = ns .. ":ob" })
  end
  local function step_until(members, pred, seconds)
    local deadline = socket.gettime() + (seconds or 10)
    while not pred() do
      if socket.gettime() > deadline then return false end
      local idle = true
      for _, m in ipairs(members) do
        if not m.closed and m:step() == 0 then idle = false end
      end
      if idle then socket.sleep(0.02) end
    end
    return true
  end

  it("one member holds the connection and sends every record once; reports reach the stream and the records", function()
    local ns = fresh_ns()
    local a, b = member(ns), member(ns)
    local ob = producer(ns)
    for i = 1, 30 do
      assert(ob:enqueue({ to = "01012345678", from = "15666639", text = "fleet " .. i }, { key = "m" .. i, client = "acct" }))
    end
    assert.is_true(step_until({ a, b }, function()
      local c = ob:counts()
      return c.delivered == 30
    end, 20), "all delivered")
    assert.is_true(a.holding ~= b.holding) -- exactly one holds
    local st = fake:stats()
    assert.equal(1, st.binds)
    assert.equal(30, st.accepted)
    assert.equal(0, st.duplicates)
    assert.is_true(st.max_per_second <= 50)
    local consumer = assert(fleet.reports { redis = srv.url, account = "acct", namespace = ns, group = "g", consumer = "c1" })
    local seen = {}
    for _ = 1, 5 do
      local list = assert(consumer:read { count = 100, block = 0.2 })
      for _, e in ipairs(list) do
        assert.is_nil(seen[e.report.user_msg_id])
        seen[e.report.user_msg_id] = true
        assert(consumer:ack(e.id))
      end
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.equal(30, count)
    consumer:close()
    a:close(); b:close(); ob:close()
  end)

  it("hands over when the holder stops: unwritten records are sent by the next holder, none twice", function()
    local ns = fresh_ns()
    fake:state { speed = 10 }
    local a, b = member(ns), member(ns)
    local ob = producer(ns)
    for i = 1, 40 do
      assert(ob:enqueue({ to = "01012345678", from = "15666639", text = "move " .. i }, { key = "v" .. i, client = "acct" }))
    end
    assert.is_true(step_until({ a, b }, function() return (ob:counts().sent + ob:counts().delivered) >= 10 end, 20))
    local holder, standby = a, b
    if b.holding then holder, standby = b, a end
    holder:close() -- leaves cleanly: unbinds, releases the lock
    assert.is_true(step_until({ standby }, function()
      local c = ob:counts()
      return c.sent + c.delivered == 40
    end, 30), "the standby sent the rest")
    assert.is_true(standby.holding)
    local st = fake:stats()
    assert.equal(2, st.binds)
    assert.equal(0, st.duplicate_binds)
    assert.equal(40, st.accepted)
    assert.equal(0, ob:counts().maybe_sent)
    assert.is_true(st.max_per_second <= 10, "Speed held across the move: " .. st.max_per_second)
    standby:close(); ob:close()
  end)

  it("a holder whose lock was taken (paused past the TTL) writes nothing more: the fenced mark refuses", function()
    local ns = fresh_ns()
    local a = member(ns)
    local ob = producer(ns)
    for i = 1, 5 do
      assert(ob:enqueue({ to = "01012345678", from = "15666639", text = "fence " .. i }, { key = "f" .. i, client = "acct" }))
    end
    assert.is_true(step_until({ a }, function() return ob:counts().sent + ob:counts().delivered == 5 end, 15))
    local before = fake:stats().messages
    -- Another process takes the lock as if a's had expired while it was paused.
    assert(srv:command("SET", ns .. ":acct:lock", "someone-else:999"))
    for i = 6, 10 do
      assert(ob:enqueue({ to = "01012345678", from = "15666639", text = "fence " .. i }, { key = "f" .. i, client = "acct" }))
    end
    step_until({ a }, function() return not a.holding end, 5)
    assert.is_false(a.holding)
    assert.equal(1, a.stats.lost)
    assert.equal(before, fake:stats().messages) -- not one more MsgSendReq
    assert.equal(5, ob:counts().queued)
    a:close(); ob:close()
  end)

  it("producers get the OneShot checks at enqueue, before anything is stored", function()
    local ns = fresh_ns()
    local ob = producer(ns)
    local rec, err = ob:enqueue({ to = "12", from = "15666639", text = "x" }, { client = "acct" })
    assert.is_nil(rec)
    assert.equal("recipient", err.category) -- as the OneShot client says
    rec, err = ob:enqueue({ to = { "01012345678", "01012345679" }, from = "15666639", text = "x" }, { client = "acct" })
    assert.is_nil(rec)
    assert.equal("recipients", err.code)
    assert.equal(0, ob:counts().queued)
    ob:close()
  end)

  it("an ad is composed at enqueue and at send as the OneShot client composes it; at night it is refused", function()
    local ns = fresh_ns()
    local KST_NOON = 1798772400 -- 2027-01-01 12:00 KST
    local clock = KST_NOON
    local opts = { redis = srv.url, account = "acct", outbox_namespace = ns .. ":ob",
      ad = { name = "ksms상사", opt_out = "080-123-4567" }, now = function() return clock end }
    local ob = assert(fleet.outbox(opts))
    local a = member(ns, { ad = opts.ad, now = opts.now })
    assert(ob:enqueue({ to = "01012345678", from = "15666639", kind = "lms", text = "봄 세일", ad = true },
      { key = "ad-1", client = "acct" }))
    assert.is_true(step_until({ a }, function() return ob:counts().delivered == 1 end, 15))
    local sent = fake:requests("MsgSendReq")
    local text = sent[#sent].body.Message
    assert.truthy(text:find("^%(광고%)ksms상사"), text)
    assert.truthy(text:find("무료거부 080%-123%-4567$"), text)
    clock = KST_NOON + 10 * 3600 -- 22:00 KST
    local rec, err = ob:enqueue({ to = "01012345678", from = "15666639", text = "밤 세일", ad = true },
      { key = "ad-2", client = "acct" })
    assert.is_nil(rec)
    assert.equal("ad_night", err.code)
    assert.is_nil(ob:status("ad-2"))
    a:close(); ob:close()
  end)

  it("refuses misuse: no redis, no account, options of its own", function()
    assert.has_error(function() fleet.new(fake:session_options { account = "a" }) end)
    assert.has_error(function() fleet.new(fake:session_options { redis = srv.url }) end)
    assert.has_error(function() fleet.new(fake:session_options { redis = srv.url, account = "a", on_sending = print }) end)
    assert.has_error(function() fleet.new(fake:session_options { redis = srv.url, account = "a", nonsense = 1 }) end)
    assert.has_error(function() fleet.new(fake:session_options { redis = "http://x", account = "a" }) end)
  end)
end)
