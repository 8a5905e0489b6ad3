-- ksms.oneshot.fleet's holder when a claim's reply is lost: the claim
-- script ran on Redis (the records got the holder's owner) but the holder
-- saw a timeout. A real redis-server paused with SIGSTOP past the store's
-- read timeout, and the fake OneShot server; the member is stepped in
-- this process (f:step() is one round of its loop).
local fleet = require "ksms.oneshot.fleet"
local socket = require "socket"
local fake_control = require "fake_control"
local redis_control = require "redis_control"

describe("ksms.oneshot.fleet, a claim whose reply was lost", function()
  local srv, fake
  setup(function()
    srv = redis_control.start()
    fake = fake_control.start("oneshot", { state = { speed = 50, report_delay_ms = 20 } })
  end)
  teardown(function()
    srv:kill("CONT")
    fake_control.stop_all()
    redis_control.stop_all()
  end)

  local function step_until(m, pred, seconds)
    local deadline = socket.gettime() + seconds
    while not pred() do
      if socket.gettime() > deadline then return false end
      if m:step() > 0 then socket.sleep(0.02) end
    end
    return true
  end

  it("sends the records the lost claim took, once each, while the holder keeps the lock", function()
    local ns = "fleet-claims-" .. os.time()
    -- lock_ttl well past the store's 5 s read timeout: the holder keeps
    -- its lock through the pause, so only the orphan release can free them.
    local a = fleet.new(fake:session_options { redis = srv.url, account = "acct", namespace = ns,
      outbox_namespace = ns .. ":ob", lock_ttl = 30, reconnect_delay = 0.3, quiet = 0.2, window = 20 })
    local ob = assert(fleet.outbox { redis = srv.url, account = "acct", outbox_namespace = ns .. ":ob" })
    assert.is_true(step_until(a, function() return a.stats.binds == 1 end, 10), "bound")
    socket.sleep(0.3)
    a:step() -- past quiet: claims (nothing yet)
    for i = 1, 10 do
      assert(ob:enqueue({ to = "01012345678", from = "15666639", text = "lost " .. i }, { key = "o" .. i, client = "acct" }))
    end
    srv:kill("STOP")
    a:step() -- the claim: written, then the store's read timeout
    srv:kill("CONT")
    socket.sleep(0.2)
    assert.is_true(a.holding)
    local owned = 0
    for i = 1, 10 do
      local r = assert(ob:status("o" .. i))
      assert.equal("queued", r.state)
      if r.owner == a.ob.owner then owned = owned + 1 end
    end
    assert.equal(10, owned) -- the paused server ran the claim: held by a live holder, in no session
    assert.equal(0, fake:stats().accepted)
    assert.is_true(step_until(a, function()
      local c = ob:counts()
      return c.sent + c.delivered == 10
    end, 15), "the orphaned claims were released and sent")
    assert.is_true(a.holding)
    local st = fake:stats()
    assert.equal(10, st.accepted)
    assert.equal(0, st.duplicates)
    assert.equal(1, st.binds)
    a:close(); ob:close()
  end)
end)
