-- examples/fleet/demo.lua (make demo-fleet): a OneShot fleet on one
-- machine. Starts a real redis-server and the fake OneShot server (spec/,
-- both on 127.0.0.1), three binder processes (examples/fleet/binder.lua)
-- for one account and three producer processes (examples/fleet/producer.lua)
-- enqueuing into its outbox. When a third of the messages are out, the
-- binder holding the connection is killed with kill -9; a standby takes
-- over when the lock expires. Then it prints who held the connection when,
-- what became of every message, what the fake server saw (binds, the
-- busiest second beside Speed) and the reports read back from the Redis
-- stream through a consumer group, checks them, and stops everything.
-- Exit status 0 when every check holds. No credentials needed.
--
-- KSMS_DEMO_MESSAGES (per producer, 80), KSMS_DEMO_SPEED (50) size it;
-- KSMS_DEMO_LUA is the interpreter of the processes (default: this one).
package.path = "spec/?.lua;" .. package.path
local cjson = require "cjson"
local core = require "ksms.core"
local fleet = require "ksms.oneshot.fleet"
local fake_control = require "fake_control"
local redis_control = require "redis_control"

local PER_PRODUCER = tonumber(os.getenv("KSMS_DEMO_MESSAGES") or "") or 80
local SPEED = tonumber(os.getenv("KSMS_DEMO_SPEED") or "") or 50
local LUA = os.getenv("KSMS_DEMO_LUA") or arg[-1] or "lua5.4"
local ACCOUNT = "demo"
local BINDERS, PRODUCERS = { "b1", "b2", "b3" }, { "p1", "p2", "p3" }
local TOTAL = PER_PRODUCER * #PRODUCERS
local LOCK_TTL = 2
local now = core.monotonic
local t0 = now()

-- The specs' process tools (spec/helper.lua): quoting, files, pids.
local H = require "helper"
local q, read_file, alive = H.shell_quote, H.file_or_empty, H.alive
local function at() return now() - t0 end
local function say(fmt, ...) io.stdout:write(("[%5.2f] "):format(at()), fmt:format(...), "\n") end
io.stdout:setvbuf("line")

-- A private directory for the config, the password file and the logs.
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. q(dir)))

-- ---- processes ----

local procs = {} -- name -> { pid, log, offset }

-- Starts `LUA script args...` in the background, its output in a log;
-- the password, when given, comes from a file into the environment.
local function spawn(name, script, args, password_file)
  local p = H.spawn_logged(dir, name, LUA, script, args, password_file)
  p.offset = 0
  procs[name] = p
  return p
end

local function signal(p, sig) os.execute("kill -" .. sig .. " " .. p.pid .. " 2>/dev/null") end

local function wait_exit(p, seconds)
  local deadline = now() + seconds
  while alive(p.pid) do
    if now() > deadline then return false end
    core.sleep(0.02)
  end
  return true
end

-- New complete lines of a process's log since the last call.
local function new_lines(p)
  local s = read_file(p.log) or ""
  local chunk = s:sub(p.offset + 1)
  local lines = {}
  for line in chunk:gmatch("([^\n]*)\n") do
    lines[#lines + 1] = line
    p.offset = p.offset + #line + 1
  end
  return lines
end

-- ---- the run ----

local redis_srv, fake, ob
local holds = {}      -- { name, from, to, fence, why }
local holding = {}    -- name -> its open entry of holds
local killed          -- the binder killed with -9
local done_lines = {} -- binder name -> its summary line's fields

-- Reads the binders' logs: a "hold" line opens a span, a "leave" line ends it.
local function watch_binders()
  for _, name in ipairs(BINDERS) do
    local p = procs[name]
    for _, line in ipairs(p and new_lines(p) or {}) do
      if line:find("^%S+ hold: ") then
        local h = { name = name, from = at(), fence = line:match("fence (%d+)") }
        holds[#holds + 1], holding[name] = h, h
        say("%s holds the connection (fence %s)", name, h.fence or "?")
      elseif line:find("^%S+ leave: ") then
        local h = holding[name]
        if h then h.to, h.why, holding[name] = at(), line:match("leave: .-: (.*)$") or "left", nil end
        say("%s left the connection: %s", name, h and h.why or line)
      elseif line:find("^%S+ done ") then
        local f = {}
        for k, v in line:gmatch("([%w_]+)=(%d+)") do f[k] = tonumber(v) end
        done_lines[name] = f
      elseif line ~= "" then
        say("%s: %s", name, line)
      end
    end
  end
end

local function counts()
  local c = ob:counts()
  if not c then return nil end
  local total = 0
  for _, v in pairs(c) do total = total + v end
  c.total = total
  return c
end

local function run()
  redis_srv = redis_control.start()
  fake = fake_control.start("oneshot", { interp = LUA, state = { speed = SPEED, report_delay_ms = 50 } })
  say("redis-server on %s, fake OneShot on 127.0.0.1:%d (Speed %d)", redis_srv.url, fake.oneshot_port, SPEED)

  -- One config for every binder; the password goes through the environment.
  local opts = fake:session_options { redis = redis_srv.url, account = ACCOUNT, lock_ttl = LOCK_TTL,
    reconnect_delay = 0.3, quiet = 1, window = 50 }
  local password = opts.password
  opts.password = nil
  local config, pwfile = dir .. "/fleet.json", dir .. "/password"
  local f = assert(io.open(config, "wb")); f:write(cjson.encode(opts)); f:close()
  f = assert(io.open(pwfile, "wb")); f:write(password); f:close()

  ob = assert(fleet.outbox { redis = redis_srv.url, account = ACCOUNT })
  for _, name in ipairs(BINDERS) do
    spawn(name, "examples/fleet/binder.lua", { config, name }, pwfile)
    for _ = 1, 4 do core.sleep(0.05); watch_binders() end
  end
  -- Producers at about Speed between them, so they are still enqueuing when the holder dies.
  for _, name in ipairs(PRODUCERS) do
    spawn(name, "examples/fleet/producer.lua", { redis_srv.url, ACCOUNT, name, PER_PRODUCER,
      SPEED / #PRODUCERS * 1.5 })
  end
  say("3 binders and 3 producers started, %d messages to enqueue", TOTAL)

  local deadline = now() + 25 + TOTAL / SPEED
  local finished
  while now() < deadline do
    watch_binders()
    local c = counts()
    local st = fake:stats()
    local out = c and (c.sent + c.delivered + c.undelivered + c.maybe_sent + c.failed) or 0
    if not killed and out >= TOTAL / 3 then
      local name = next(holding)
      if name then
        killed = procs[name]
        signal(killed, "KILL")
        holding[name].to, holding[name].why, holding[name] = at(), "killed with kill -9", nil
        say("kill -9 %s (the holder), %d of %d messages out", name, out, TOTAL)
      end
    end
    local producing = false
    for _, name in ipairs(PRODUCERS) do if alive(procs[name].pid) then producing = true end end
    if killed and not producing and c and c.total == TOTAL and c.queued == 0 and c.sending == 0
        and st.reports_acked >= st.accepted then
      finished = true
      break
    end
    core.sleep(0.05)
  end
  say(finished and "every message settled; stopping the binders" or "timed out; stopping the binders")
  for _, name in ipairs(BINDERS) do
    if procs[name] ~= killed then signal(procs[name], "TERM") end
  end
  for _, name in ipairs(BINDERS) do wait_exit(procs[name], 10) end
  watch_binders()
  return finished
end

-- Every report in the stream, through a consumer group, acknowledged.
local function read_reports()
  local c = assert(fleet.reports { redis = redis_srv.url, account = ACCOUNT, group = "demo-app", consumer = "summary" })
  local read, ids, distinct, bad = 0, {}, 0, 0
  while true do
    local list = assert(c:read { count = 500, block = 0.2 })
    if #list == 0 then break end
    for _, e in ipairs(list) do
      read = read + 1
      if e.err then bad = bad + 1 end
      local id = e.report.server_msg_id
      if id and not ids[id] then ids[id], distinct = true, distinct + 1 end
      c:ack(e.id)
    end
  end
  local pending = c:pending()
  c:close()
  return read, distinct, pending, bad
end

local function summary(finished)
  local c = counts()
  local st = fake:stats()
  local read, distinct, pending, bad = read_reports()
  local enqueued, retries = 0, 0
  for _, name in ipairs(PRODUCERS) do
    local line = read_file(procs[name].log) or ""
    enqueued = enqueued + (tonumber(line:match("enqueued=(%d+)")) or 0)
    retries = retries + (tonumber(line:match("retries=(%d+)")) or 0)
  end

  print("")
  print("summary")
  print("  who held the connection:")
  for _, h in ipairs(holds) do
    print(("    %s  %5.2f s to %s  fence %s  (%s)"):format(h.name, h.from,
      h.to and ("%5.2f s"):format(h.to) or "  end  ", h.fence or "?", h.why or "held at the end"))
  end
  print("  per binder (its own count; the killed one printed none):")
  for _, name in ipairs(BINDERS) do
    local d = done_lines[name]
    if d then
      print(("    %s  sent=%d maybe_sent=%d failed=%d holds=%d binds=%d reports=%d"):format(name,
        d.sent, d.maybe_sent, d.failed, d.holds, d.binds, d.reports))
    else
      print(("    %s  %s"):format(name, procs[name] == killed and "killed with kill -9" or "no summary"))
    end
  end
  print(("  messages: %d enqueued by %d producers (%d retries)"):format(enqueued, #PRODUCERS, retries))
  print(("  outbox: delivered=%d undelivered=%d sent=%d maybe_sent=%d failed=%d expired=%d queued=%d sending=%d")
    :format(c.delivered, c.undelivered, c.sent, c.maybe_sent, c.failed, c.expired, c.queued, c.sending))
  print(("  fake OneShot: binds=%d duplicate_binds=%d messages=%d accepted=%d duplicates=%d")
    :format(st.binds, st.duplicate_binds, st.messages, st.accepted, st.duplicates))
  print(("  busiest second at the fake: %d messages, Speed %d; 903/11 answers: %d")
    :format(st.max_per_second, SPEED, st.speed_errors))
  print(("  reports: fake pushed=%d (again after a move: %d) acknowledged=%d; the stream gave the group %d, %d distinct, %d left pending")
    :format(st.reports_pushed, st.reports_repushed, st.reports_acked, read, distinct, pending))

  local problems = {}
  local function check(ok, what) if not ok then problems[#problems + 1] = what end end
  check(finished, "not every message settled in time")
  check(killed ~= nil, "no holder was killed")
  check(enqueued == TOTAL and c.total == TOTAL, "records: " .. c.total .. " of " .. TOTAL)
  check(c.queued == 0 and c.sending == 0, "records left queued or sending")
  check(st.duplicate_binds == 0, "a second bind was refused (result 2)")
  check(st.binds >= 2 and st.binds == #holds, "binds at the fake " .. st.binds .. ", holds " .. #holds)
  check(st.duplicates == 0 and st.messages == st.accepted, "a message was written twice or refused")
  check(st.max_per_second <= SPEED and st.speed_errors == 0, "Speed exceeded")
  check(read == distinct and read == st.accepted and bad == 0, "reports in the stream: " .. read
    .. " (" .. distinct .. " distinct) for " .. st.accepted .. " accepted")
  check(pending == 0, "reports left pending")
  check(c.delivered + c.maybe_sent == TOTAL, "delivered + maybe_sent is not every message")
  if #problems == 0 then
    print("demo-fleet: OK")
  else
    print("demo-fleet: FAILED: " .. table.concat(problems, "; "))
  end
  return #problems == 0
end

local ok, res = pcall(run)
local good = false
if not ok then
  io.stderr:write("demo-fleet: ", tostring(res), "\n")
else
  local sok, sres = pcall(summary, res)
  if not sok then io.stderr:write("demo-fleet: summary: ", tostring(sres), "\n") end
  good = sok and sres
end

for _, p in pairs(procs) do
  if alive(p.pid) then signal(p, "KILL") end
end
if ob then ob:close() end
if fake then fake:stop() end
if redis_srv then redis_srv:stop() end
os.execute("rm -rf " .. q(dir))
os.exit(good and 0 or 1)
