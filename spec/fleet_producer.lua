-- fleet_producer.lua - one producer process for spec/fleet_faults_spec.lua
-- (run with $KSMS_TEST_LUA, LUA_PATH and LUA_CPATH as the specs have them).
--
--   lua spec/fleet_producer.lua REDIS_URL ACCOUNT OUTBOX_NS PREFIX COUNT BATCH PAUSE [DEADLINE]
--
-- Enqueues COUNT messages with keys PREFIX-1 .. PREFIX-COUNT into the
-- account's fleet outbox (ksms.oneshot.fleet.outbox): BATCH at a time
-- (BATCH 1: ob:enqueue, more: ob:enqueue_many), PAUSE seconds between.
-- Prints "OK <key>" for every record enqueue returned, and
-- "ERR <first key> <n> <category> <code> <retryable> <message>" when the
-- call returned nil, err (the same keys are tried again after PAUSE: a lost
-- reply may have stored them; the key makes that harmless). Gives up after
-- DEADLINE seconds (60) and prints "DONE <accepted> <errors>", exit 0.
-- A raise is exit 1 (the spec treats it as a failure).
local fleet = require "ksms.oneshot.fleet"
local socket = require "socket"

local url, account, ns, prefix = arg[1], arg[2], arg[3], arg[4]
local count, batch, pause = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
local deadline = socket.gettime() + (tonumber(arg[8]) or 60)

io.stdout:setvbuf("line")
local function say(line) io.stdout:write(line, "\n") end

local ob
local accepted, errors = 0, 0
local function failed(first, n, err)
  errors = errors + 1
  local e = type(err) == "table" and err or { message = tostring(err) }
  say(("ERR %s %d %s %s %s %s"):format(first, n, tostring(e.category), tostring(e.code),
    tostring(e.retryable), tostring(e.message):gsub("\n", " ")))
end

local i = 1
while i <= count and socket.gettime() < deadline do
  if not ob then
    local err
    ob, err = fleet.outbox { redis = url, account = account, outbox_namespace = ns }
    if not ob then failed(prefix .. "-" .. i, 0, err) end
  end
  if ob then
    local n = math.min(batch, count - i + 1)
    local msgs = {}
    for k = 1, n do
      local key = prefix .. "-" .. (i + k - 1)
      msgs[k] = { { to = "01012345678", from = "15666639", text = "fleet " .. key }, { key = key } }
    end
    local out, err
    if n == 1 then
      local rec, rerr = ob:enqueue(msgs[1][1], { key = msgs[1][2].key, client = account })
      out, err = rec and { rec } or nil, rerr
    else
      out, err = ob:enqueue_many(msgs, { client = account })
    end
    if out then
      for k = 1, n do
        local rec = out[k]
        if type(rec) == "table" and rec.key then
          say("OK " .. rec.key)
          accepted = accepted + 1
        else
          failed(msgs[k][2].key, 1, rec)
        end
      end
      i = i + n
    else
      failed(msgs[1][2].key, n, err)
    end
  end
  socket.sleep(pause)
end
say(("DONE %d %d"):format(accepted, errors))
if ob then ob:close() end
os.exit(0)
