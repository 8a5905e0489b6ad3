-- ksms.oneshot.fleet.reports against a real redis-server (spec/redis_control.lua
-- starts it on 127.0.0.1 with a free port and a temp dir): the binder's
-- publisher with its dedup in Redis, the applications' consumer group,
-- claims of a dead consumer's entries, trimming, Redis going away, entries
-- written by hand, and misuse.
local reports = require "ksms.oneshot.fleet.reports"
local redis = require "ksms.redis"
local errors = require "ksms.errors"
local rc = require "redis_control"
local helper = require "helper"
local socket = require "socket"

-- A report event as ksms.oneshot.protocol hands it out.
local function event(i, over)
  local ev = { type = "report", server_msg_id = "S" .. i, user_msg_id = "U" .. i, sub_id = "1",
    msg_type = 4, phone = "0101234" .. string.format("%04d", i), result = i % 3 == 0 and 3001 or 0,
    telecom = "SKT", delivery_time = "20260101120000", user_data = "data " .. i,
    result_message = "message " .. i, body = { huge = string.rep("x", 1000) } }
  ev.ok = ev.result == 0
  for k, v in pairs(over or {}) do ev[k] = v end
  return ev
end

-- Port refusing: the server is down (a killed one may stay a zombie a while).
local function wait_down(srv)
  helper.wait_until("redis to go down", 5, function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", srv.port)
    c:close()
    return not ok
  end, 0.02)
end

-- Stream ids in stream order ("ms-seq": numbers, not text).
local function id_less(a, b)
  local am, as = a:match("^(%d+)%-(%d+)$")
  local bm, bs = b:match("^(%d+)%-(%d+)$")
  if am ~= bm then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end

local function ids_of(list)
  local ids = {}
  for i, e in ipairs(list) do ids[i] = e.id end
  return ids
end

describe("ksms.oneshot.fleet.reports", function()
  local srv, conn
  setup(function()
    srv = rc.start()
    conn = assert(redis.connect { url = srv.url })
  end)
  teardown(function()
    if conn then conn:close() end
    rc.stop_all()
  end)

  local n = 0
  local function account()
    n = n + 1
    return "acct" .. n
  end

  for _, sock in ipairs { "core", "luasocket" } do
    it("publishes, and a consumer (" .. sock .. ") reads the reports in order with their extra fields", function()
      local acct = account()
      local pub = reports.publisher(conn, { account = acct })
      local published = {}
      for i = 1, 5 do
        local added, id = pub:publish(event(i), { key = "rec-" .. i, state = i % 3 == 0 and "failed" or "delivered" })
        assert.is_true(added)
        assert.matches("^%d+%-%d+$", id)
        published[i] = id
      end
      assert.equal("5", (srv:command("XLEN", "ksms:fleet:" .. acct .. ":reports"):match("^:(%d+)")))
      local c = assert(reports.consumer { redis = srv.url, socket = sock, account = acct, group = "app",
        consumer = "w1" })
      local list = assert(c:read { count = 100, block = 0.5 })
      assert.same(published, ids_of(list))
      for i, e in ipairs(list) do
        local r = e.report
        assert.is_nil(e.err)
        assert.equal("S" .. i, r.server_msg_id)
        assert.equal("U" .. i, r.user_msg_id)
        assert.equal("1", r.sub_id)
        assert.equal(4, r.msg_type)
        assert.equal(event(i).phone, r.phone)
        assert.equal(event(i).result, r.result)
        assert.equal(event(i).result == 0, r.ok)
        assert.equal("SKT", r.telecom)
        assert.equal("20260101120000", r.delivery_time)
        assert.equal("data " .. i, r.user_data)
        assert.equal("message " .. i, r.result_message)
        assert.equal("rec-" .. i, r.key)
        assert.equal(i % 3 == 0 and "failed" or "delivered", r.state)
        assert.is_nil(r.body)
        assert.is_nil(r.type)
      end
      assert.equal(5, c:pending())
      assert.equal(2, c:ack(list[1].id, list[2].id))
      assert.equal(3, c:pending())
      assert.equal(3, c:ack(list[3].id, list[4].id, list[5].id))
      assert.equal(0, c:pending())
      -- nothing new: an empty list, at once without block
      assert.same({}, assert(c:read { count = 10 }))
      c:close()
    end)
  end

  it("a duplicate (the same server_msg_id, or user_msg_id/sub_id without one) adds nothing", function()
    local acct = account()
    local pub = reports.publisher(conn, { account = acct })
    assert.is_true((pub:publish(event(1))))
    assert.is_false(pub:publish(event(1, { result = 9, user_data = "again" })))
    assert.is_true((pub:publish(event(2))))
    -- no ServerMsgId: deduplicated by UserMsgId/UserMsgSubId
    assert.is_true((pub:publish(event(3, { server_msg_id = "" }))))
    assert.is_false(pub:publish(event(3, { server_msg_id = "" })))
    assert.is_true((pub:publish(event(3, { server_msg_id = "", sub_id = "2" }))))
    assert.equal("U3/2", reports.dedup_id(event(3, { server_msg_id = "", sub_id = "2" })))
    local c = assert(reports.consumer { conn = conn, account = acct, group = "app", consumer = "w" })
    local list = assert(c:read { count = 100 })
    assert.equal(4, #list)
    assert.equal(0, list[1].report.result)
    assert.equal("data 1", list[1].report.user_data)
    assert.same({ "S1", "S2", "", "" }, { list[1].report.server_msg_id, list[2].report.server_msg_id,
      list[3].report.server_msg_id, list[4].report.server_msg_id })
    assert.same({ "1", "2" }, { list[3].report.sub_id, list[4].report.sub_id })
    -- the dedup mark has its expiry
    local ttl = tonumber(srv:command("TTL", "ksms:fleet:" .. acct .. ":seen:S1"):match("^:(%-?%d+)"))
    assert.is_true(ttl > 86000 and ttl <= 86400, tostring(ttl))
    -- an event with no id to dedup by is refused, not stored
    local added, err = pub:publish(event(4, { server_msg_id = "", user_msg_id = "" }))
    assert.is_nil(added)
    assert.is_true(errors.is(err, "protocol"))
    assert.equal("bad_report", err.code)
    assert.same({}, assert(c:read { count = 10 }))
    c:close()
  end)

  it("after dedup_ttl the same id is added again", function()
    local acct = account()
    local pub = reports.publisher(conn, { account = acct, dedup_ttl = 1 })
    assert.is_true((pub:publish(event(1))))
    assert.is_false(pub:publish(event(1)))
    helper.wait_until("the dedup mark to expire", 3, function()
      return srv:command("EXISTS", "ksms:fleet:" .. acct .. ":seen:S1") == ":0"
    end, 0.05)
    assert.is_true((pub:publish(event(1))))
    assert.is_false(pub:publish(event(1)))
    assert.equal(":2", srv:command("XLEN", "ksms:fleet:" .. acct .. ":reports"))
  end)

  it("when the XADD fails the dedup mark is not kept, so the report can be published later", function()
    local acct = account()
    local key = "ksms:fleet:" .. acct .. ":reports"
    assert.equal("+OK", srv:command("SET", key, "not a stream"))
    local pub = reports.publisher(conn, { account = acct })
    local added, err = pub:publish(event(1))
    assert.is_nil(added)
    assert.is_true(errors.is(err, "server"))
    assert.equal("WRONGTYPE", err.code)
    assert.equal(":0", srv:command("EXISTS", "ksms:fleet:" .. acct .. ":seen:S1"))
    assert.equal(":1", srv:command("DEL", key))
    assert.is_true((pub:publish(event(1))))
  end)

  it("a group created after reports were published still gets them; groups are independent", function()
    local acct = account()
    local pub = reports.publisher(conn, { account = acct })
    for i = 1, 3 do assert.is_true((pub:publish(event(i)))) end
    local a = assert(reports.consumer { redis = srv.url, account = acct, group = "billing", consumer = "x" })
    local b = assert(reports.consumer { redis = srv.url, account = acct, group = "audit", consumer = "x" })
    -- a second consumer() of an existing group (BUSYGROUP) is fine
    local a2 = assert(reports.consumer { redis = srv.url, account = acct, group = "billing", consumer = "y" })
    assert.equal(3, #assert(a:read { count = 10 }))
    assert.equal(3, #assert(b:read { count = 10 }))
    assert.same({}, assert(a2:read { count = 10 }))
    a:close(); b:close(); a2:close()
  end)

  it("two consumers of one group get distinct entries, together every one exactly once", function()
    local acct = account()
    local pub = reports.publisher(conn, { account = acct })
    local all = {}
    for i = 1, 40 do
      local added, id = pub:publish(event(i))
      assert.is_true(added)
      all[#all + 1] = id
    end
    local a = assert(reports.consumer { redis = srv.url, account = acct, group = "app", consumer = "a" })
    local b = assert(reports.consumer { redis = srv.url, account = acct, group = "app", consumer = "b" })
    local got, by = {}, { a = 0, b = 0 }
    local seen = {}
    for _ = 1, 20 do
      local la = assert(a:read { count = 7 })
      local lb = assert(b:read { count = 7 })
      for _, pair in ipairs { { la, "a" }, { lb, "b" } } do
        for _, e in ipairs(pair[1]) do
          assert.is_nil(seen[e.id], "twice: " .. e.id)
          seen[e.id] = pair[2]
          got[#got + 1] = e.id
          by[pair[2]] = by[pair[2]] + 1
        end
      end
      if #la == 0 and #lb == 0 then break end
    end
    table.sort(got, id_less)
    assert.same(all, got)
    assert.is_true(by.a > 0 and by.b > 0)
    assert.equal(40, by.a + by.b)
    -- each acknowledges its own
    local mine = { a = {}, b = {} }
    for id, who in pairs(seen) do table.insert(mine[who], id) end
    assert.equal(by.a, a:ack((table.unpack or unpack)(mine.a)))
    assert.equal(by.b, b:ack((table.unpack or unpack)(mine.b)))
    assert.equal(0, a:pending())
    a:close(); b:close()
  end)

  it("entries a consumer read and never acknowledged go to another one through claim after min_idle", function()
    local acct = account()
    local pub = reports.publisher(conn, { account = acct })
    for i = 1, 5 do assert.is_true((pub:publish(event(i)))) end
    local dead = assert(reports.consumer { redis = srv.url, account = acct, group = "app", consumer = "dead" })
    local taken = assert(dead:read { count = 3 })
    assert.equal(3, #taken)
    dead:close() -- dies without acknowledging
    local live = assert(reports.consumer { redis = srv.url, account = acct, group = "app", consumer = "live" })
    -- the rest is new to the group: read gives those, never the dead one's
    local rest = assert(live:read { count = 10 })
    assert.same({ "S4", "S5" }, { rest[1].report.server_msg_id, rest[2].report.server_msg_id })
    assert.equal(2, #rest)
    assert.equal(2, live:ack(rest[1].id, rest[2].id))
    -- not idle long enough yet
    local early = assert(live:claim { min_idle = 5 })
    assert.same({}, ids_of(early))
    assert.equal(3, live:pending())
    socket.sleep(0.25)
    local claimed = assert(live:claim { min_idle = 0.2, count = 100 })
    assert.same(ids_of(taken), ids_of(claimed))
    assert.equal("S1", claimed[1].report.server_msg_id)
    assert.equal(0, claimed[1].report.result)
    assert.same({}, claimed.deleted)
    -- claimed once: a second claim right away finds them not idle
    assert.same({}, ids_of(assert(live:claim { min_idle = 0.2 })))
    assert.equal(3, live:ack((table.unpack or unpack)(ids_of(claimed))))
    assert.equal(0, live:pending())
    live:close()
  end)

  it("maxlen trims the stream (approximately: whole nodes)", function()
    local acct = account()
    -- small nodes, so that ~ trims close to maxlen
    assert.equal("+OK", srv:command("CONFIG", "SET", "stream-node-max-entries", "10"))
    local pub = reports.publisher(conn, { account = acct, maxlen = 20 })
    for i = 1, 200 do assert.is_true((pub:publish(event(i)))) end
    local len = tonumber(srv:command("XLEN", "ksms:fleet:" .. acct .. ":reports"):match("^:(%d+)"))
    assert.is_true(len >= 20 and len <= 30, tostring(len))
    local c = assert(reports.consumer { conn = conn, account = acct, group = "app", consumer = "w" })
    local list = assert(c:read { count = 1000 })
    assert.equal(len, #list)
    assert.equal("S200", list[#list].report.server_msg_id)
    assert.equal("S" .. (201 - len), list[1].report.server_msg_id)
    assert.equal("+OK", srv:command("CONFIG", "SET", "stream-node-max-entries", "100"))
    c:close()
  end)

  it("reads entries written by hand (missing fields, huge values, a non-numeric result) without raising", function()
    local acct = account()
    local key = "ksms:fleet:" .. acct .. ":reports"
    local c = assert(reports.consumer { conn = conn, account = acct, group = "app", consumer = "w" })
    local huge = string.rep("h", 1024 * 1024)
    assert(conn:call("XADD", key, "*", "x", "y"))
    assert(conn:call("XADD", key, "*", "server_msg_id", "S1", "result", "abc", "msg_type", "1e999"))
    assert(conn:call("XADD", key, "*", "server_msg_id", huge, "result", "0", "user_data", huge, "ok", "yes"))
    assert(conn:call("XADD", key, "*", "server_msg_id", "S3", "result", "99999999999999999999"))
    local many = { "XADD", key, "*", "server_msg_id", "S4", "result", "-1" }
    for i = 1, 1000 do many[#many + 1] = "f" .. i; many[#many + 1] = "v" end
    assert(conn:call((table.unpack or unpack)(many)))
    local ok, list, err = pcall(c.read, c, { count = 10 })
    assert.is_true(ok, tostring(list))
    assert(list, tostring(err))
    assert.equal(5, #list)
    assert.equal("bad_report", list[1].err.code)
    assert.equal("y", list[1].report.x)
    assert.is_true(errors.is(list[2].err, "protocol"))
    assert.is_nil(list[2].report.result)
    assert.is_nil(list[2].report.msg_type)
    assert.equal("S1", list[2].report.server_msg_id)
    assert.is_nil(list[3].err)
    assert.is_true(#list[3].report.server_msg_id <= reports.FIELD_MAX)
    assert.is_true(#list[3].report.user_data <= reports.FIELD_MAX)
    assert.is_true(list[3].report.ok) -- computed from result, not the entry's "ok"
    assert.is_nil(list[4].report.result) -- too long to be a whole number
    assert.is_truthy(list[4].err)
    assert.equal(-1, list[5].report.result)
    local fields = 0
    for _ in pairs(list[5].report) do fields = fields + 1 end
    assert.is_true(fields <= reports.MAX_FIELDS + 1, tostring(fields)) -- + ok
    -- all of them can be acknowledged
    assert.equal(5, c:ack((table.unpack or unpack)(ids_of(list))))
    c:close()
  end)

  it("a blocking read waits past the connection's read_timeout and answers an empty list", function()
    local acct = account()
    local c = assert(reports.consumer { redis = srv.url, account = acct, group = "app", consumer = "w",
      read_timeout = 0.2 })
    local t0 = socket.gettime()
    local list, err = c:read { block = 0.6 }
    assert.is_nil(err)
    assert.same({}, list)
    assert.is_true(socket.gettime() - t0 >= 0.5)
    -- the connection's own read_timeout is back: still usable
    local pub = reports.publisher(conn, { account = acct })
    assert.is_true((pub:publish(event(1))))
    assert.equal(1, #assert(c:read { block = 0.6 }))
    c:close()
  end)

  it("Redis down: publish, read, ack and claim answer nil, err (retryable) and never raise; a URL dials again", function()
    local own = rc.start()
    local port, dir = own.port, own.dir
    local c1 = assert(redis.connect { url = own.url })
    local given = reports.publisher(c1, { account = "down" })
    local dialled = reports.publisher(nil, { redis = own.url, account = "down", connect_timeout = 1 })
    local c = assert(reports.consumer { redis = own.url, account = "down", group = "app", consumer = "w",
      connect_timeout = 1 })
    assert.is_true((given:publish(event(1))))
    assert.is_true((dialled:publish(event(2))))
    own:stop(true) -- keep the directory for the restart
    wait_down(own)
    for _, pub in ipairs { given, dialled } do
      local ok, added, err = pcall(pub.publish, pub, event(3))
      assert.is_true(ok, tostring(added))
      assert.is_nil(added)
      assert.is_true(errors.is(err, "server", "network"))
      assert.is_true(err.retryable)
      -- a URL's handle says Redis is unreachable; a given connection's own error comes as it is
      if pub == dialled then assert.matches("unreachable", tostring(err)) end
    end
    for _, call in ipairs { function() return c:read { block = 0.2 } end, function() return c:ack("1-0") end,
        function() return c:claim { min_idle = 0 } end, function() return c:pending() end } do
      local ok, v, err = pcall(call)
      assert.is_true(ok, tostring(v))
      assert.is_nil(v)
      assert.is_true(errors.is(err, "server"))
      assert.is_true(err.retryable)
    end
    -- back (without persistence: empty); the URL ones dial again, and the
    -- consumer recreates its lost group
    local again = rc.start { port = port, dir = dir }
    assert.is_true((dialled:publish(event(4))))
    local list = assert(c:read { count = 10 })
    assert.equal(1, #list)
    assert.equal("S4", list[1].report.server_msg_id)
    -- the given connection stays closed: the binder replaces it
    assert.is_nil((given:publish(event(5))))
    c:close(); dialled:close(); c1:close()
    again:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("Redis unreachable at start: consumer() answers nil, err at once", function()
    local port = helper.free_port()
    local t0 = socket.gettime()
    local c, err = reports.consumer { redis = "redis://127.0.0.1:" .. port .. "/0", account = "a",
      group = "g", connect_timeout = 1 }
    assert.is_nil(c)
    assert.is_true(errors.is(err, "server"))
    assert.equal("unavailable", err.code)
    assert.is_true(err.retryable)
    assert.is_true(socket.gettime() - t0 < 1.5)
  end)

  it("misuse raises at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline
    local ok, msg = pcall(reports.publisher, conn, {})
    assert.is_false(ok)
    assert.matches("account is required", msg)
    assert.matches("fleet_reports_spec.lua:" .. (line + 1), msg, 1, true)
    assert.has_error(function() reports.publisher(conn, { account = "a", dedupttl = 5 }) end)
    assert.has_error(function() reports.publisher(conn, { account = "a", dedup_ttl = "5" }) end)
    assert.has_error(function() reports.publisher(conn, { account = "a", maxlen = 0 }) end)
    assert.has_error(function() reports.publisher(conn, { account = "a b" }) end)
    assert.has_error(function() reports.publisher(nil, { account = "a" }) end)
    assert.has_error(function() reports.publisher("redis://x", { account = "a" }) end)
    assert.has_error(function() reports.publisher(conn, { account = "a", redis = srv.url }) end)
    assert.has_error(function() reports.publisher(nil, { account = "a", redis = "http://x" }) end)
    local pub = reports.publisher(conn, { account = account() })
    assert.has_error(function() pub:publish("report") end)
    assert.has_error(function() pub:publish(event(1), "extra") end)
    assert.has_error(function() pub:publish(event(1), { key = {} }) end)
    assert.has_error(function() pub:publish(event(1), { result = "5" }) end)
    assert.has_error(function() pub:publish(event(1), { n = 0 / 0 }) end)
    assert.has_error(function() pub:publish(event(1), { ["a b"] = "5" }) end)
    assert.has_error(function() reports.consumer() end)
    assert.has_error(function() reports.consumer { conn = conn, group = "g" } end)
    assert.has_error(function() reports.consumer { conn = conn, account = "a" } end)
    assert.has_error(function() reports.consumer { conn = conn, account = "a", group = "g", gruop = "x" } end)
    assert.has_error(function() reports.consumer { conn = conn, account = "a", group = "g", socket = "udp" } end)
    assert.has_error(function() reports.consumer { account = "a", group = "g" } end)
    local c = assert(reports.consumer { conn = conn, account = account(), group = "g", consumer = "w" })
    assert.has_error(function() c:read { count = "10" } end)
    assert.has_error(function() c:read { count = 0 } end)
    assert.has_error(function() c:read { block = -1 } end)
    assert.has_error(function() c:read { blok = 1 } end)
    assert.has_error(function() c:ack(1) end)
    assert.has_error(function() c:claim { min_idle = -1 } end)
    assert.has_error(function() conn:set_read_timeout(0) end)
    -- nothing was published by the refused calls
    assert.same({}, assert(c:read { count = 10 }))
    c:close()
  end)
end)
