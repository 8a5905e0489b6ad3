-- outbox_worker.lua - one outbox worker process for spec/outbox_faults_spec.lua
-- (run with $KSMS_TEST_LUA, LUA_PATH and LUA_CPATH as the specs have them).
--
--   lua spec/outbox_worker.lua run STORE BASE_URL CONCURRENCY [BATCH [LEASE_TTL]]
--     opens the SQLite outbox STORE (or a redis:// URL, with the worker's
--     lease_ttl) with one Senders client at BASE_URL (a
--     fake), prints "OPEN", runs ob:run{ concurrency, batch, until_idle = true },
--     prints "DONE <sent> <failed> <maybe_sent>" and exits 0. The spec kills
--     it with kill -9 wherever it happens to be.
--   lua spec/outbox_worker.lua fill STORE PREFIX
--     enqueues records PREFIX-1, PREFIX-2, ... one at a time until enqueue
--     fails (the spec runs it under `ulimit -f`): prints "OK <key>" for
--     each accepted record and "ERR <message>" for the failure, exits 0.
--     Raises (exit 1) if enqueue raises or never fails.
local ksms = require "ksms"
local outbox = require "ksms.outbox"

local mode, store = arg[1], arg[2]

local function say(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

local function message(key, pad)
  return { to = "01012345678", from = "0212345678", text = "ksms outbox key " .. key .. (pad or "") }
end

if mode == "run" then
  local base_url, concurrency, batch, lease_ttl = arg[3], tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
  local client = ksms.client("senders", { api_key = "test-senders-key", base_url = base_url, timeout = 10 })
  local ob, err = outbox.open { store = store:find("^redis://") and store or "sqlite:" .. store,
    clients = { senders = client }, lease_ttl = lease_ttl }
  if not ob then
    io.stderr:write("open: ", tostring(err), "\n")
    os.exit(2)
  end
  say("OPEN")
  local summary, rerr = ob:run { concurrency = concurrency, batch = batch, until_idle = true }
  if not summary then
    io.stderr:write("run: ", tostring(rerr), "\n")
    os.exit(3)
  end
  say(("DONE %s %s %s"):format(tostring(summary.sent), tostring(summary.failed), tostring(summary.maybe_sent)))
  ob:close()
  os.exit(0)
elseif mode == "fill" then
  local prefix = arg[3]
  -- A client that is never used to send (enqueue only checks the message).
  local client = ksms.client("senders", { api_key = "test-senders-key", base_url = "http://127.0.0.1:9" })
  local ob, err = outbox.open { store = "sqlite:" .. store, clients = { senders = client } }
  if not ob then
    say("ERR open: " .. tostring(err))
    os.exit(0)
  end
  -- 1 KB of text per record, so the limit is reached after a few hundred.
  local pad = " " .. ("x"):rep(1000)
  for i = 1, 1000000 do
    local key = prefix .. "-" .. i
    local rec, eerr = ob:enqueue(message(key, pad), { key = key })
    if not rec then
      say(("ERR %s/%s: %s"):format(tostring(eerr and eerr.category), tostring(eerr and eerr.code),
        tostring(eerr and eerr.message or eerr)))
      os.exit(0)
    end
    say("OK " .. key)
  end
  error("enqueue never failed")
else
  io.stderr:write("usage: outbox_worker.lua run STORE BASE_URL CONCURRENCY | fill STORE PREFIX\n")
  os.exit(64)
end
