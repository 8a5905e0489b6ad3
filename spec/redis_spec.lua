-- ksms.redis against a real redis-server (spec/redis_control.lua starts it on
-- 127.0.0.1 with a free port and a temp dir), over the core's TCP client and
-- LuaSocket. (The cosocket adapter runs inside nginx, in the nginx specs.)
local redis = require "ksms.redis"
local errors = require "ksms.errors"
local core = require "ksms.core"
local rc = require "redis_control"
local socket = require "socket"

local NULL = redis.null

for _, sock in ipairs { "core", "luasocket" } do
  describe("ksms.redis over " .. sock, function()
    local srv

    setup(function() srv = rc.start() end)
    teardown(function() rc.stop_all() end)

    local function connect(opts)
      opts = opts or {}
      opts.url = opts.url or srv.url
      opts.socket = sock
      return redis.connect(opts)
    end

    it("calls: status, bulk, nil, integer, array; a server error is nil, err", function()
      local c = assert(connect())
      assert.equal("OK", c:call("SET", "k", "v"))
      assert.equal("v", c:call("GET", "k"))
      assert.equal(NULL, c:call("GET", "missing"))
      assert.equal(3, c:call("RPUSH", "list" .. sock, "a", 2, 3.5))
      assert.same({ n = 3, "a", "2", "3.5" }, c:call("LRANGE", "list" .. sock, 0, -1))
      local v, err = c:call("INCR", "k")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "server"))
      assert.equal("ERR", err.code)
      assert.equal("redis", err.provider)
      assert.is_false(err.retryable)
      v, err = c:call("NOSUCHCOMMAND")
      assert.is_nil(v)
      assert.equal("ERR", err.code)
      -- the connection is still usable after a server error
      assert.equal("PONG", c:call("PING"))
      c:close()
      c:close()
      assert.is_true(c:closed())
    end)

    it("pipelines: one write, a reply for each, server errors as values", function()
      local c = assert(connect())
      local r = assert(c:pipeline {
        { "DEL", "p" }, { "INCR", "p" }, { "INCR", "p" }, { "HGET", "p", "f" }, { "GET", "p" },
      })
      assert.equal(5, r.n)
      assert.equal(1, r[2])
      assert.equal(2, r[3])
      assert.matches("^WRONGTYPE", r[4].err)
      assert.equal("2", r[5])
      assert.same({ n = 0 }, c:pipeline {})
      -- a large pipeline (more than a socket buffer both ways)
      local cmds = {}
      for i = 1, 5000 do cmds[i] = { "SET", "pk" .. i, string.rep("x", 100) } end
      r = assert(c:pipeline(cmds))
      assert.equal(5000, r.n)
      for i = 1, 5000 do assert.equal("OK", r[i]) end
      c:close()
    end)

    it("eval: EVALSHA after the first load, EVAL again on NOSCRIPT", function()
      local c = assert(connect())
      local script = "return { KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1, redis.call('PING') }"
      assert.same({ n = 4, "a", "b", 8, "PONG" }, c:eval(script, { "a" }, { "b", 7 }))
      assert.equal("OK", c:call("CONFIG", "RESETSTAT"))
      assert.same({ n = 4, "x", "y", 2, "PONG" }, c:eval(script, { "x" }, { "y", 1 }))
      local stats = c:call("INFO", "commandstats")
      assert.matches("cmdstat_evalsha:calls=1", stats)
      assert.is_nil(stats:match("cmdstat_eval:calls"))
      -- the server forgets its scripts (restart, flush): NOSCRIPT, then EVAL
      assert.equal("OK", c:call("SCRIPT", "FLUSH"))
      assert.same({ n = 4, "z", "w", 3, "PONG" }, c:eval(script, { "z" }, { "w", 2 }))
      stats = c:call("INFO", "commandstats")
      assert.matches("cmdstat_eval:calls=1", stats)
      -- a script's error is nil, err
      local v, err = c:eval("return redis.call('INCR', KEYS[1])", { "k" })
      assert.is_nil(v)
      assert.is_true(errors.is(err, "server"))
      assert.equal("OK", c:call("SET", "k", "v"))
      v, err = c:eval("return redis.call('INCR', KEYS[1])", { "k" })
      assert.is_nil(v)
      assert.is_true(errors.is(err, "server"))
      c:close()
    end)

    it("selects the URL's database", function()
      local c3 = assert(connect { url = "redis://127.0.0.1:" .. srv.port .. "/3" })
      local c0 = assert(connect { url = "redis://127.0.0.1:" .. srv.port })
      assert.equal("OK", c3:call("SET", "only-in-3", "yes"))
      assert.equal(NULL, c0:call("GET", "only-in-3"))
      assert.equal("yes", c3:call("GET", "only-in-3"))
      assert.equal(1, c3:call("EXISTS", "only-in-3"))
      assert.matches("/3$", tostring(c3))
      local c99, err = connect { url = "redis://127.0.0.1:" .. srv.port .. "/99" }
      assert.is_nil(c99)
      assert.is_true(errors.is(err, "server"))
      c3:close(); c0:close()
    end)

    it("fails fast and clearly when Redis is unreachable", function()
      local port = require("helper").free_port()
      local t = socket.gettime()
      local c, err = connect { url = "redis://127.0.0.1:" .. port .. "/0", connect_timeout = 2 }
      assert.is_nil(c)
      assert.is_true(errors.is(err, "network"), tostring(err))
      assert.is_true(err.retryable)
      assert.is_false(err.maybe_sent)
      assert.matches("127.0.0.1:" .. port, tostring(err))
      assert.is_true(socket.gettime() - t < 1)
    end)

    it("times out a read: timeout error, maybe_sent, the connection closed", function()
      local c = assert(connect { read_timeout = 0.3 })
      local t = socket.gettime()
      local v, err = c:call("BLPOP", "never-pushed", 5)
      assert.is_nil(v)
      assert.is_true(errors.is(err, "timeout"), tostring(err))
      assert.is_true(err.maybe_sent)
      assert.is_true(socket.gettime() - t < 2)
      assert.is_true(c:closed())
      v, err = c:call("PING")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "network"))
      assert.is_false(err.maybe_sent)
    end)

    it("raises on misuse", function()
      local c = assert(connect())
      assert.has_error(function() c:call() end)
      assert.has_error(function() c:call("SET", "k", {}) end)
      assert.has_error(function() c:call("SET", "k", true) end)
      assert.has_error(function() c:pipeline { "GET" } end)
      assert.has_error(function() c:pipeline { { "GET", false } } end)
      assert.has_error(function() c:eval(42) end)
      assert.has_error(function() redis.connect { url = "http://x" } end)
      assert.has_error(function() redis.connect { url = "redis://h:99999/0" } end)
      assert.has_error(function() redis.connect { url = "redis://h:1/x" } end)
      assert.has_error(function() redis.connect { socket = "nope" } end)
      assert.has_error(function() redis.connect { urll = "redis://h" } end)
      assert.has_error(function() redis.connect { read_timeout = "5" } end)
      -- nothing was written by the refused calls
      assert.equal("PONG", c:call("PING"))
      c:close()
    end)
  end)

  describe("ksms.redis over " .. sock .. " with a password", function()
    local srv
    local PASSWORD = "pw-" .. core.hex(core.random(8))

    setup(function() srv = rc.start { password = PASSWORD } end)
    teardown(function() rc.stop_all() end)

    it("authenticates with the URL's password or the option, never showing it", function()
      local url = "redis://:" .. PASSWORD .. "@127.0.0.1:" .. srv.port .. "/2"
      local c = assert(redis.connect { url = url, socket = sock })
      assert.equal("OK", c:call("SET", "a", "1"))
      assert.is_nil(tostring(c):find(PASSWORD, 1, true))
      c:close()
      c = assert(redis.connect { url = "redis://127.0.0.1:" .. srv.port, password = PASSWORD, socket = sock })
      assert.equal(NULL, c:call("GET", "a")) -- db 0
      c:close()
    end)

    it("a wrong or missing password: an auth error without the password", function()
      local bad = "wrong-" .. PASSWORD
      local c, err = redis.connect { url = "redis://:" .. bad .. "@127.0.0.1:" .. srv.port, socket = sock }
      assert.is_nil(c)
      assert.is_true(errors.is(err, "auth"), tostring(err))
      assert.is_nil(tostring(err):find(bad, 1, true))
      assert.is_nil(tostring(err):find(PASSWORD, 1, true))
      c = assert(redis.connect { url = "redis://127.0.0.1:" .. srv.port, socket = sock })
      local v
      v, err = c:call("GET", "a")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "auth"), tostring(err))
      assert.equal("NOAUTH", err.code)
      c:close()
    end)
  end)

  describe("ksms.redis over " .. sock .. " when the server dies", function()
    teardown(function() rc.stop_all() end)

    it("mid-call: a network error with maybe_sent, fast", function()
      local srv = rc.start()
      local c = assert(redis.connect { url = srv.url, socket = sock, read_timeout = 10 })
      assert.equal("PONG", c:call("PING"))
      -- BLPOP waits at the server; the server is killed while it waits.
      os.execute("(sleep 0.3; kill -9 " .. srv.pid .. ") >/dev/null 2>&1 &")
      local t = socket.gettime()
      local v, err = c:call("BLPOP", "never", 8)
      assert.is_nil(v)
      assert.is_true(errors.is(err, "network"), tostring(err))
      assert.is_true(err.retryable)
      assert.is_true(err.maybe_sent)
      assert.is_true(socket.gettime() - t < 3)
      assert.is_true(c:closed())
      -- and connecting again while it is down is a clear error (once the
      -- kernel has closed its listening socket too)
      require("helper").wait_until("the server's port to close", 3, function()
        return srv:command("PING") == nil
      end, 0.05)
      local c2, err2 = redis.connect { url = srv.url, socket = sock, connect_timeout = 1 }
      assert.is_nil(c2)
      assert.is_true(errors.is(err2, "network"))
      srv:stop()
    end)
  end)
end

-- A hostile "server": a process that accepts one connection, reads the
-- command, then writes `reply` in pieces of `piece` bytes every `gap`
-- seconds, and holds the connection for a while.
local function hostile(reply, piece, gap)
  local interp = os.getenv("KSMS_TEST_LUA") or "lua5.4"
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
local socket = require "socket"
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname(); print(port); io.stdout:flush()
srv:settimeout(10)
local c = srv:accept()
if not c then return end
c:settimeout(5)
c:receive(1)
local reply, piece, gap = %q, %d, %f
for i = 1, #reply, piece do
  if not c:send(reply:sub(i, i + piece - 1)) then break end
  if gap > 0 then socket.sleep(gap) end
end
socket.sleep(1)
c:close()
]]):format(reply, piece, gap))
  f:close()
  local pipe = assert(io.popen(interp .. " " .. script .. " 2>/dev/null"))
  local port = tonumber(pipe:read("*l"))
  return port, function() pipe:close(); os.remove(script) end
end

for _, sock in ipairs { "core", "luasocket" } do
  describe("ksms.redis over " .. sock .. " against a hostile server", function()
    it("bytes that are not RESP: a protocol error, the connection closed", function()
      local port, done = hostile("HTTP/1.1 200 OK\r\n\r\n", 100, 0)
      local c = assert(redis.connect { url = "redis://127.0.0.1:" .. port, socket = sock })
      local v, err = c:call("PING")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "protocol"), tostring(err))
      assert.equal("bad_reply", err.code)
      assert.is_true(c:closed())
      c:close()
      done()
    end)

    it("a huge announced bulk string: too_large at max_bytes, not memory", function()
      local port, done = hostile("$99999999999\r\n" .. string.rep("x", 20000), 1000, 0)
      local c = assert(redis.connect { url = "redis://127.0.0.1:" .. port, socket = sock, max_bytes = 4096 })
      local v, err = c:call("GET", "k")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "protocol"), tostring(err))
      assert.equal("too_large", err.code)
      done()
    end)

    it("a server trickling bytes: the call ends at read_timeout", function()
      local port, done = hostile("+" .. string.rep("a", 30), 1, 0.05)
      local c = assert(redis.connect { url = "redis://127.0.0.1:" .. port, socket = sock, read_timeout = 0.5 })
      local t = socket.gettime()
      local v, err = c:call("PING")
      assert.is_nil(v)
      assert.is_true(errors.is(err, "timeout"), tostring(err))
      assert.is_true(err.maybe_sent)
      local took = socket.gettime() - t
      assert.is_true(took >= 0.4 and took < 1.5, ("took %.2fs"):format(took))
      done()
    end)
  end)
end

describe("ksms.redis.handle", function()
  teardown(function() rc.stop_all() end)

  it("dials on first use, says 'unavailable' while the server is down, and dials again once it is back", function()
    local srv = rc.start { password = "h4ndle-secret" }
    local h = redis.handle { url = "redis://:h4ndle-secret@127.0.0.1:" .. srv.port .. "/0", name = "the test store",
      connect_timeout = 1, read_timeout = 1 }
    assert.is_nil(h.conn) -- nothing connects at creation
    assert.equal("OK", h:call("SET", "k", "v"))
    assert.equal("v", h:eval("return redis.call('GET', KEYS[1])", { "k" }, {}))
    local replies = assert(h:pipeline { { "INCR", "n" }, { "INCR", "n" } })
    assert.equal(2, replies[2])
    local port, dir = srv.port, srv.dir
    srv:stop(true)
    local v, err = h:call("GET", "k")
    assert.is_nil(v)
    assert.equal("server", err.category)
    assert.equal("unavailable", err.code)
    assert.is_true(err.retryable)
    assert.matches("the test store is unreachable", tostring(err))
    assert.is_nil(tostring(err):find("h4ndle-secret", 1, true))
    assert.is_nil(tostring(h):find("h4ndle-secret", 1, true))
    local again = rc.start { port = port, dir = dir, password = "h4ndle-secret" }
    assert.equal("PONG", h:call("PING"))
    -- a server's answer stays what it is
    assert.equal("OK", h:call("SET", "s", "text"))
    local _, serr = h:call("INCR", "s")
    assert.equal("server", serr.category)
    assert.equal("ERR", serr.code)
    h:close()
    local _, cerr = h:call("PING")
    assert.equal("closed", cerr.code)
    again:stop()
  end)

  it("refuses misuse", function()
    assert.has_error(function() redis.handle { url = "http://x" } end)
    assert.has_error(function() redis.handle { url = "redis://x", socket = "udp" } end)
    assert.has_error(function() redis.handle { url = "redis://x", bogus = 1 } end)
  end)
end)

describe("redis_control", function()
  teardown(function() rc.stop_all() end)

  it("restarts a killed server on its directory: with AOF nothing acknowledged is lost", function()
    local srv = rc.start { aof = true }
    local c = assert(redis.connect { url = srv.url })
    for i = 1, 100 do assert.equal("OK", c:call("SET", "aof" .. i, i)) end
    c:close()
    srv:kill("KILL")
    require("helper").wait_until("the server to die", 3, function() return srv:command("PING") == nil end, 0.05)
    srv:stop(true) -- keeps the directory
    local again = rc.start { aof = true, dir = srv.dir, port = srv.port }
    c = assert(redis.connect { url = again.url })
    assert.equal("100", c:call("GET", "aof100"))
    assert.equal(100, #c:call("KEYS", "aof*"))
    c:close()
    again:stop()
    os.execute("rm -rf '" .. srv.dir .. "'")
  end)
end)
