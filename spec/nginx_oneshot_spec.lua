-- ksms.ngx.oneshot in a real nginx (nginx-light with the Lua module, LuaJIT)
-- against the fake OneShot server. The spec runs outside nginx (Lua 5.4 or
-- LuaJIT) and drives it over HTTP: handlers in both workers submit, one
-- worker holds the bound session, reload and kill -9 move it.
local socket = require "socket"
local fake_control = require "fake_control"
local nginx_control = require "nginx_control"
local json = require "fakes.json"
local R = require "nginx_requests"
local literal, get, many, log_tail = R.literal, R.get, R.many, R.log_tail
local function no_errors(nginx) return R.no_errors(nginx, { "read timed out", "raised", "binder failed" }) end
local H = require "spec_helper"

-- The repository root, absolute (nginx's Lua paths must be).
local ROOT = nginx_control.repo_root()
local CORE = ROOT .. "/build/luajit/ksms/core.so"   -- nginx always runs LuaJIT

local exec_ok, free_port = H.exec_ok, H.free_port

-- The handlers: /send (mode=send|submit), /outcome, /status. Each answers
-- JSON with the worker's pid.
local SERVER = [[
  server {
    listen 127.0.0.1:%d reuseport;
    default_type application/json;
    location = /send {
      content_by_lua_block {
        ngx.req.read_body()
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        local msg = cjson.decode(ngx.req.get_body_data())
        local opts = { dict = "ksms_oneshot", timeout = tonumber(ngx.var.arg_timeout) or 20 }
        local ok, res, err = pcall(ngx.var.arg_mode == "submit" and os1.submit or os1.send, msg, opts)
        local out = { pid = ngx.worker.pid() }
        if not ok then out.raised = tostring(res)
        else
          out.res = res
          if err then
            out.err = { category = err.category, code = err.code, retryable = err.retryable,
              maybe_sent = err.maybe_sent, message = err.message,
              is_error = require("ksms.errors").is(err) }
          end
        end
        ngx.print(cjson.encode(out))
      }
    }
    location = /outcome {
      content_by_lua_block {
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        local res, err = os1.outcome(ngx.var.arg_id, { timeout = tonumber(ngx.var.arg_timeout) or 0 })
        ngx.print(cjson.encode { res = res, err = err and { category = err.category, code = err.code,
          maybe_sent = err.maybe_sent, pending = err.pending, is_error = require("ksms.errors").is(err) } })
      }
    }
    location = /status {
      content_by_lua_block {
        local cjson, os1 = require "cjson", require "ksms.ngx.oneshot"
        local t = ngx.shared.test
        ngx.print(cjson.encode { status = os1.status(), reports = t:get("reports") or 0,
          reports_ok = t:get("reports_ok") or 0, spam = t:get("spam"), change = t:get("change"),
          pid = ngx.worker.pid() })
      }
    }
  }
]]

local function start_nginx(app_port, cfg)
  local http = ([[
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict ksms_oneshot 4m;
  lua_shared_dict test 1m;
  init_worker_by_lua_block {
    local cfg = %s
    cfg.on_report = function(r)
      local t = ngx.shared.test
      t:incr("reports", 1, 0)
      if r.ok then t:incr("reports_ok", 1, 0) end
    end
    cfg.on_spam = function(r) ngx.shared.test:set("spam", r.phone .. " " .. r.deny_no) end
    cfg.on_change_phone = function(r) ngx.shared.test:set("change", r.phone .. " " .. r.change_phone) end
    require("ksms.ngx.oneshot").start(cfg)
  }
]]):format(ROOT, ROOT, ROOT, literal(cfg)) .. SERVER:format(app_port)
  return nginx_control.start { lua = true, workers = 2, http = http }
end

local function wait_for(what, seconds, fn) return H.wait_until(what, seconds, fn, 0.05) end

local function msg(i, tag)
  return { to = "01012345678", from = "15666639", text = ("%s %d"):format(tag, i) }
end

-- Every id's outcome, read from a handler: how many are ok and how many
-- may have been sent; anything else (no outcome yet, a refusal) fails.
local function tally_outcomes(port, ids)
  local ok, maybe = 0, 0
  for _, id in ipairs(ids) do
    local o = get(port, "/outcome?id=" .. id)
    if o.res and o.res.ok then ok = ok + 1
    elseif o.err and o.err.maybe_sent then maybe = maybe + 1
    else error("no outcome for " .. id .. ": " .. json.encode(o)) end
  end
  return ok, maybe
end

local function sent_ids(fake)
  local counts = {}
  for _, r in ipairs(fake:requests("MsgSendReq")) do
    local id = r.body.UserMsgId
    counts[id] = (counts[id] or 0) + 1
  end
  return counts
end

describe("ksms.ngx.oneshot in nginx", function()
  local fake, nginx, app

  local function cfg(extra)
    local c = fake:session_options { dict = "ksms_oneshot", reconnect_delay = 0.3 }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  local function status() return get(app, "/status") end

  local function wait_bound()
    return wait_for("the binder to bind", 10, function()
      local s = status().status
      return s.state and s.state.bound and s
    end)
  end

  setup(function()
    assert(io.open(CORE), "build/luajit is missing: run make LUA=luajit"):close()
    fake = fake_control.start("oneshot", { state = { report_delay_ms = 20 } })
  end)
  teardown(function() fake:stop() end)
  before_each(function()
    fake:reset()
    app = free_port()
  end)
  after_each(function()
    if not nginx then return end
    local log, size = log_tail(nginx)
    if os.getenv("KSMS_SHOW_NGINX_LOG") then io.stderr:write(log) end
    nginx:stop()
    nginx = nil
    assert.is_true(size < 1000000, "the error log has " .. size .. " bytes")
  end)

  it("sends from handlers in both workers through one bound connection, paced, reports acknowledged", function()
    fake:state { speed = 20 }
    nginx = start_nginx(app, cfg())
    wait_bound()
    local reqs = {}
    for i = 1, 60 do reqs[i] = { path = "/send?timeout=20", body = msg(i, "동시") } end
    local answers = many(app, reqs)
    local pids, ids = {}, {}
    for _, a in ipairs(answers) do
      assert.is_nil(a.raised)
      assert.is_nil(a.err, a.err and a.err.message)
      assert.is_true(a.res.ok)
      assert.equal("oneshot", a.res.provider)
      assert.equal(0, a.res.code)
      pids[a.pid] = true
      ids[a.res.id] = true
    end
    local npids = 0
    for _ in pairs(pids) do npids = npids + 1 end
    assert.equal(2, npids, "handlers ran in both workers")
    local s = wait_for("60 reports handled and acknowledged", 5, function()
      local st = status()
      return st.reports == 60 and fake:stats().reports_acked == 60 and st
    end)
    assert.equal(60, s.reports_ok)
    local st = fake:stats()
    assert.equal(1, st.connections)
    assert.equal(1, st.binds)
    assert.equal(0, st.duplicate_binds)
    assert.equal(60, st.accepted)
    assert.equal(0, st.speed_errors)
    assert.is_true(st.max_per_second <= 20, "max per second " .. st.max_per_second)
    local counts = sent_ids(fake)
    for id in pairs(ids) do assert.equal(1, counts[id]) end
    -- Spam and number-change pushes reach their handlers, acknowledged after.
    assert(fake:push("SpamReq", { PhoneNo = "01011112222", DenyNo = "0800001111" }))
    assert(fake:push("ChangePhoneReq", { PhoneNo = "01033334444", ChangePhoneNo = "01055556666" }))
    s = wait_for("the pushes handled", 5, function()
      local f = fake:stats()
      return f.spam_acked == 1 and f.change_acked == 1 and status()
    end)
    assert.equal("01011112222 0800001111", s.spam)
    assert.equal("01033334444 01055556666", s.change)
    local rate = 59 / (st.last_arrival - st.first_arrival)
    print(("\n  nginx: 60 messages from 2 workers at %.1f/s (Speed 20, busiest second %d)")
      :format(rate, st.max_per_second))
    assert.is_true(rate > 15, "rate " .. rate)
    no_errors(nginx)
  end)

  it("keeps every queued message across nginx -s reload, sends each once, never binds twice", function()
    fake:state { speed = 10 }
    nginx = start_nginx(app, cfg())
    local before = wait_bound().state.pid
    local reqs = {}
    for i = 1, 40 do reqs[i] = { path = "/send?mode=submit", body = msg(i, "재시작") } end
    local ids = {}
    for i, a in ipairs(many(app, reqs)) do
      assert.is_nil(a.raised)
      assert.is_string(a.res)
      ids[i] = a.res
    end
    socket.sleep(1.2)
    local sent_before = fake:stats().accepted
    nginx:reload()
    local s = wait_for("40 outcomes", 20, function()
      local st = status().status
      return st.counters.outcomes >= 40 and st
    end)
    local ok, maybe = tally_outcomes(app, ids)
    local counts, distinct = sent_ids(fake), 0
    for _, n in pairs(counts) do
      assert.equal(1, n)
      distinct = distinct + 1
    end
    local st = fake:stats()
    print(("\n  reload: %d of 40 sent before it, %d handed back, %d ok, %d maybe sent, binds %d")
      :format(sent_before, s.counters.handed_back, ok, maybe, st.binds))
    assert.is_true(sent_before > 0 and sent_before < 40, "the reload came mid-way: " .. sent_before)
    assert.equal(40, ok + maybe)
    assert.equal(0, maybe)
    assert.equal(40, distinct)
    assert.equal(40, s.counters.outcomes)
    assert.equal(0, s.counters.outcome_repeats)
    assert.equal(0, st.duplicate_binds)
    assert.equal(2, st.binds)
    assert.is_true(st.unbinds >= 1)
    assert.equal(0, st.speed_errors)
    assert.not_equal(before, status().status.state.pid)
    no_errors(nginx)
  end)

  it("moves the session to another worker after the holder is killed, losing and doubling nothing", function()
    fake:state { speed = 10 }
    nginx = start_nginx(app, cfg { lock_ttl = 1.5, lock_interval = 0.25, drain_timeout = 1, close_timeout = 1 })
    local holder = wait_bound().state.pid
    local reqs = {}
    for i = 1, 30 do reqs[i] = { path = "/send?mode=submit", body = msg(i, "장애") } end
    local ids = {}
    for i, a in ipairs(many(app, reqs)) do ids[i] = assert(a.res) end
    socket.sleep(1)
    assert(exec_ok("kill -9 " .. math.floor(holder)))
    local s = wait_for("30 outcomes", 20, function()
      local st = status().status
      return st.counters.outcomes >= 30 and st
    end)
    local ok, maybe = tally_outcomes(app, ids)
    for _, n in pairs(sent_ids(fake)) do assert.equal(1, n) end
    local st = fake:stats()
    print(("\n  kill -9: %d taken back from the dead holder, %d maybe sent, %d ok")
      :format(s.counters.recovered, s.counters.recovered_maybe_sent, ok))
    assert.equal(30, ok + maybe)
    assert.equal(30, s.counters.outcomes)
    assert.equal(0, s.counters.outcome_repeats)
    assert.is_true(s.counters.recovered + s.counters.recovered_maybe_sent >= 1)
    assert.equal(0, st.duplicate_binds)
    assert.equal(2, st.binds)
    assert.not_equal(holder, s.state.pid)
  end)

  it("gives a maybe-sent outcome to a message whose connection died, and sends the rest after reconnecting", function()
    fake:state { speed = 20 }
    nginx = start_nginx(app, cfg())
    wait_bound()
    -- The next MsgSendReq closes the connection: recorded, never answered.
    fake:script { method = "MsgSendReq", fault = "close", times = 1 }
    local reqs = {}
    for i = 1, 12 do reqs[i] = { path = "/send?timeout=20", body = msg(i, "끊김") } end
    local ok, maybe = 0, 0
    for _, a in ipairs(many(app, reqs)) do
      if a.res and a.res.ok then ok = ok + 1
      elseif a.err and a.err.maybe_sent then
        maybe = maybe + 1
        assert.equal("unknown", a.err.category)
        assert.is_true(a.err.is_error)
      else error("unexpected answer: " .. json.encode(a)) end
    end
    local counts, distinct = sent_ids(fake), 0
    for _, n in pairs(counts) do
      assert.equal(1, n)      -- the maybe-sent one was not written again
      distinct = distinct + 1
    end
    assert.equal(12, ok + maybe)
    assert.is_true(maybe >= 1)
    assert.equal(12, distinct)
    local st = fake:stats()
    assert.equal(2, st.connections)
    assert.equal(2, st.binds)
    assert.equal(0, st.duplicate_binds)
  end)

  it("refuses a garbage bind answer at once, as a protocol error, and binds on the next attempt", function()
    -- bind_timeout 10 s: the refusal must come long before it would.
    fake:script { method = "BindReq", fault = "silent", times = 1,
      frames = { { method = "BindRes", body = "%%% not Base64 %%%" } } }
    local t0 = socket.gettime()
    nginx = start_nginx(app, cfg())
    wait_for("the refusal in the error log", 5, function()
      return log_tail(nginx):find("bad_bind_answer", 1, true)
    end)
    wait_bound()
    assert.is_true(socket.gettime() - t0 < 8, "bound after " .. (socket.gettime() - t0) .. " s")
    local st = fake:stats()
    assert.equal(2, st.connections)
    assert.equal(1, st.binds)
    local a = get(app, "/send?timeout=10", msg(1, "다시"))
    assert.is_true(a.res and a.res.ok, json.encode(a))
  end)

  it("stays bound through a stream of bad frames, logging at most one warning a second", function()
    nginx = start_nginx(app, cfg())
    wait_bound()
    local frames = {}
    for i = 1, 500 do frames[i] = { method = "NoSuch" .. i, body = { Result = 0 } } end
    local t0 = socket.gettime()
    fake:control("POST", "send", { frames = frames })
    local a = get(app, "/send?timeout=10", msg(1, "잡음 뒤"))
    assert.is_true(a.res and a.res.ok, json.encode(a))
    local log = log_tail(nginx)
    local _, warnings = log:gsub("unexpected method", "")
    local seconds = socket.gettime() - t0
    assert.is_true(warnings >= 1 and warnings <= seconds + 2, warnings .. " warnings in " .. seconds .. " s")
    assert.equal(1, fake:stats().connections)
  end)

  it("stores the outcome of an answer whose body JSON cannot hold (an infinite number)", function()
    nginx = start_nginx(app, cfg())
    wait_bound()
    local text = '{"Header":{"Method":"MsgSendRes"},"Body":{"UserMsgId":"inf-1","UserMsgSubId":"",'
      .. '"Result":0,"UserData":1e999}}'
    local z = require("zlib").deflate(9)(text, "finish")
    fake:script { method = "MsgSendReq", fault = "silent", times = 1,
      frames = { { raw_hex = require("ksms.core").hex("Content-Length:" .. #z .. "\r\n" .. z) } } }
    local m = msg(1, "무한")
    m.id = "inf-1"
    local a = get(app, "/send?timeout=10", m)
    assert.is_true(a.res and a.res.ok, json.encode(a))
    assert.equal("inf-1", a.res.id)
    assert.is_nil(a.res.raw)
    assert.is_string(a.res.raw_dropped)
    assert.is_nil(log_tail(nginx):find("raised", 1, true))
  end)

  it("holds messages outside the granted sending window, or refuses them when told to", function()
    local h = os.date("!*t", os.time() + 9 * 3600).hour
    fake:state { begin_time = (h + 2) % 24, end_time = (h + 3) % 24 }
    nginx = start_nginx(app, cfg())
    wait_bound()
    local a = get(app, "/send?timeout=0.5", msg(1, "밤"))
    assert.equal("timeout", a.err.category)
    socket.sleep(0.3)
    assert.equal(0, fake:stats().messages)
    assert.equal(1, status().status.queued)     -- still in the shared queue
    nginx:stop()
    app = free_port()
    nginx = start_nginx(app, cfg { outside_window = "refuse" })
    wait_bound()
    a = get(app, "/send?mode=submit", msg(2, "밤"))
    assert.equal("schedule", a.err.category)
    assert.equal("outside_window", a.err.code)
    assert.equal(0, status().status.queued)
  end)

  it("refuses bad input before queueing, bounds the queue, and times out a wait", function()
    -- Nothing listens on the port: messages stay queued.
    nginx = start_nginx(app, cfg { port = free_port(), queue_limit = 5, reconnect_delay = 30 })
    local a = get(app, "/send?mode=submit", { to = "010-12", from = "15666639", text = "x" })
    assert.equal("recipient", a.err.category)
    assert.is_true(a.err.is_error)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "" })
    assert.equal("invalid_input", a.err.category)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = ("a"):rep(91), kind = "sms" })
    assert.equal("message_length", a.err.category)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "x", colour = "red" })
    assert.matches("unknown field 'colour'", a.raised)
    assert.equal(0, status().status.queued)
    local ids = {}
    for i = 1, 5 do
      a = get(app, "/send?mode=submit", msg(i, "대기"))
      ids[i] = assert(a.res, a.err and a.err.message)
    end
    a = get(app, "/send?mode=submit", msg(6, "대기"))
    assert.equal("rate_limit", a.err.category)
    assert.equal("queue_full", a.err.code)
    assert.is_true(a.err.retryable)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "x", id = ids[1] })
    assert.equal("rate_limit", a.err.category)  -- the limit is checked first
    local o = get(app, "/outcome?id=" .. ids[1] .. "&timeout=0.3")
    assert.equal("timeout", o.err.category)
    assert.is_true(o.err.pending)
    o = get(app, "/outcome?id=nosuchid")
    assert.equal("unknown", o.err.category)
    local s = status().status
    assert.equal(5, s.queued)
    assert.equal(5, s.counters.submitted)
  end)

  it("refuses a second message with the same id while the first is pending", function()
    nginx = start_nginx(app, cfg { port = free_port(), reconnect_delay = 30 })
    local a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "x", id = "order-1" })
    assert.equal("order-1", a.res)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "y", id = "order-1" })
    assert.equal("duplicate", a.err.category)
    a = get(app, "/send?mode=submit", { to = "01012345678", from = "15666639", text = "y", id = "order-1", sub_id = "2" })
    assert.equal("order-1#2", a.res)
  end)
end)
