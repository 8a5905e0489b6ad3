-- ksms.router (issue 16, failover): two real providers' fakes at once on
-- 127.0.0.1. The router moves a message on only when the first route's
-- outcome proves nothing was sent, and never after a maybe_sent.
local ksms = require "ksms"
local fake_control = require "fake_control"

local KEY = "test-senders-key"
local FROM = "0212345678"

local H = require "spec_helper"

-- The texts a Senders fake received, sorted.
local function texts(fake)
  local out = {}
  for k, n in pairs(H.senders_texts(fake)) do for _ = 1, n do out[#out + 1] = k end end
  table.sort(out)
  return out
end

describe("ksms.router, failover", function()
  local a, b, ca, cb
  setup(function()
    a, b = fake_control.start("senders"), fake_control.start("senders")
    ca = ksms.client("senders", { api_key = KEY, base_url = a.base_url, timeout = 2 })
    cb = ksms.client("senders", { api_key = KEY, base_url = b.base_url, timeout = 2 })
  end)
  teardown(function() ca:close(); cb:close(); fake_control.stop_all() end)
  before_each(function() a:reset(); b:reset() end)

  local function router() return ksms.router { routes = { { name = "a", client = ca }, { name = "b", client = cb } } } end

  it("sends through the first route when it takes the message; tried says so", function()
    local res = assert(router():send { to = "01011112222", from = FROM, text = "first" })
    assert.equal("a", res.route)
    assert.equal(1, #res.tried)
    assert.same({ "first" }, texts(a))
    assert.same({}, texts(b))
  end)

  it("moves on after a refusal the provider answered (185, balance): nothing was sent there", function()
    a:script { path = "/APIV2/sms_send", result = "185", times = 1 }
    local res = assert(router():send { to = "01011112222", from = FROM, text = "balance" })
    assert.equal("b", res.route)
    assert.equal("a", res.tried[1].route)
    assert.equal("balance", res.tried[1].outcome.category)
    assert.is_true(res.tried[2].outcome.ok)
    assert.same({ "balance" }, texts(b))
  end)

  it("moves on when the first route refuses connections (never written)", function()
    local dead = ksms.client("senders", { api_key = KEY, base_url = "http://127.0.0.1:" .. require("spec_helper").free_port(),
      timeout = 2 })
    local r = ksms.router { routes = { { name = "dead", client = dead }, { name = "b", client = cb } } }
    local res = assert(r:send { to = "01011112222", from = FROM, text = "refused" })
    assert.equal("b", res.route)
    assert.equal("network", res.tried[1].outcome.category)
    assert.is_false(res.tried[1].outcome.maybe_sent)
    dead:close()
  end)

  it("never moves on after a maybe_sent: returned at once, naming the route, and the second fake got nothing", function()
    for _, fault in ipairs { "close", "half" } do
      a:reset(); b:reset()
      a:script { path = "/APIV2/sms_send", fault = fault, times = 1 }
      local res, err = router():send { to = "01011112222", from = FROM, text = "maybe " .. fault }
      assert.is_nil(res)
      assert.is_true(err.maybe_sent, fault)
      assert.equal("a", err.route)
      assert.equal(1, #err.tried)
      assert.same({}, texts(b), fault)
    end
    -- (a timeout after the write: the send_many case below, on a 0.3 s client)
  end)

  it("a slow first route that answers within the timeout carries the message (send and send_many); b gets nothing", function()
    a:script { path = "/APIV2/sms_send", latency_ms = 300, times = 2 }
    local res = assert(router():send { to = "01011112222", from = FROM, text = "slow ok" })
    assert.equal("a", res.route)
    local outs = router():send_many { { to = "01011112222", from = FROM, text = "slow ok 2" } }
    assert.equal("a", outs[1].route)
    assert.is_true(outs[1].ok)
    assert.same({ "slow ok", "slow ok 2" }, texts(a))
    assert.same({}, texts(b))
  end)

  it("a route slower than the client's timeout gives maybe_sent from a, through send_many too; b gets nothing", function()
    local quick = ksms.client("senders", { api_key = KEY, base_url = a.base_url, timeout = 0.3 })
    local r = ksms.router { routes = { { name = "a", client = quick }, { name = "b", client = cb } } }
    a:script { path = "/APIV2/sms_send", latency_ms = 600, times = 1 }
    a:script { path = "/APIV2/sms_send", fault = "hang", times = 1 }
    local outs = r:send_many { { to = "01011112222", from = FROM, text = "late" },
      { to = "01011112222", from = FROM, text = "hung" } }
    for n = 1, 2 do
      assert.is_true(outs[n].maybe_sent, n)
      assert.equal("a", outs[n].route)
      assert.equal(1, #outs[n].tried)
    end
    assert.same({}, texts(b))
    a:script { path = "/APIV2/sms_send", latency_ms = 600, times = 1 } -- past the 0.3 s timeout: written, unanswered
    local res, err = r:send { to = "01011112222", from = FROM, text = "slow" }
    assert.is_nil(res)
    assert.is_true(err.maybe_sent)
    assert.equal("a", err.route)
    assert.same({}, texts(b))
    quick:close()
  end)

  it("does not move on after a refusal of the message itself (a bad number): the next route would refuse it too", function()
    local res, err = router():send { to = "12", from = FROM, text = "x" }
    assert.is_nil(res)
    assert.equal("recipient", err.category)
    assert.equal("a", err.route)
    assert.equal("check", err.tried[1].skipped)
    assert.same({}, texts(a))
    assert.same({}, texts(b))
  end)

  it("send_many gives each message its own route and tried", function()
    a:script { path = "/APIV2/sms_send", result = "185", times = 1 }
    local outs = router():send_many { { to = "01011112222", from = FROM, text = "m1" },
      { to = "01011112222", from = FROM, text = "m2" } }
    assert.equal("b", outs[1].route)
    assert.equal("a", outs[2].route)
  end)

  it("opens a route's breaker after N failing-over failures, skips it for the cool-down, then one trial decides", function()
    local t = 1000
    local r = ksms.router { routes = { { name = "a", client = ca }, { name = "b", client = cb } },
      breaker = { failures = 2, cooldown = 30 }, now = function() return t end }
    a:script { path = "/APIV2/sms_send", result = "185", times = 3 }
    local function send(text) return assert(r:send { to = "01011112222", from = FROM, text = text }) end
    assert.equal("b", send("f1").route)
    assert.equal("closed", r:breaker_state("a"))
    assert.equal("b", send("f2").route)
    assert.equal("open", r:breaker_state("a"))
    local res = send("skipped")
    assert.equal("b", res.route)
    assert.equal("open", res.tried[1].skipped)
    assert.equal(2, #a:requests("/APIV2/sms_send")) -- the open route got nothing
    t = t + 31
    assert.equal("half_open", r:breaker_state("a"))
    res = send("trial fails") -- the third scripted 185: open again
    assert.equal("b", res.route)
    assert.equal("open", r:breaker_state("a"))
    t = t + 31
    res = send("trial works")
    assert.equal("a", res.route)
    assert.equal("closed", r:breaker_state("a"))
  end)

  it("weighted: the first route by smooth weighted round robin, 3:1 over 8 messages gives 6 and 2, in nginx's order", function()
    for _, weights in ipairs { { 3, 1 }, { a = 3, b = 1 } } do
      a:reset(); b:reset()
      local r = ksms.router { routes = { { name = "a", client = ca }, { name = "b", client = cb } }, policy = "weighted",
        weights = weights }
      local seq = {}
      for n = 1, 8 do seq[n] = assert(r:send { to = "01011112222", from = FROM, text = "w" .. n }).route end
      assert.same({ "a", "a", "b", "a", "a", "a", "b", "a" }, seq)
      assert.equal(6, #texts(a))
      assert.equal(2, #texts(b))
    end
  end)

  it("weighted: a message picked for a route that refuses it (185) fails over to the others in list order", function()
    a:script { path = "/APIV2/sms_send", result = "185" }
    local r = ksms.router { routes = { { name = "a", client = ca }, { name = "b", client = cb } }, policy = "weighted",
      weights = { 1, 1 } }
    local first = assert(r:send { to = "01011112222", from = FROM, text = "p1" }) -- picked a
    local second = assert(r:send { to = "01011112222", from = FROM, text = "p2" }) -- picked b
    assert.equal("b", first.route)
    assert.equal(2, #first.tried)
    assert.equal("balance", first.tried[1].outcome.category)
    assert.equal("b", second.route)
    assert.equal(1, #second.tried)
    assert.same({ "p1", "p2" }, texts(b))
  end)

  it("weighted: misuse of weights raises", function()
    local routes = { { name = "a", client = ca }, { name = "b", client = cb } }
    for _, w in ipairs { { 1 }, { 1, 0 }, { 1, -2 }, { 1, "2" }, { 1, 0 / 0 }, { a = 1, c = 1 }, { 1, 1, 1 }, { 1, a = 2, b = 1 } } do
      assert.has_error(function() ksms.router { routes = routes, policy = "weighted", weights = w } end)
    end
    assert.has_error(function() ksms.router { routes = routes, policy = "weighted" } end)
    assert.has_error(function() ksms.router { routes = routes, weights = { 1, 1 } } end) -- failover takes none
    assert.has_error(function() ksms.router { routes = routes, policy = "random" } end)
  end)

  it("refuses misuse at the caller's line", function()
    assert.has_error(function() ksms.router {} end)
    assert.has_error(function() ksms.router { routes = { {} } } end)
    assert.has_error(function() ksms.router { routes = { ca, ca } } end) -- two named "senders"
    assert.has_error(function() ksms.router { routes = { ca }, policy = "weighted" } end)
    assert.has_error(function() ksms.router { routes = { ca }, fail_over = { "nonsense" } } end)
    assert.has_error(function() ksms.router { routes = { ca }, breaker = { failures = 0 } } end)
  end)
end)

describe("ksms.router, a route that cannot carry the text", function()
  local s, cs, cc
  setup(function()
    s = fake_control.start("senders")
    cs = ksms.client("senders", { api_key = KEY, base_url = s.base_url })
    -- Cafe24's checks refuse the text before any request: no server is
    -- needed (a request would fail to connect, not be skipped).
    cc = ksms.client("cafe24", { user_id = "u", secure_key = "k", base_url = "https://127.0.0.1:1/sms_sender.php",
      timeout = 1 })
  end)
  teardown(function() cs:close(); cc:close(); fake_control.stop_all() end)

  it("skips Cafe24 for a character outside strict EUC-KR, with the reason, and sends through Senders", function()
    local r = ksms.router { routes = { cc, cs } }
    local res = assert(r:send { to = "01011112222", from = FROM, text = "똠방각하" })
    assert.equal("senders", res.route)
    assert.equal("cafe24", res.tried[1].route)
    assert.equal("check", res.tried[1].skipped)
    assert.same({ "똠방각하" }, texts(s))
    local checks = r:check_routes { to = "01011112222", from = FROM, text = "똠방각하" }
    assert.is_false(checks[1].ok)
    assert.is_true(checks[2].ok)
    -- check: some route can carry it (what the outbox asks); the first that can
    local ok, info = r:check { to = "01011112222", from = FROM, text = "똠방각하" }
    assert.is_true(ok)
    assert.equal("senders", info.route)
    assert.equal(2, #info.routes)
    local only = ksms.router { routes = { cc } }
    local no, err = only:check { to = "01011112222", from = FROM, text = "똠방각하" }
    assert.is_nil(no)
    assert.equal("invalid_input", err.category)
    assert.equal(1, #s:requests()) -- the send above only
  end)
end)

describe("ksms.router send_many streaming, and the outbox over a router", function()
  local a, b, ca, cb, dir
  setup(function()
    a, b = fake_control.start("senders"), fake_control.start("senders")
    ca = ksms.client("senders", { api_key = KEY, base_url = a.base_url, timeout = 2 })
    cb = ksms.client("senders", { api_key = KEY, base_url = b.base_url, timeout = 2 })
    dir = H.tmpdir()
  end)
  teardown(function() ca:close(); cb:close(); fake_control.stop_all(); os.execute("rm -rf '" .. dir .. "'") end)
  before_each(function() a:reset(); b:reset() end)

  local function router() return ksms.router { routes = { { name = "a", client = ca }, { name = "b", client = cb } } } end
  local function msgs(prefix, n)
    local list = {}
    for i = 1, n do list[i] = { to = "01011112222", from = FROM, text = prefix .. i } end
    return list
  end

  it("calls on_sending once per message and on_outcome once with the final route, failing over a whole batch", function()
    a:script { path = "/APIV2/sms_send", result = "185", times = 4 }
    local sending, outcomes = {}, {}
    local outs = router():send_many(msgs("batch ", 4), { concurrency = 4,
      on_sending = function(i) sending[i] = (sending[i] or 0) + 1 end,
      on_outcome = function(i, out) outcomes[i] = (outcomes[i] or 0) + 1; assert.equal("b", out.route) end })
    for i = 1, 4 do
      assert.equal(1, sending[i], "on_sending of " .. i)
      assert.equal(1, outcomes[i], "on_outcome of " .. i)
      assert.is_true(outs[i].ok)
      assert.equal("b", outs[i].route)
      assert.equal("balance", outs[i].tried[1].outcome.category)
    end
    assert.same({ "batch 1", "batch 2", "batch 3", "batch 4" }, texts(b))
    assert.equal(4, #a:requests("/APIV2/sms_send"))
  end)

  it("a message the caller holds back ends cancelled and goes to no route; a maybe_sent is never moved on", function()
    a:script { path = "/APIV2/sms_send", fault = "close", times = 1 }
    local outs = router():send_many(msgs("one ", 1))
    assert.is_true(outs[1].maybe_sent)
    assert.equal("a", outs[1].route)
    assert.same({}, texts(b))
    a:reset()
    outs = router():send_many(msgs("held ", 3), { concurrency = 1, on_sending = function(i) return i ~= 2 end })
    assert.equal("cancelled", outs[2].category)
    assert.equal("a", outs[2].route)
    assert.same({ "held 1", "held 3" }, texts(a))
    assert.same({}, texts(b))
  end)

  it("the outbox sends through a router: a refusal at route a ends sent at b, once each; a maybe_sent stays maybe_sent", function()
    local outbox = require "ksms.outbox"
    local r = router()
    local ob = assert(outbox.open { store = "sqlite:" .. dir .. "/routed.db", clients = { main = r } })
    for i = 1, 3 do assert(ob:enqueue({ to = "01011112222", from = FROM, text = "ob " .. i }, { key = "k" .. i })) end
    a:script { path = "/APIV2/sms_send", result = "185", times = 3 }
    local summary = assert(ob:run { concurrency = 4, until_idle = true })
    assert.equal(3, summary.sent)
    for i = 1, 3 do assert.equal("sent", ob:status("k" .. i).state) end
    assert.same({ "ob 1", "ob 2", "ob 3" }, texts(b))
    a:reset(); b:reset()
    a:script { path = "/APIV2/sms_send", fault = "close", times = 1 }
    assert(ob:enqueue({ to = "01011112222", from = FROM, text = "ob maybe" }, { key = "k4" }))
    assert(ob:run { until_idle = true })
    assert.equal("maybe_sent", ob:status("k4").state)
    assert.same({}, texts(b))
    -- bad input is refused at enqueue by the router's check, never stored
    local rec, err = ob:enqueue({ to = "12", from = FROM, text = "bad" }, { key = "k5" })
    assert.is_nil(rec)
    assert.equal("recipient", err.category)
    assert.is_nil(ob:status("k5"))
    ob:close()
  end)
end)
