-- The Redis store's own cases, beside the contract every store keeps
-- (outbox_spec, outbox_worker_spec run on it too): leases that recover a
-- worker of another machine, Redis stopped and restarted under an outbox
-- (nil, err while it is down, nothing accepted lost with AOF), a server
-- that is not there at open. Real redis-server processes on 127.0.0.1.
local ksms = require "ksms"
local outbox = require "ksms.outbox"
local worker = require "ksms.outbox.worker"
local socket = require "socket"
local fake_control = require "fake_control"
local stores = require "outbox_stores"
local redis_control = require "redis_control"

local KEY = "test-senders-key"

local function msg(text)
  return { to = "01012345678", from = "0212345678", text = text or "hello" }
end

local function helper_wait(pred)
  local deadline = socket.gettime() + 5
  while not pred() do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.02)
  end
  return true
end

-- kill -9, and down once its port refuses (the process may stay a zombie a
-- while: its port is what the store sees).
local function down(srv)
  srv:kill("KILL")
  assert(helper_wait(function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", srv.port)
    c:close()
    return not ok
  end))
end

local describe_redis = stores.has_redis and describe or pending

describe_redis("ksms.outbox on Redis", function()
  local fake, client
  setup(function()
    fake = fake_control.start("senders")
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
  end)
  teardown(function()
    client:close()
    fake_control.stop_all()
  end)

  local n = 0
  local function url()
    n = n + 1
    return stores.redis().url .. "?namespace=redis-spec-" .. n
  end

  it("opens with the namespace option, and keeps namespaces apart", function()
    local base = stores.redis().url
    local a = assert(outbox.open { store = base, namespace = "ns-a", clients = { senders = client } })
    local b = assert(outbox.open { store = base, namespace = "ns-b", clients = { senders = client } })
    assert(a:enqueue(msg(), { key = "same" }))
    assert.is_nil(b:status("same"))
    assert.is_false(assert(b:enqueue(msg(), { key = "same" })).duplicate)
    assert.equal(1, a:counts().queued)
    a:close(); b:close()
    assert.has_error(function() outbox.open { store = base .. "?db=2" } end)
    assert.has_error(function() outbox.open { store = base .. "?namespace=x", namespace = "y" } end)
    assert.has_error(function() outbox.open { store = base, socket = "udp" } end)
    assert.has_error(function() outbox.open { store = "redis://" } end)
  end)

  it("recovers the records of a worker on another machine once its lease lapses", function()
    local u = url()
    local ob = assert(outbox.open { store = u, clients = { senders = client } })
    for i = 1, 4 do assert(ob:enqueue(msg("l" .. i), { key = "l" .. i })) end
    local gone, live = "4242@another-host:0000aaaa", "4243@another-host:0000bbbb"
    assert.is_true(ob.store:renew(gone, 0.2))
    assert.is_true(ob.store:renew(live, 30))
    local now = os.time()
    local a = ob.store:claim("senders", gone, 2, now)
    assert.is_true(ob.store:update(a[1].key, "queued", "sending", nil, { owner = gone }))
    local b = ob.store:claim("senders", live, 2, now)
    assert.is_true(ob.store:update(b[1].key, "queued", "sending", nil, { owner = live }))
    assert.is_false(worker.is_dead(gone, nil, ob.store)) -- its lease still lives
    socket.sleep(0.35)
    assert.is_true(worker.is_dead(gone, nil, ob.store))
    assert.is_false(worker.is_dead(live, nil, ob.store))
    local r = assert(worker.recover(ob))
    assert.same({ maybe_sent = 1, released = 1 }, r)
    assert.equal("maybe_sent", ob:status("l1").state)
    assert.equal("worker_died", ob:status("l1").code)
    assert.equal("queued", ob:status("l2").state)
    assert.is_nil(ob:status("l2").owner)
    assert.equal("sending", ob:status("l3").state) -- the live one's: untouched
    assert.equal(live, ob:status("l4").owner)
    -- the gone worker, resumed, can no longer send what it held
    assert.is_false(ob.store:update("l2", "queued", "sending", nil, { owner = gone }))
    ob:close()
  end)

  it("a fenced update happens only while the fence key holds its value, in the same step", function()
    local u = url()
    local ob = assert(outbox.open { store = u, clients = { senders = client } })
    local conn = assert(require("ksms.redis").connect { url = stores.redis().url })
    for i = 1, 2 do assert(ob:enqueue(msg("f" .. i), { key = "f" .. i })) end
    local me = "4244@fence-host:0000cccc"
    assert(ob.store:claim("senders", me, 2, os.time()))
    local fence = { key = u:match("namespace=(.*)$") .. ":lock", value = "holder-1:7" }
    assert(conn:call("SET", fence.key, "holder-2:8")) -- another holder took the lock
    local ok, why = ob.store:update("f1", "queued", "sending", nil, { owner = me, fence = fence })
    assert.is_false(ok)
    assert.equal("fenced", why)
    assert.equal("queued", ob:status("f1").state)
    assert(conn:call("SET", fence.key, "holder-1:7"))
    assert.is_true(ob.store:update("f1", "queued", "sending", nil, { owner = me, fence = fence }))
    assert.equal("sending", ob:status("f1").state)
    assert(conn:call("DEL", fence.key)) -- expired: no holder at all
    assert.is_false(ob.store:update("f2", "queued", "sending", nil, { owner = me, fence = fence }))
    assert.has_error(function() ob.store:update("f2", "queued", "sending", nil, { fence = "x" }) end)
    local mem = assert(outbox.open { store = "memory", clients = { senders = client } })
    assert.has_error(function() mem.store:update("k", "queued", "sending", nil, { fence = fence }) end,
      "ksms.outbox: a fenced update needs the Redis store")
    mem:close()
    conn:close()
    ob:close()
  end)

  it("a worker renews its lease while it runs, and sends every record once", function()
    local ob = assert(outbox.open { store = url(), clients = { senders = client } })
    for i = 1, 20 do assert(ob:enqueue(msg("w" .. i), { key = "w" .. i })) end
    local sum = assert(ob:run { until_idle = true, concurrency = 4 })
    assert.equal(20, sum.sent)
    assert.is_false(worker.is_dead(ob.owner, nil, ob.store))
    assert.equal(20, ob:counts().sent)
    ob:close()
  end)

  it("says so at open when no server listens, quickly", function()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local t0 = socket.gettime()
    local ob, err = outbox.open { store = "redis://127.0.0.1:" .. port .. "/0", clients = { senders = client } }
    assert.is_nil(ob)
    assert.equal("server", err.category)
    assert.equal("unavailable", err.code)
    assert.is_true(err.retryable)
    assert.truthy(err.message:find("unreachable", 1, true))
    assert.is_true(socket.gettime() - t0 < 3)
  end)

  it("returns nil, err while Redis is down, never raises, and loses nothing accepted (AOF)", function()
    local srv = redis_control.start { aof = true }
    local ob = assert(outbox.open { store = srv.url, namespace = "down", clients = { senders = client } })
    assert(ob:enqueue(msg("before"), { key = "before" }))
    down(srv)
    local rec, err = ob:enqueue(msg("during"), { key = "during" })
    assert.is_nil(rec)
    assert.equal("server", err.category)
    assert.equal("unavailable", err.code)
    assert.is_true(err.retryable)
    local got, cerr = ob.store:claim("senders", ob.owner, 10, os.time())
    assert.is_nil(got); assert.equal("unavailable", cerr.code)
    assert.is_nil(select(1, ob:counts()))
    assert.is_nil(select(1, ob.store:update("before", "queued", "failed", { code = "x" })))
    local run, rerr = ob:run { until_idle = true }
    assert.is_nil(run); assert.equal("unavailable", rerr.code)
    local it = ob:list()
    local first, lerr = it()
    assert.is_nil(first); assert.equal("unavailable", lerr.code)
    -- the same server again, from its append-only file: the store reconnects
    local again = redis_control.start { aof = true, port = srv.port, dir = srv.dir }
    assert.equal("queued", ob:status("before").state)
    assert.is_nil(ob:status("during"))
    assert(ob:enqueue(msg("after"), { key = "after" }))
    assert.equal(2, assert(ob:run { until_idle = true }).sent)
    ob:close()
    down(again)
    again.stopped = true -- killed: nothing left to stop but its directory
    os.execute("rm -rf " .. srv.dir)
  end)

  it("reads what another writer damaged without raising: a wrong type, garbage fields", function()
    local srv = stores.redis()
    local ns = "damaged"
    local ob = assert(outbox.open { store = srv.url, namespace = ns, clients = { senders = client } })
    assert(srv:command("SET", ns .. ":r:str", "x"))
    local rec, err = ob:status("str")
    assert.is_nil(rec)
    assert.equal("server", err.category)
    local ok, uerr = ob.store:update("str", "queued", "failed", { code = "x" })
    assert.is_nil(ok)
    assert.equal("server", uerr.category)
    assert(srv:command("HSET", ns .. ":r:h", "key", "h", "client", "senders", "state", "queued",
      "message", "{not json", "seq", "zz", "attempts", "many"))
    assert(srv:command("ZADD", ns .. ":q:senders", "1", "h"))
    local h = assert(ob:status("h"))
    assert.is_nil(h.message)
    assert.truthy(h.message_error)
    assert.is_nil(h.seq)
    assert.equal(0, h.attempts)
    local sum = assert(ob:run { until_idle = true })
    assert.equal(1, sum.failed) -- never sent: its message cannot be read
    assert.equal("bad_record", ob:status("h").code)
    ob:close()
  end)

  it("answers a server error (a namespace that holds something else) with nil, err", function()
    local u = url()
    local ob = assert(outbox.open { store = u })
    assert(ob.store:meta_set("application", "not-ksms"))
    ob:close()
    local again, err = outbox.open { store = u }
    assert.is_nil(again)
    assert.equal("not_an_outbox", err.code)
  end)
end)

-- Worker processes (spec/outbox_worker.lua) on one Redis outbox: killed
-- with kill -9, and paused (SIGSTOP) past its lease then resumed.
describe_redis("ksms.outbox on Redis, with worker processes", function()
  local H = require "helper"
  local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
  local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".") .. "/"
  local WORKER = here .. "outbox_worker.lua"
  local SEND_PATH = "/APIV2/sms_send"
  local fake, client, dir

  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    local s = f and f:read("*a") or ""
    if f then f:close() end
    local state = s:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end

  -- The spec process is the worker's parent (exec all the way), so closing
  -- the pipe reaps it.
  local function spawn(name, args)
    local pipe = assert(io.popen(("echo PID $$; exec %s %s %s >%s/%s.out 2>%s/%s.err"):format(
      LUA, q(WORKER), args, dir, name, dir, name), "r"))
    local pid = tonumber((pipe:read("*l") or ""):match("^PID (%d+)$"))
    return { pid = pid, pipe = pipe }
  end

  local function reap(w)
    H.wait_until("worker " .. w.pid .. " to exit", 15, function() return not alive(w.pid) end)
    w.pipe:close()
  end

  local function seen()
    return H.senders_texts(fake, "^ksms outbox key (%S+)")
  end

  local function fill(ob, n)
    local list = {}
    for i = 1, n do
      list[i] = { { to = "01012345678", from = "0212345678", text = "ksms outbox key p" .. i }, { key = "p" .. i } }
    end
    assert(ob:enqueue_many(list))
  end

  local function sent_count()
    local c = 0
    for _ in pairs(seen()) do c = c + 1 end
    return c
  end

  setup(function()
    fake = fake_control.start("senders", { balance = 10000000 })
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url, timeout = 10 })
    dir = os.tmpname()
    os.remove(dir)
    assert(H.exec_ok("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    client:close()
    fake:stop()
    if dir:match("^/tmp/") and not os.getenv("KEEP") then os.execute("rm -rf " .. q(dir)) end
  end)
  before_each(function()
    fake:reset()
    fake:script { path = SEND_PATH, latency_ms = 25 }
  end)

  local function check_final(ob, n, max_unknown)
    local c = ob:counts()
    assert.equal(0, c.queued + c.sending)
    assert.equal(n, c.sent + c.maybe_sent)
    assert.is_true(c.maybe_sent <= max_unknown, "maybe_sent " .. c.maybe_sent)
    for key, times in pairs(seen()) do assert.equal(1, times, key .. " written twice") end
    for rec in ob:list { state = "sent" } do assert.equal(1, seen()[rec.key] or 0, rec.key) end
  end

  it("a worker killed with kill -9: at most its concurrency unknown, the rest sent once", function()
    local u = stores.redis().url .. "?namespace=kill9"
    local ob = assert(outbox.open { store = u, clients = { senders = client } })
    fill(ob, 120)
    local w = spawn("kill9", "run " .. q(u) .. " " .. q(fake.base_url) .. " 4")
    H.wait_until("a few sends", 10, function() return sent_count() >= 20 end)
    os.execute("kill -9 " .. w.pid)
    reap(w)
    local before = ob:counts()
    assert.is_true(before.sending <= 4)
    assert(ob:run { until_idle = true, concurrency = 4 }) -- recovers (its pid is dead), sends the rest
    check_final(ob, 120, 4)
    ob:close()
  end)

  it("a worker paused past its lease loses its records and, resumed, sends none of them", function()
    local u = stores.redis().url .. "?namespace=paused"
    local ob = assert(outbox.open { store = u, clients = { senders = client } })
    fill(ob, 120)
    local w = spawn("paused", "run " .. q(u) .. " " .. q(fake.base_url) .. " 4 512 0.6")
    H.wait_until("a few sends", 10, function() return sent_count() >= 20 end)
    os.execute("kill -STOP " .. w.pid)
    local owner = ob.store:owners()[1]
    assert.is_string(owner)
    assert.is_false(worker.is_dead(owner, nil, ob.store)) -- its lease still lives
    socket.sleep(0.8)
    assert.is_true(worker.is_dead(owner, nil, ob.store)) -- alive by pid, dead by lease
    local sum = assert(ob:run { until_idle = true, concurrency = 4 })
    assert.is_true(sum.maybe_sent <= 4)
    os.execute("kill -CONT " .. w.pid)
    reap(w)
    check_final(ob, 120, 4)
    ob:close()
  end)
end)

-- Enqueue from an nginx handler: the store talks to Redis over a cosocket
-- (never blocking the worker), the record is in Redis when the response is.
local nginx_control = require "nginx_control"
local describe_nginx = (stores.has_redis and nginx_control.available()) and describe or pending

describe_nginx("ksms.outbox on Redis inside nginx", function()
  local nginx, fake, client
  setup(function()
    fake = fake_control.start("senders")
    client = ksms.client("senders", { api_key = KEY, base_url = fake.base_url })
    local url = stores.redis().url .. "?namespace=nginx"
    nginx = nginx_control.start {
      ksms = true, workers = 1,
      locations = ([[
    location = /enqueue { content_by_lua_block {
      local ksms, outbox = require "ksms", require "ksms.outbox"
      local c = ksms.client("senders", { api_key = "k", base_url = %q })
      local ob = assert(outbox.open { store = %q, clients = { senders = c }, recover = false })
      local rec, err = ob:enqueue({ to = "01012345678", from = "0212345678", text = "from nginx" },
        { key = ngx.var.arg_key })
      ob:close()
      ngx.say(rec and (rec.state .. " " .. tostring(rec.duplicate) .. " " .. ob.store.h.kind) or ("ERR " .. tostring(err)))
    } }
]]):format(fake.base_url, url),
    }
  end)
  teardown(function()
    if nginx then nginx:stop() end
    client:close()
    fake:stop()
  end)

  it("enqueues over a cosocket, and a plain Lua worker sends it", function()
    local function get() return assert(fake_control.http(nginx.port, "GET", "/enqueue?key=ngx-1")).body end
    -- (the body comes chunked: its line is what counts)
    local first, second = get(), get()
    assert.truthy(first:find("\nqueued false cosocket\n", 1, true), first)
    assert.truthy(second:find("\nqueued true cosocket\n", 1, true), second)
    local ob = assert(outbox.open { store = stores.redis().url .. "?namespace=nginx", clients = { senders = client } })
    assert.equal("from nginx", ob:status("ngx-1").message.text)
    assert.equal(1, assert(ob:run { until_idle = true }).sent)
    assert.equal("core", ob.store.h.kind)
    ob:close()
  end)
end)
