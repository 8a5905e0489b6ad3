-- bench/outbox.lua: the durable outbox (ksms.outbox on SQLite), beside
-- baselines measured in this run.
--
-- 1. enqueue_many: BENCH_MESSAGES (10,000) messages into a fresh outbox in
--    one call, beside the same rows (key, JSON text, times) written by raw
--    LuaDBI prepared INSERTs in one transaction: the floor of the store.
--    Goal: at least 20,000 messages/s.
-- 2. Those messages sent by ob:run{ concurrency = 32, until_idle = true }
--    against an nginx that answers after 50 ms, beside the latency bound
--    n / 32 x 50 ms and beside plain send_many of the same messages.
--    Goal: within 1.15x of the bound.
-- 3. BENCH_QUEUED (1,000,000) records queued by enqueue_many in batches of
--    10,000: messages/s and the store's bytes per record; then a worker
--    PROCESS opens that store, counts it, lists every record (ob:list) and
--    sends for BENCH_WORKER_SECONDS (1) against an nginx that answers at
--    once, its VmRSS read at each step, beside the same worker on a store
--    of BENCH_QUEUED / 50 records (at least 20,000, so that both are still
--    sending when the time is up). Flat memory: the ratio stays near 1.
--
-- Run with `make bench-outbox` (nginx-light and libnginx-mod-http-lua).
-- BENCH_MESSAGES, BENCH_QUEUED and BENCH_WORKER_SECONDS size it.
package.path = "spec/?.lua;" .. package.path
local ksms = require "ksms"
local outbox = require "ksms.outbox"
local socket = require "socket"
local cjson = require "cjson"

local now = socket.gettime
local KEY = "bench-key"
local CONCURRENCY, LATENCY = 32, 0.05

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local function message(i)
  return { to = ("010%08d"):format(10000000 + i % 89999999), from = "0212345678",
    text = ("[ksms] %d번 고객님, 주문이 접수되었습니다."):format(i) }
end

local function client_at(base_url)
  return ksms.client("senders", { api_key = KEY, base_url = base_url, timeout = 30 })
end

-- The worker process of part 3: bench/outbox.lua worker STORE URL SECONDS.
-- Prints one line: RSS (KiB) after open, after counts, after listing every
-- record, after sending; records listed; records sent.
if arg and arg[1] == "worker" then
  local store, url, seconds = arg[2], arg[3], tonumber(arg[4])
  local ob = assert(outbox.open { store = "sqlite:" .. store, clients = { senders = client_at(url) } })
  collectgarbage()
  local r_open = rss_kb()
  local counts = ob:counts()
  local r_counts = rss_kb()
  local listed = 0
  for _ in ob:list { state = "queued" } do listed = listed + 1 end
  collectgarbage()
  local r_list = rss_kb()
  local summary = assert(ob:run { concurrency = CONCURRENCY, deadline = now() + seconds })
  collectgarbage()
  local r_run = rss_kb()
  ob:close()
  print(("RSS %d %d %d %d LISTED %d SENT %d QUEUED %d"):format(r_open, r_counts, r_list, r_run, listed,
    summary.sent or 0, counts.queued or 0))
  os.exit(0)
end

local MESSAGES = tonumber(os.getenv("BENCH_MESSAGES") or "") or 10000
local QUEUED = tonumber(os.getenv("BENCH_QUEUED") or "") or 1000000
local WORKER_SECONDS = tonumber(os.getenv("BENCH_WORKER_SECONDS") or "") or 1
local BATCH = 10000
local LUA = os.getenv("BENCH_LUA") or (jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))

local nginx_control = require "nginx_control"
local nginx = nginx_control.start {
  lua = true,
  locations = [[
    location = /APIV2/sms_send { default_type text/html; return 200 '{"result":"100"}'; }
    location = /slow/APIV2/sms_send {
      default_type text/html;
      content_by_lua_block { ngx.req.discard_body(); ngx.sleep(0.05); ngx.print('{"result":"100"}') }
    }
  ]],
}

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. q(dir)))

local function store_bytes(path)
  return file_size(path) + file_size(path .. "-wal")
end

-- The floor: the same rows through LuaDBI alone, one transaction.
local function raw_insert(path, n)
  local DBI = require "DBI"
  local db = assert(DBI.Connect("SQLite3", path))
  db:autocommit(true)
  local function exec(sql)
    local st = assert(db:prepare(sql))
    assert(st:execute())
    st:close()
  end
  exec("PRAGMA journal_mode=WAL")
  exec("CREATE TABLE records (key TEXT PRIMARY KEY, client TEXT, state TEXT, message TEXT, "
    .. "created_at REAL, updated_at REAL, expires_at REAL)")
  local t0 = now()
  exec("BEGIN IMMEDIATE")
  local st = assert(db:prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)"))
  for i = 1, n do
    local t = now()
    assert(st:execute("raw-" .. i, "senders", "queued", cjson.encode(message(i)), t, t, 0))
  end
  st:close()
  exec("COMMIT")
  local elapsed = now() - t0
  db:close()
  return n / elapsed
end

local ok, err = pcall(function()
  print(("outbox (%s, SQLite through LuaDBI, WAL)"):format(_VERSION .. (jit and (" " .. jit.version) or "")))

  -- 1. enqueue_many, beside raw inserts.
  local raw_rate = raw_insert(dir .. "/raw.db", MESSAGES)
  local slow = client_at(nginx.base_url .. "/slow")
  local path = dir .. "/send.db"
  local ob = assert(outbox.open { store = "sqlite:" .. path, clients = { senders = slow } })
  local msgs, items = {}, {}
  for i = 1, MESSAGES do
    msgs[i] = message(i)
    items[i] = { msgs[i], { key = "send-" .. i } }
  end
  local t0 = now()
  local recs = ob:enqueue_many(items)
  local enqueue_rate = MESSAGES / (now() - t0)
  for i = 1, MESSAGES do
    assert(recs[i] and recs[i].state == "queued", "enqueue_many: " .. tostring(recs[i] and recs[i].message))
  end
  print(("enqueue_many: %d messages in one call"):format(MESSAGES))
  print(("  raw LuaDBI inserts        %9.0f rows/s"):format(raw_rate))
  print(("  ob:enqueue_many           %9.0f messages/s   %.2fx of raw (goal >= 20,000/s: %s)"):format(
    enqueue_rate, enqueue_rate / raw_rate, enqueue_rate >= 20000 and "met" or "MISSED"))

  -- 2. Through the worker, beside the bound and plain send_many.
  t0 = now()
  local summary = assert(ob:run { concurrency = CONCURRENCY, until_idle = true })
  local ob_elapsed = now() - t0
  local counts = ob:counts()
  ob:close()
  t0 = now()
  local outs = slow:send_many(msgs, { concurrency = CONCURRENCY })
  local plain_elapsed = now() - t0
  local plain_failed = 0
  for _, o in ipairs(outs) do if not o.ok then plain_failed = plain_failed + 1 end end
  local bound = MESSAGES / CONCURRENCY * LATENCY
  print(("ob:run: %d messages, concurrency %d, server latency %d ms"):format(MESSAGES, CONCURRENCY, LATENCY * 1000))
  print(("  latency bound             %9.2f s"):format(bound))
  print(("  plain send_many           %9.2f s   %.3fx the bound, %d failed"):format(
    plain_elapsed, plain_elapsed / bound, plain_failed))
  print(("  ob:run (until idle)       %9.2f s   %.3fx the bound (goal <= 1.15: %s), %.3fx send_many; "
    .. "%d sent, %d not sent"):format(ob_elapsed, ob_elapsed / bound,
    ob_elapsed / bound <= 1.15 and "met" or "MISSED", ob_elapsed / plain_elapsed,
    counts.sent or 0, MESSAGES - (counts.sent or 0)))
  if summary.sent and summary.sent ~= counts.sent then
    print(("  (run's summary says %d sent)"):format(summary.sent))
  end
  slow:close()
  msgs, items, recs, outs = nil, nil, nil, nil
  collectgarbage()
  collectgarbage()

  -- 3. A store of QUEUED records, and one of QUEUED / 100.
  local fast = client_at(nginx.base_url)
  local function fill(p, n)
    local o = assert(outbox.open { store = "sqlite:" .. p, clients = { senders = fast } })
    local r_first, r_max, start = nil, 0, now()
    local done = 0
    while done < n do
      local batch = {}
      local m = math.min(BATCH, n - done)
      for k = 1, m do
        local i = done + k
        batch[k] = { message(i), { key = "q-" .. i } }
      end
      local res = o:enqueue_many(batch)
      for k = 1, m do assert(res[k] and res[k].state == "queued", "enqueue_many failed at " .. (done + k)) end
      done = done + m
      batch, res = nil, nil
      if done % (BATCH * 10) == 0 or done == n then collectgarbage() end
      local r = rss_kb()
      r_first = r_first or r
      if r > r_max then r_max = r end
    end
    local rate = n / (now() - start)
    o:close()
    return rate, r_first, r_max
  end
  local small_n = math.max(20000, math.floor(QUEUED / 50))
  local big_path, small_path = dir .. "/big.db", dir .. "/small.db"
  local small_rate = fill(small_path, small_n)
  local big_rate, r_first, r_max = fill(big_path, QUEUED)
  local bytes = store_bytes(big_path)
  print(("a store of %d queued records (enqueue_many, batches of %d)"):format(QUEUED, BATCH))
  print(("  enqueue_many              %9.0f messages/s   (%d records: %.0f/s)"):format(big_rate, small_n, small_rate))
  print(("  enqueueing process RSS    %9d KiB after the first batch, at most %d KiB"):format(r_first, r_max))
  print(("  store size                %9.1f MiB, %.0f bytes per record (%d records: %.0f bytes per record)"):format(
    bytes / 1048576, bytes / QUEUED, small_n, store_bytes(small_path) / small_n))
  local function worker(p)
    local pipe = assert(io.popen(("%s bench/outbox.lua worker %s %s %d 2>&1"):format(
      LUA, q(p), q(nginx.base_url), WORKER_SECONDS)))
    local out = pipe:read("*a")
    pipe:close()
    local a, b, c, d, listed, sent = out:match("RSS (%d+) (%d+) (%d+) (%d+) LISTED (%d+) SENT (%d+)")
    assert(a, "worker: " .. out)
    return { open = tonumber(a), counts = tonumber(b), list = tonumber(c), run = tonumber(d),
      listed = tonumber(listed), sent = tonumber(sent) }
  end
  local ws, wb = worker(small_path), worker(big_path)
  print(("worker process (open, counts, list every queued record, run %d s at concurrency %d, fast server)"):format(
    WORKER_SECONDS, CONCURRENCY))
  print(("  %8d records: RSS %6d / %6d / %6d / %6d KiB, listed %d, sent %d"):format(
    small_n, ws.open, ws.counts, ws.list, ws.run, ws.listed, ws.sent))
  print(("  %8d records: RSS %6d / %6d / %6d / %6d KiB, listed %d, sent %d"):format(
    QUEUED, wb.open, wb.counts, wb.list, wb.run, wb.listed, wb.sent))
  local peak_s = math.max(ws.open, ws.counts, ws.list, ws.run)
  local peak_b = math.max(wb.open, wb.counts, wb.list, wb.run)
  print(("  peak RSS ratio            %9.2fx for %dx the records (flat: near 1)"):format(
    peak_b / peak_s, QUEUED / small_n))
  fast:close()
end)
nginx:stop()
os.execute("rm -rf " .. q(dir))
if not ok then error(err, 0) end
