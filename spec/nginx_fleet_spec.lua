-- ksms.ngx.oneshot with redis = URL (ksms.ngx.oneshot_fleet) in real nginx
-- instances (nginx-light with the Lua module, LuaJIT), against a real
-- redis-server and the fake OneShot server, all on 127.0.0.1. The spec
-- drives nginx over HTTP and reads the outbox itself (ksms.oneshot.fleet's
-- producer outbox, the spec's interpreter): handlers in every worker
-- submit, one worker of all the instances holds the bound connection, a
-- full stop of nginx keeps what was queued.
local socket = require "socket"
local fake_control = require "fake_control"
local nginx_control = require "nginx_control"
local redis_control = require "redis_control"
local fleet = require "ksms.oneshot.fleet"
local json = require "fakes.json"
local R = require "nginx_requests"
local literal, get, many, log_tail = R.literal, R.get, R.many, R.log_tail
local function no_errors(nginx) return R.no_errors(nginx, { "member failed", "[alert]" }) end
local H = require "spec_helper"

local ROOT = nginx_control.repo_root()
local CORE = ROOT .. "/build/luajit/ksms/core.so"   -- nginx always runs LuaJIT
local free_port = H.free_port

-- /submit (POST a message; ?key=), /send, /outcome?key=&timeout=, /status.
-- Each answers JSON with the worker's pid; a raise is reported, not a 500.
local SERVER = [[
  server {
    listen 127.0.0.1:%d reuseport;
    default_type application/json;
    location = /submit {
      content_by_lua_block {
        ngx.req.read_body()
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        local msg = cjson.decode(ngx.req.get_body_data())
        local opts = { account = "acct", key = ngx.var.arg_key }
        local f = ngx.var.arg_mode == "send" and os1.send or os1.submit
        if ngx.var.arg_mode == "send" then opts.timeout = tonumber(ngx.var.arg_timeout) or 20 end
        local ok, res, err = pcall(f, msg, opts)
        local out = { pid = ngx.worker.pid() }
        if not ok then out.raised = tostring(res)
        else
          out.res = res
          if err then
            out.err = { category = err.category, code = err.code, retryable = err.retryable,
              maybe_sent = err.maybe_sent, pending = err.pending, message = err.message,
              is_error = require("ksms.errors").is(err) }
          end
        end
        ngx.print(cjson.encode(out))
      }
    }
    location = /outcome {
      content_by_lua_block {
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        local res, err = os1.outcome(ngx.var.arg_key, { timeout = tonumber(ngx.var.arg_timeout) or 0 })
        ngx.print(cjson.encode { res = res, err = err and { category = err.category, code = err.code,
          maybe_sent = err.maybe_sent, pending = err.pending, state = err.state,
          is_error = require("ksms.errors").is(err) } })
      }
    }
    location = /status {
      content_by_lua_block {
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        ngx.print(cjson.encode { status = os1.status { account = "acct" }, pid = ngx.worker.pid(),
          reports = ngx.shared.test:get("reports") or 0 })
      }
    }
  }
]]

local function start_nginx(app_port, cfg)
  local http = ([[
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict test 1m;
  init_worker_by_lua_block {
    local cfg = %s
    cfg.on_report = function(r) ngx.shared.test:incr("reports", 1, 0) end
    require("ksms.ngx.oneshot").start(cfg)
  }
]]):format(ROOT, ROOT, ROOT, literal(cfg)) .. SERVER:format(app_port)
  return nginx_control.start { lua = true, workers = 2, http = http }
end

local function msg(i, tag)
  return { to = "01012345678", from = "15666639", text = ("%s %d"):format(tag, i) }
end

-- n messages submitted to port at once; their keys.
local function submit_many(port, n, tag)
  local reqs = {}
  for i = 1, n do reqs[i] = { path = "/submit", body = msg(i, tag) } end
  local keys = {}
  for i, a in ipairs(many(port, reqs)) do
    assert.is_nil(a.raised)
    assert.is_nil(a.err, a.err and a.err.message)
    assert.is_string(a.res)
    keys[i] = a.res
  end
  return keys
end

-- UserMsgId -> how many MsgSendReq the fake received with it.
local function sent_ids(fake)
  local counts, total = {}, 0
  for _, r in ipairs(fake:requests("MsgSendReq")) do
    local id = r.body.UserMsgId
    counts[id] = (counts[id] or 0) + 1
    total = total + 1
  end
  return counts, total
end

local n_ns = 0
local function fresh_ns()
  n_ns = n_ns + 1
  return ("ngx-fleet-%d-%d"):format(n_ns, os.time())
end

-- The parent pid of a process (/proc), or nil.
local function ppid(pid)
  local f = io.open("/proc/" .. math.floor(pid) .. "/stat")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("^%d+ %b() %a (%d+)"))
end

local describe_nginx = nginx_control.available() and describe or pending

describe_nginx("ksms.ngx.oneshot with redis (a fleet of nginx workers and instances)", function()
  local srv, fake, ns, ob
  local running = {}

  local function cfg(extra)
    local c = fake:session_options { redis = srv.url, account = "acct", namespace = ns,
      outbox_namespace = ns .. ":ob", lock_ttl = 2, reconnect_delay = 0.3, quiet = 0.3,
      drain_timeout = 2, keepalive_interval = 5 }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  local function start(port, extra)
    local n = start_nginx(port, cfg(extra))
    running[#running + 1] = n
    return n
  end

  -- A graceful stop of the master (QUIT), waited for up to 15 s, its
  -- error log kept for the message of a failure; nginx_control cleans up.
  local last_log = ""
  local function stop(n)
    os.execute(("kill -QUIT %d 2>/dev/null"):format(n.pid))
    local t0 = socket.gettime()
    H.wait_until("nginx " .. n.pid .. " to stop", 15, function()
      return not H.exec_ok(("kill -0 %d 2>/dev/null"):format(n.pid))
    end, 0.05)
    last_log = log_tail(n)
    n:stop()
    for i, r in ipairs(running) do if r == n then table.remove(running, i) end end
    return socket.gettime() - t0
  end

  -- Records in each state, read from Redis by the spec.
  local function counts() return assert(ob:counts()) end
  local function settled(n)
    local c = counts()
    return (c.sent + c.delivered + c.failed + c.maybe_sent + c.expired + c.undelivered) >= n and c
  end

  setup(function()
    assert(io.open(CORE), "build/luajit is missing: run make LUA=luajit"):close()
    srv = redis_control.start { aof = true }
    fake = fake_control.start("oneshot", { state = { report_delay_ms = 20 } })
  end)
  teardown(function()
    fake:stop()
    redis_control.stop_all()
  end)
  before_each(function()
    fake:reset()
    ns = fresh_ns()
    ob = assert(fleet.outbox { redis = srv.url, account = "acct", outbox_namespace = ns .. ":ob" })
  end)
  after_each(function()
    for _, n in ipairs(running) do
      if os.getenv("KSMS_SHOW_NGINX_LOG") then io.stderr:write((log_tail(n))) end
      n:stop()
    end
    running = {}
    ob:close()
  end)

  it("sends what handlers in both workers submit exactly once, through one bind", function()
    fake:state { speed = 20 }
    local app = free_port()
    local nginx = start(app)
    local keys = submit_many(app, 40, "한 번")
    local c = H.wait_until("40 records delivered", 20, function()
      local cc = counts()
      return cc.delivered == 40 and cc
    end, 0.1)
    assert.equal(40, c.delivered)
    -- Each outcome, read in a handler.
    for _, k in ipairs(keys) do
      local o = get(app, "/outcome?key=" .. k)
      assert.is_nil(o.err, o.err and json.encode(o.err))
      assert.is_true(o.res.ok)
      assert.equal("oneshot", o.res.provider)
      assert.equal(0, o.res.code)
      assert.equal("delivered", o.res.state)
      assert.equal(k, o.res.key)
      assert.is_string(o.res.id)
    end
    local ids, total = sent_ids(fake)
    assert.equal(40, total)
    for id, n in pairs(ids) do assert.equal(1, n, id) end
    local st = fake:stats()
    assert.equal(1, st.binds)
    assert.equal(0, st.duplicate_binds)
    assert.equal(0, st.duplicates)
    assert.equal(0, st.speed_errors)
    assert.is_true(st.max_per_second <= 20, "max per second " .. st.max_per_second)
    local s = H.wait_until("40 reports in on_report", 5, function()
      local a = get(app, "/status")
      return a.reports == 40 and a
    end, 0.1)
    assert.equal("redis", s.status.mode)
    assert.is_string(s.status.holder)
    assert.equal(0, s.status.queued)
    assert.equal(40, s.status.counts.delivered)
    -- The holder is one of this nginx's workers, and says so.
    local holder_pid = tonumber(s.status.holder:match("^(%d+)@"))
    assert.equal(nginx.pid, ppid(holder_pid))
    local roles = {}
    for _ = 1, 20 do
      local a = get(app, "/status")
      roles[a.pid] = a.status.role
      if a.pid == holder_pid then assert.is_true(a.status.bound) end
    end
    for pid, role in pairs(roles) do assert.equal(pid == holder_pid and "holder" or "standby", role) end
    no_errors(nginx)
  end)

  it("refuses bad input before storing anything, keeps one record per key, times out a wait", function()
    -- Nothing listens on the OneShot port: records stay queued.
    local app = free_port()
    start(app, { port = free_port(), reconnect_delay = 30 })
    local a = get(app, "/submit", { to = "010-12", from = "15666639", text = "x" })
    assert.equal("recipient", a.err.category)
    assert.is_true(a.err.is_error)
    a = get(app, "/submit", { to = "01012345678", from = "15666639", text = "" })
    assert.equal("invalid_input", a.err.category)
    a = get(app, "/submit", { to = "01012345678", from = "15666639", text = "x", colour = "red" })
    assert.matches("unknown field 'colour'", a.raised)
    assert.equal(0, counts().queued)
    a = get(app, "/submit?key=order-1", msg(1, "대기"))
    assert.equal("order-1", a.res)
    a = get(app, "/submit?key=order-1", msg(2, "대기")) -- a retried request: the same record
    assert.equal("order-1", a.res)
    a = get(app, "/submit", { to = "01012345678", from = "15666639", text = "x", id = "u-7" })
    assert.equal("u-7", a.res)
    assert.equal(2, counts().queued)
    assert.equal("대기 1", ob:status("order-1").message.text)
    local t0 = socket.gettime()
    local o = get(app, "/outcome?key=order-1&timeout=0.3")
    assert.is_true(socket.gettime() - t0 >= 0.29)
    assert.equal("timeout", o.err.category)
    assert.is_true(o.err.pending)
    assert.equal("queued", o.err.state)
    o = get(app, "/outcome?key=nosuchkey")
    assert.equal("unknown", o.err.category)
    assert.equal("no_outcome", o.err.code)
    -- send waits, then says pending: the record stays queued.
    a = get(app, "/submit?mode=send&timeout=0.2&key=order-2", msg(3, "대기"))
    assert.equal("timeout", a.err.category)
    assert.is_true(a.err.pending)
    assert.equal(3, counts().queued)
  end)

  it("gives nil, err (category server, retryable) when Redis cannot be reached", function()
    local app = free_port()
    local nginx = start(app, { redis = "redis://127.0.0.1:" .. free_port() .. "/0", redis_timeout = 0.5 })
    local t0 = socket.gettime()
    local a = get(app, "/submit", msg(1, "없음"))
    assert.is_true(socket.gettime() - t0 < 5)
    assert.equal("server", a.err.category)
    assert.is_true(a.err.retryable)
    assert.is_true(a.err.is_error)
    local s = get(app, "/status").status
    assert.equal("standby", s.role)
    assert.is_string(s.redis_error)
    no_errors(nginx)
  end)

  it("accepts store = \"redis://...\" as the same option, and gives the record's failure as nil, err", function()
    fake:state { speed = 20 }
    local app = free_port()
    local c = cfg()
    c.store, c.redis = c.redis, nil
    local nginx = start_nginx(app, c)
    running[#running + 1] = nginx
    -- The server refuses the next message (Result 33: not a phone number).
    fake:script { method = "MsgSendReq", result = 33, times = 1 }
    local a = get(app, "/submit?mode=send&timeout=10&key=bad-1", msg(1, "거절"))
    assert.is_nil(a.res)
    assert.equal("recipient", a.err.category)
    assert.is_false(a.err.maybe_sent)
    assert.equal("failed", ob:status("bad-1").state)
    a = get(app, "/submit?mode=send&timeout=10&key=good-1", msg(2, "정상"))
    assert.is_true(a.res.ok, json.encode(a))
    assert.equal(1, fake:stats().binds)
    no_errors(nginx)
  end)

  it("two nginx instances on one Redis and one account: one bind at a time, each message once, a stop moves it", function()
    fake:state { speed = 10 }
    local pa, pb = free_port(), free_port()
    local na, nb = start(pa), start(pb)
    local keys = {}
    for _, k in ipairs(submit_many(pa, 20, "가")) do keys[#keys + 1] = k end
    for _, k in ipairs(submit_many(pb, 20, "나")) do keys[#keys + 1] = k end
    H.wait_until("40 records sent", 20, function() return settled(40) end, 0.1)
    local st = fake:stats()
    assert.equal(1, st.binds)
    assert.equal(0, st.duplicate_binds)
    -- Which instance holds it; more work, then that instance stops.
    local holder = assert(get(pa, "/status").status.holder)
    local holder_pid = tonumber(holder:match("^(%d+)@"))
    local owner = ppid(holder_pid) == na.pid and na or nb
    local other = owner == na and nb or na
    assert.equal(owner == na and na.pid or nb.pid, ppid(holder_pid))
    for _, k in ipairs(submit_many(pa, 20, "다")) do keys[#keys + 1] = k end
    for _, k in ipairs(submit_many(pb, 20, "라")) do keys[#keys + 1] = k end
    socket.sleep(0.8)
    local before = select(2, sent_ids(fake))
    stop(owner)
    local c = H.wait_until("80 records settled", 30, function() return settled(80) end, 0.1)
    local ids, total = sent_ids(fake)
    for id, n in pairs(ids) do assert.equal(1, n, id) end
    st = fake:stats()
    print(("\n  two instances: %d of 80 sent before the holder's nginx stopped, binds %d, sent %d, maybe sent %d")
      :format(before, st.binds, c.sent + c.delivered, c.maybe_sent))
    assert.is_true(before > 40 and before < 80, "the stop came mid-way: " .. before)
    assert.equal(80, total)
    assert.equal(80, c.sent + c.delivered)
    assert.equal(0, c.maybe_sent)
    assert.equal(2, st.binds)
    assert.equal(0, st.duplicate_binds)
    assert.equal(0, st.duplicates)
    assert.equal(0, st.speed_errors)
    assert.is_true(st.max_per_second <= 10, "max per second " .. st.max_per_second)
    local s = get(other == na and pa or pb, "/status").status
    assert.equal(other.pid, ppid(tonumber(s.holder:match("^(%d+)@"))))
    for _, k in ipairs(keys) do assert.is_truthy(({ sent = true, delivered = true })[ob:status(k).state]) end
    no_errors(other)
  end)

  it("keeps what is queued across a full nginx stop and start: all sent after it, none twice", function()
    fake:state { speed = 4 }
    local app = free_port()
    local nginx = start(app)
    local keys = submit_many(app, 24, "재시작")
    H.wait_until("a few sent", 10, function() return select(2, sent_ids(fake)) >= 4 end, 0.05)
    local took = stop(nginx) -- the master: every worker and the shared memory go
    local sent_before = select(2, sent_ids(fake))
    local c = counts()
    assert.is_nil(last_log:find("member failed", 1, true), last_log)
    print(("\n  full stop: %d of 24 sent before it, %d queued in Redis meanwhile, the stop took %.2f s")
      :format(sent_before, c.queued, took))
    assert.is_true(sent_before < 24, "stopped mid-way: " .. sent_before)
    assert.equal(24 - sent_before, c.queued, json.encode(c) .. "\n" .. last_log)
    assert.equal(0, c.sending)
    socket.sleep(0.5)
    assert.equal(sent_before, select(2, sent_ids(fake))) -- nothing sends while nginx is down
    app = free_port()
    nginx = start(app)
    c = H.wait_until("24 records settled", 30, function() return settled(24) end, 0.1)
    local ids, total = sent_ids(fake)
    for id, n in pairs(ids) do assert.equal(1, n, id) end
    assert.equal(24, total)
    assert.equal(24, c.sent + c.delivered, json.encode(c))
    assert.equal(0, c.maybe_sent)
    for _, k in ipairs(keys) do
      local o = get(app, "/outcome?key=" .. k .. "&timeout=5")
      assert.is_true(o.res and o.res.ok, json.encode(o))
    end
    local st = fake:stats()
    assert.equal(2, st.binds, json.encode(st))
    assert.equal(0, st.duplicate_binds)
    assert.equal(0, st.duplicates)
    assert.equal(0, st.speed_errors)
    no_errors(nginx)
  end)
end)
