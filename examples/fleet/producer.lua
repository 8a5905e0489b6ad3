-- examples/fleet/producer.lua: an application process that puts messages
-- into a OneShot fleet's outbox. It sends nothing itself: whichever binder
-- holds the account's connection sends them (examples/fleet/binder.lua).
--
--   lua5.4 examples/fleet/producer.lua REDIS_URL ACCOUNT NAME COUNT [RATE [BATCH]]
--
-- Enqueues COUNT messages with the keys NAME-1 .. NAME-COUNT and
-- { client = ACCOUNT }, RATE per second (0, the default: as fast as Redis
-- takes them), BATCH at a time (1: ob:enqueue; more: ob:enqueue_many).
-- A refusal (Redis down: category "server", retryable) is retried after
-- 0.2 s, so nothing is dropped silently; the keys make a retry of an
-- enqueue that did reach Redis harmless (an existing key stores nothing). Prints one line at the end:
-- "NAME enqueued=N retries=N seconds=S".
local fleet = require "ksms.oneshot.fleet"
local core = require "ksms.core"

local url, account, name, count = arg[1], arg[2], arg[3], tonumber(arg[4] or "")
local rate, batch = tonumber(arg[5] or "0") or 0, tonumber(arg[6] or "1") or 1
if not (url and account and name and count) then
  io.stderr:write("usage: producer.lua REDIS_URL ACCOUNT NAME COUNT [RATE [BATCH]]\n")
  os.exit(2)
end
io.stdout:setvbuf("line")

local ob, err = fleet.outbox { redis = url, account = account }
if not ob then
  io.stderr:write(name, ": ", tostring(err), "\n")
  os.exit(1)
end

local function message(i)
  return { to = ("010%08d"):format(10000000 + i), from = "15666639",
    text = ("[ksms] %s #%d: 주문이 접수되었습니다."):format(name, i) }
end

local t0 = core.monotonic()
local done, retries = 0, 0
while done < count do
  local n = math.min(batch, count - done)
  local ok, e
  if n == 1 then
    ok, e = ob:enqueue(message(done + 1), { key = name .. "-" .. (done + 1), client = account })
  else
    local list = {}
    for i = 1, n do list[i] = { message(done + i), { key = name .. "-" .. (done + i) } } end
    ok, e = ob:enqueue_many(list, { client = account })
  end
  if ok then
    done = done + n
    -- Paced: the next batch is due at done / rate seconds after the start.
    if rate > 0 then
      local wait = t0 + done / rate - core.monotonic()
      if wait > 0 then core.sleep(wait) end
    end
  else
    retries = retries + 1
    io.stderr:write(name, ": ", tostring(e), " (retrying)\n")
    core.sleep(0.2)
  end
end
ob:close()
io.stdout:write(("%s enqueued=%d retries=%d seconds=%.2f\n"):format(name, done, retries, core.monotonic() - t0))
