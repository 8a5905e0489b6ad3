-- bench/fleet.lua: ksms.oneshot.fleet with Speed 1000 granted. A real
-- redis-server, the fake OneShot server (Speed 1000), BENCH_BINDERS (3)
-- binder processes (examples/fleet/binder.lua: one holds, the others stand
-- by) and three producer processes (examples/fleet/producer.lua) that
-- enqueue BENCH_MESSAGES (10,000) messages between them, in batches of
-- BENCH_BATCH (1: one ob:enqueue per message) as fast as Redis takes them.
--
-- Printed, in one run:
-- * first the baseline of this machine: the same messages from one
--   ksms.oneshot.session (no Redis, no fleet) to the same fake with the
--   same settings, its rate at the fake and its 903/11 answers;
-- * the rate at the fake from its first to its last arrival beside the
--   granted Speed, the baseline (goal: at least 0.98 of it), the busiest
--   1-second window and the 903/11 answers (goal: zero);
-- * Redis round trips per message, counted in each process (every
--   ksms.redis pipeline, call and eval is one): the holder's, the
--   producers' and the standbys'; and Redis INFO commandstats calls per
--   message over the run (the commands inside scripts count there too).
-- BENCH_REPORTS=0 turns the fake's delivery reports off (on by default:
-- the holder publishes each to the report stream); BENCH_PACE_MARGIN sets
-- the binders' pace_margin (the protocol's 0.015 by default).
--
-- Run with `make bench-fleet` (redis-server).
package.path = "spec/?.lua;" .. package.path

-- A child process: bench/fleet.lua binder|producer ARGS... runs the
-- example with every Redis round trip counted, then prints
-- "ROUNDTRIPS <name> <round trips> <commands>".
local mode = arg[1]
if mode == "binder" or mode == "producer" then
  local redis = require "ksms.redis"
  local connect = redis.connect
  local trips, commands = 0, 0
  -- BENCH_PROFILE=1: the round trips and their time by the ksms line
  -- (outside ksms.redis and the stores' wrappers) that made them.
  local profile = os.getenv("BENCH_PROFILE") == "1" and {} or nil
  local clock = require("ksms.core").monotonic
  local function site()
    for level = 3, 12 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      local src = info.short_src
      if not src:find("ksms/redis%.lua") and not src:find("ksms/outbox/redis%.lua") then
        return src:gsub("^.*lua/ksms/", "") .. ":" .. info.currentline
      end
    end
    return "?"
  end
  redis.connect = function(o)
    local c, err = connect(o)
    if c then
      local pipeline = c.pipeline
      -- call and eval go through the connection's pipeline: one round trip each.
      c.pipeline = function(self, list)
        trips, commands = trips + 1, commands + #list
        if not profile then return pipeline(self, list) end
        local t = clock()
        local a, b = pipeline(self, list)
        local where = site()
        local e = profile[where] or { n = 0, s = 0 }
        profile[where], e.n, e.s = e, e.n + 1, e.s + clock() - t
        return a, b
      end
    end
    return c, err
  end
  local script = "examples/fleet/" .. mode .. ".lua"
  local name = mode == "binder" and arg[3] or arg[4]
  local unpack = table.unpack or unpack
  arg = { select(2, unpack(arg)) }
  dofile(script)
  io.stdout:write(("ROUNDTRIPS %s %d %d\n"):format(name, trips, commands))
  if profile then
    local list = {}
    for where, e in pairs(profile) do list[#list + 1] = { where = where, n = e.n, s = e.s } end
    table.sort(list, function(a, b) return a.s > b.s end)
    for i = 1, math.min(#list, 12) do
      io.stdout:write(("PROFILE %s %s %d round trips, %.3f s, %.0f us each\n"):format(name, list[i].where,
        list[i].n, list[i].s, list[i].s / list[i].n * 1e6))
    end
  end
  os.exit(0)
end

local cjson = require "cjson"
local core = require "ksms.core"
local fake_control = require "fake_control"
local redis_control = require "redis_control"

local MESSAGES = tonumber(os.getenv("BENCH_MESSAGES") or "") or 10000
local BINDERS = tonumber(os.getenv("BENCH_BINDERS") or "") or 3
local BATCH = tonumber(os.getenv("BENCH_BATCH") or "") or 1
local REPORTS = os.getenv("BENCH_REPORTS") ~= "0"
local SPEED, PRODUCERS, ACCOUNT = 1000, 3, "bench"
local LUA = os.getenv("BENCH_LUA") or arg[-1] or "lua5.4"
local now = core.monotonic

local H = require "helper" -- spec/helper.lua: the specs' process tools
local q, read_file, alive = H.shell_quote, H.file_or_empty, H.alive
local function wait(pred, seconds)
  local deadline = now() + seconds
  while not pred() do
    if now() > deadline then return false end
    core.sleep(0.05)
  end
  return true
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. q(dir)))
local procs = {}

local function spawn(name, args, password_file)
  local p = H.spawn_logged(dir, name, LUA, "bench/fleet.lua", args, password_file)
  procs[#procs + 1] = p
  return p
end

-- Redis INFO commandstats: the sum of every command's calls.
local function redis_calls(srv)
  local redis = require "ksms.redis"
  local c = assert(redis.connect { url = srv.url })
  local info = assert(c:call("INFO", "commandstats"))
  c:close()
  local total = 0
  for n in info:gmatch("cmdstat_[^:]+:calls=(%d+)") do total = total + tonumber(n) end
  return total
end

local function round_trips(p)
  local t, c = (read_file(p.log) or ""):match("ROUNDTRIPS %S+ (%d+) (%d+)")
  return tonumber(t), tonumber(c)
end

-- The baseline: one plain session sends the same number of messages.
local function session_run(fake)
  local session = require "ksms.oneshot.session"
  local s = session.new(fake:session_options { queue_limit = MESSAGES + 1, on_report = function() end })
  assert(s:connect())
  for i = 1, MESSAGES do
    assert(s:submit({ to = ("010%08d"):format(10000000 + i), from = "15666639",
      text = ("[ksms] s #%d: 주문이 접수되었습니다."):format(i) }, function() end))
  end
  assert(s:flush(MESSAGES / SPEED * 2 + 30))
  if REPORTS then wait(function() local st = fake:stats() return st.reports_acked >= st.accepted end, 30) end
  s:close()
  return fake:stats()
end

local srv, fake
local ok, err = pcall(function()
  print(("OneShot fleet, %s"):format(_VERSION .. (jit and (" " .. jit.version) or "")))
  srv = redis_control.start()
  -- No per-message records at the fake: it stays small, so pauses of its
  -- own garbage collector do not bunch its arrival stamps.
  local state = { speed = SPEED, record_messages = false, reports = REPORTS, report_delay_ms = 20 }
  fake = fake_control.start("oneshot", { interp = LUA, state = state })
  local base = session_run(fake)
  local base_rate = (base.accepted - 1) / (base.last_arrival - base.first_arrival)
  print(("Baseline, one ksms.oneshot.session (no Redis), %d messages, reports %s:"):format(MESSAGES,
    REPORTS and "on" or "off"))
  print(("  achieved %9.1f messages/s at the fake  %.3fx of the granted Speed; busiest 1-second window %d; 903/11 answers: %d")
    :format(base_rate, base_rate / SPEED, base.max_per_second, base.speed_errors))
  fake:reset()
  fake:state(state)
  local opts = fake:session_options { redis = srv.url, account = ACCOUNT, lock_ttl = 10, reconnect_delay = 0.5,
    queue_limit = 100000 }
  opts.pace_margin = tonumber(os.getenv("BENCH_PACE_MARGIN") or "")
  local password = opts.password
  opts.password = nil
  local config, pwfile = dir .. "/fleet.json", dir .. "/password"
  local f = assert(io.open(config, "wb")); f:write(cjson.encode(opts)); f:close()
  f = assert(io.open(pwfile, "wb")); f:write(password); f:close()

  local binders = {}
  for i = 1, BINDERS do binders[i] = spawn("b" .. i, { "binder", config, "b" .. i }, pwfile) end
  assert(wait(function() return fake:stats().binds >= 1 end, 15), "no binder bound")
  local calls0, t0 = redis_calls(srv), now()
  local per = math.ceil(MESSAGES / PRODUCERS)
  local producers = {}
  for i = 1, PRODUCERS do
    local n = i < PRODUCERS and per or MESSAGES - per * (PRODUCERS - 1)
    producers[i] = spawn("p" .. i, { "producer", srv.url, ACCOUNT, "p" .. i, n, 0, BATCH })
  end
  local limit = MESSAGES / SPEED * 2 + 30
  assert(wait(function() return fake:stats().accepted >= MESSAGES end, limit), "not every message reached the fake")
  if REPORTS then
    wait(function() local st = fake:stats() return st.reports_acked >= st.accepted end, 30)
  end
  local elapsed = now() - t0
  local calls1 = redis_calls(srv)
  local st = fake:stats()
  for _, p in ipairs(binders) do os.execute("kill -TERM " .. p.pid) end
  for _, p in ipairs(procs) do wait(function() return not alive(p.pid) end, 15) end

  local holder_trips, holder_cmds, standby_trips, producer_trips = 0, 0, 0, 0
  for _, p in ipairs(binders) do
    local t, c = round_trips(p)
    local sent = tonumber((read_file(p.log) or ""):match("sent=(%d+)")) or 0
    if not t then error(p.name .. " printed no round trips: " .. (read_file(p.log) or "")) end
    if sent > 0 then holder_trips, holder_cmds = holder_trips + t, holder_cmds + c
    else standby_trips = standby_trips + t end
  end
  local enqueue_secs = 0
  for _, p in ipairs(producers) do
    local t = round_trips(p)
    if not t then error(p.name .. " printed no round trips: " .. (read_file(p.log) or "")) end
    producer_trips = producer_trips + t
    enqueue_secs = math.max(enqueue_secs, tonumber((read_file(p.log) or ""):match("seconds=([%d.]+)")) or 0)
  end

  local rate = (st.accepted - 1) / (st.last_arrival - st.first_arrival)
  print(("Speed %d granted, %d binder processes, %d producer processes, %d messages (batches of %d), reports %s:")
    :format(SPEED, BINDERS, PRODUCERS, MESSAGES, BATCH, REPORTS and "on" or "off"))
  print(("  achieved %9.1f messages/s at the fake  %.3fx of the granted Speed (goal >= 0.98: %s), %.3fx the baseline's")
    :format(rate, rate / SPEED, rate / SPEED >= 0.98 and "met" or "MISSED", rate / base_rate))
  print(("  busiest 1-second window %d; 903/11 answers: %d (goal 0: %s); binds %d, refused as duplicate %d")
    :format(st.max_per_second, st.speed_errors, st.speed_errors == 0 and "met" or "MISSED", st.binds,
      st.duplicate_binds))
  print(("  producers enqueued them in %.2f s (%.0f messages/s together)"):format(enqueue_secs,
    MESSAGES / enqueue_secs))
  print(("  Redis round trips per message: holder %.2f (%.2f commands), producers %.2f, standbys %.3f")
    :format(holder_trips / MESSAGES, holder_cmds / MESSAGES, producer_trips / MESSAGES, standby_trips / MESSAGES))
  print(("  Redis INFO commandstats: %.2f calls per message over %.1f s (commands run inside scripts count)")
    :format((calls1 - calls0) / MESSAGES, elapsed))
  for _, p in ipairs(binders) do
    for line in (read_file(p.log) or ""):gmatch("PROFILE ([^\n]*)") do print("  " .. line) end
  end
end)

for _, p in ipairs(procs) do
  if alive(p.pid) then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
end
if fake then fake:stop() end
if srv then srv:stop() end
os.execute("rm -rf " .. q(dir))
if not ok then
  io.stderr:write("bench/fleet.lua: ", tostring(err), "\n")
  os.exit(1)
end
