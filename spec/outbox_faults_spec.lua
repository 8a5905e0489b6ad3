-- ksms.outbox under real faults, with real processes: a worker process
-- (spec/outbox_worker.lua) on a real SQLite file, sending through a real
-- Senders client to the fake Senders server with latency, killed with
-- kill -9 at random points a hundred times; two worker processes racing on
-- one store; a disk that fills up (`ulimit -f` in a child); a corrupted
-- file and foreign files at open. What reached the provider is the fake's
-- request log: every message's text carries its key.
--
-- KSMS_OUTBOX_KILL_ROUNDS (100) and KSMS_OUTBOX_SEED (the time) replay a run;
-- a failing assertion names the seed.
local outbox = require "ksms.outbox"
local ksms = require "ksms"
local socket = require "socket"
local fake_control = require "fake_control"
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local ROUNDS = tonumber(os.getenv("KSMS_OUTBOX_KILL_ROUNDS")) or 100
local SEED = tonumber(os.getenv("KSMS_OUTBOX_SEED")) or os.time()
local CONCURRENCY = 4
local LATENCY_MS = 25
local PER_ROUND = 6                 -- new keys per round of the kill loop
local KILL_WINDOW = 0.12            -- seconds after open a kill may land in
local SEND_PATH = "/APIV2/sms_send"

local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".") .. "/"
local WORKER = here .. "outbox_worker.lua"

local q, tmpdir, file_or_empty, alive = H.shell_quote, H.tmpdir, H.file_or_empty, H.alive

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end


-- Starts a worker process; returns a handle { pid, pipe } and the paths of
-- its stdout, stderr. The spec process is its parent (io.popen, exec all the
-- way: the pid is the interpreter's), so reap() collects it: an orphan
-- would stay a zombie where PID 1 does not reap, and a zombie's pid still
-- counts as a live owner to the outbox.
local function spawn(dir, name, args)
  local out, err = dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".err"
  local pipe = assert(io.popen(("echo PID $$; exec %s %s %s >%s 2>%s"):format(
    LUA, q(WORKER), args, q(out), q(err)), "r"))
  local pid = tonumber((pipe:read("*l") or ""):match("^PID (%d+)$"))
  assert(pid, "no pid")
  return { pid = pid, pipe = pipe }, out, err
end

-- Waits for the worker to exit (at most seconds) and reaps it.
local function reap(w, seconds)
  H.wait_until("worker " .. w.pid .. " to exit", seconds or 10, function() return not alive(w.pid) end)
  w.pipe:close()
end

local function kill9(w)
  os.execute("kill -9 " .. w.pid .. " 2>/dev/null")
  reap(w)
end

local function message(key)
  return { to = "01012345678", from = "0212345678", text = "ksms outbox key " .. key }
end

-- key -> how many requests carrying it reached the fake.
local function provider_seen(fake)
  return H.senders_texts(fake, "^ksms outbox key (%S+)")
end

local function total(counts)
  local n = 0
  for _, c in pairs(counts) do n = n + c end
  return n
end

describe("the outbox with real processes", function()
  local fake, dir, client

  setup(function()
    fake = fake_control.start("senders", { balance = 10000000 })
    dir = tmpdir()
    client = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url, timeout = 10 })
  end)

  teardown(function()
    if fake then fake:stop() end
    if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. q(dir)) end
  end)

  before_each(function()
    fake:reset()
    fake:script { path = SEND_PATH, latency_ms = LATENCY_MS }
  end)

  local function open(path)
    return outbox.open { store = "sqlite:" .. path, clients = { senders = client } }
  end

  it("a worker killed with kill -9 at random points, a hundred times: no key sent twice, "
     .. "the unknown never more than the concurrency per kill, every key accounted for", function()
    math.randomseed(SEED)
    local why = " (KSMS_OUTBOX_SEED=" .. SEED .. ")"
    local path = dir .. "/kill.db"
    local keys, prev_maybe = {}, 0
    local stats = { killed_before_open = 0, killed_after_open = 0, finished = 0, max_new_maybe = 0 }
    local url = q(fake.base_url)

    -- The store as a restarted process finds it: open (which settles what
    -- the dead worker left in `sending`) and check it against the fake.
    local function check(round)
      local ob, err = open(path)
      assert(ob, "open after kill, round " .. round .. ": " .. tostring(err) .. why)
      local counts = ob:counts()
      assert.equal(0, counts.sending or 0, "records left in sending after open, round " .. round .. why)
      local maybe = counts.maybe_sent or 0
      local new_maybe = maybe - prev_maybe
      assert(new_maybe >= 0 and new_maybe <= CONCURRENCY,
        ("round %d: %d records became maybe_sent at one kill (concurrency %d)%s"):format(round, new_maybe, CONCURRENCY, why))
      if new_maybe > stats.max_new_maybe then stats.max_new_maybe = new_maybe end
      prev_maybe = maybe
      assert.equal(#keys, total(counts), "records in the store" .. why)
      local seen = provider_seen(fake)
      for _, key in ipairs(keys) do
        local n = seen[key] or 0
        assert(n <= 1, ("round %d: key %s reached the provider %d times%s"):format(round, key, n, why))
        local rec = ob:status(key)
        assert(rec, "round " .. round .. ": key " .. key .. " lost" .. why)
        local state = rec.state
        -- Reached the provider: never queued again. Sent: it did reach it.
        if n == 1 then
          assert(state == "sent" or state == "maybe_sent",
            ("round %d: key %s reached the provider but is %s%s"):format(round, key, state, why))
        end
        if state == "sent" then
          assert(n == 1, ("round %d: key %s is sent but the provider never saw it%s"):format(round, key, why))
        end
        assert(state == "queued" or state == "sent" or state == "maybe_sent",
          ("round %d: key %s in state %s%s"):format(round, key, tostring(state), why))
      end
      return ob, seen
    end

    local t0 = socket.gettime()
    for round = 1, ROUNDS do
      local ob = check(round)
      for k = 1, PER_ROUND do
        local key = ("r%dk%d"):format(round, k)
        local rec, err = ob:enqueue(message(key), { key = key })
        assert(rec, "enqueue " .. key .. ": " .. tostring(err))
        assert.equal("queued", rec.state)
        keys[#keys + 1] = key
      end
      ob:close()
      local pid, out = spawn(dir, "kill", "run " .. q(path) .. " " .. url .. " " .. CONCURRENCY)
      -- One kill in ten anywhere around start-up and open (recovery of the
      -- last one's records); the others once the store is open, anywhere
      -- from the first claim to after the queue is empty.
      if math.random() < 0.1 then
        socket.sleep(math.random() * 0.04)
      else
        local deadline = socket.gettime() + 10
        while not file_or_empty(out):find("OPEN", 1, true) and socket.gettime() < deadline do
          socket.sleep(0.002)
        end
        socket.sleep(math.random() * KILL_WINDOW)
      end
      local said = file_or_empty(out)
      kill9(pid)
      if said:find("DONE", 1, true) then
        stats.finished = stats.finished + 1
      elseif said:find("OPEN", 1, true) then
        stats.killed_after_open = stats.killed_after_open + 1
      else
        stats.killed_before_open = stats.killed_before_open + 1
      end
    end
    local ob, seen = check(ROUNDS + 1)
    local loop_seconds = socket.gettime() - t0
    assert(stats.killed_after_open >= ROUNDS / 10, "too few kills landed while the worker worked" .. why)

    -- The operator's decisions, with the fake's log as evidence; then a
    -- worker that is left to finish.
    local resolved = 0
    for _, key in ipairs(keys) do
      if ob:status(key).state == "maybe_sent" then
        local rec, err = ob:resolve(key, (seen[key] or 0) == 1 and "sent" or "resend")
        assert(rec, "resolve " .. key .. ": " .. tostring(err))
        resolved = resolved + 1
      end
    end
    ob:close()
    local pid, out, err = spawn(dir, "final", "run " .. q(path) .. " " .. url .. " " .. CONCURRENCY)
    reap(pid, 30)
    assert(file_or_empty(out):find("DONE", 1, true), "the last worker: " .. file_or_empty(err))

    ob = assert(open(path))
    seen = provider_seen(fake)
    local counts = ob:counts()
    assert.equal(#keys, counts.sent, "every key sent in the end" .. why)
    for _, key in ipairs(keys) do
      assert.equal("sent", ob:status(key).state)
      assert.equal(1, seen[key], "key " .. key .. why)
    end
    ob:close()
    io.stderr:write(("\n  kill loop: %d rounds in %.1f s, %d keys; killed before open %d, while working %d, "
      .. "finished first %d; %d maybe_sent resolved, at most %d per kill (concurrency %d)\n"):format(
      ROUNDS, loop_seconds, #keys, stats.killed_before_open, stats.killed_after_open, stats.finished,
      resolved, stats.max_new_maybe, CONCURRENCY))
  end)

  it("two worker processes racing on one store never send a key twice", function()
    for race = 1, 3 do
      local path = dir .. "/race" .. race .. ".db"
      local ob = assert(open(path))
      local keys = {}
      for i = 1, 120 do
        local key = ("race%dk%d"):format(race, i)
        assert(ob:enqueue(message(key), { key = key }))
        keys[i] = key
      end
      ob:close()
      fake:reset()
      fake:script { path = SEND_PATH, latency_ms = LATENCY_MS }
      -- Started together claiming 40 at a time (the default batch would
      -- let the first claim all 120), then the second one starting while
      -- the first sends, both claiming 3 at a time (many claims,
      -- interleaved, each a transaction the other waits for).
      local args = q(path) .. " " .. q(fake.base_url) .. " " .. CONCURRENCY .. (race > 1 and " 3" or " 40")
      local a, a_out, a_err = spawn(dir, "race_a", "run " .. args)
      if race > 1 then socket.sleep(0.03 * (race - 1)) end
      local b, b_out, b_err = spawn(dir, "race_b", "run " .. args)
      reap(a, 30)
      reap(b, 30)
      local done_a = file_or_empty(a_out):match("DONE (%d+)")
      local done_b = file_or_empty(b_out):match("DONE (%d+)")
      assert(done_a, "worker a: " .. file_or_empty(a_err))
      assert(done_b, "worker b: " .. file_or_empty(b_err))
      local seen = provider_seen(fake)
      ob = assert(open(path))
      for _, key in ipairs(keys) do
        assert.equal(1, seen[key], "race " .. race .. ": key " .. key .. " reached the provider "
          .. tostring(seen[key]) .. " times")
        assert.equal("sent", ob:status(key).state, "race " .. race .. ": key " .. key)
      end
      assert.equal(#keys, tonumber(done_a) + tonumber(done_b))
      -- A race only if both sent.
      assert(tonumber(done_a) > 0 and tonumber(done_b) > 0, ("race %d: a sent %s, b sent %s"):format(race, done_a, done_b))
      io.stderr:write(("\n  race %d: worker a sent %s, worker b %s\n"):format(race, done_a, done_b))
      ob:close()
    end
  end)

  -- A store with five records, closed (one file: the WAL checkpointed).
  local function store_of_five(path)
    os.remove(path)
    local ob = assert(open(path))
    local accepted = {}
    for i = 1, 5 do
      local key = "before-" .. i
      assert(ob:enqueue(message(key), { key = key }))
      accepted[#accepted + 1] = key
    end
    ob:close()
    return accepted
  end

  -- What the filling process said: the keys it was told were stored, and
  -- the error of the enqueue that failed.
  local function filled(out, accepted)
    local n_ok = 0
    for key in out:gmatch("OK (%S+)") do
      accepted[#accepted + 1] = key
      n_ok = n_ok + 1
    end
    local err = out:match("ERR ([^\n]*)")
    assert(err, "enqueue never failed: " .. out:sub(-400))
    assert(n_ok >= 1, "nothing accepted before the disk filled: " .. out:sub(1, 400))
    assert(not err:find("open", 1, true), "the store did not open: " .. err)
    return n_ok, err
  end

  -- With room again: everything accepted is there, the refused record is not.
  local function all_there(path, accepted, refused_key, err)
    local ob = assert(open(path))
    for _, key in ipairs(accepted) do
      local rec = ob:status(key)
      assert(rec, "accepted record " .. key .. " lost after the disk filled (" .. err .. ")")
      assert.equal("queued", rec.state)
      local text = "ksms outbox key " .. key
      assert.equal(text, rec.message.text:sub(1, #text))
    end
    assert.is_nil(ob:status(refused_key), "the refused record " .. refused_key .. " was stored")
    assert.equal(#accepted, total(ob:counts()))
    assert(ob:enqueue(message("after"), { key = "after" }))
    ob:close()
  end

  it("a file size limit (ulimit -f): enqueue returns nil, err, and every record accepted before is still there", function()
    local path = dir .. "/full.db"
    local accepted = store_of_five(path)
    -- The limit is in 512-byte blocks (dash); a WAL file and the 32 KiB
    -- shared-memory index must fit, then about 200 KiB more. SIGXFSZ
    -- ignored: the write fails with EFBIG instead of killing the process.
    local blocks = math.floor((math.max(file_size(path), 32768) + 200 * 1024) / 512)
    local out, ok = H.run(("sh -c %s 2>&1"):format(q(("trap '' XFSZ; ulimit -f %d; exec %s %s fill %s fill"):format(
      blocks, LUA, q(WORKER), q(path)))))
    assert(ok, "the filling process: " .. out)
    local n_ok, err = filled(out, accepted)
    all_there(path, accepted, "fill-" .. (n_ok + 1), err)
    io.stderr:write(("\n  ulimit -f %d: %d records accepted, then: %s\n"):format(blocks, n_ok, err))
  end)

  it("a full disk (a 256 KiB tmpfs in a private mount namespace): the same", function()
    local probe = H.run("unshare -m sh -c 'mount -t tmpfs -o size=4k tmpfs /mnt && echo MOUNTED' 2>&1")
    if not probe:find("MOUNTED", 1, true) then
      pending("needs unshare -m and mount (root): " .. probe)
      return
    end
    local path, mnt = dir .. "/tmpfs.db", dir .. "/mnt"
    assert(H.exec_ok("mkdir -p " .. q(mnt)))
    local accepted = store_of_five(path)
    -- The store goes onto the tmpfs, fills it, and what is left there
    -- (the file and its WAL: what a restart would find) comes back out.
    local script = table.concat({
      "mount -t tmpfs -o size=256k tmpfs " .. q(mnt),
      "cp " .. q(path) .. " " .. q(mnt .. "/s.db"),
      ("%s %s fill %s tmpfs"):format(LUA, q(WORKER), q(mnt .. "/s.db")),
      "rm -f " .. q(path) .. " " .. q(path .. "-wal") .. " " .. q(path .. "-shm"),
      "cp " .. q(mnt .. "/s.db") .. " " .. q(path),
      "if [ -f " .. q(mnt .. "/s.db-wal") .. " ]; then cp " .. q(mnt .. "/s.db-wal") .. " " .. q(path .. "-wal") .. "; fi",
    }, " && ")
    local out, ok = H.run("unshare -m sh -c " .. q(script) .. " 2>&1")
    assert(ok, "the filling process: " .. out)
    local n_ok, err = filled(out, accepted)
    assert(err:lower():find("full", 1, true), "not a clear error for a full disk: " .. err)
    all_there(path, accepted, "tmpfs-" .. (n_ok + 1), err)
    io.stderr:write(("\n  tmpfs of 256 KiB: %d records accepted, then: %s\n"):format(n_ok, err))
  end)

  describe("a file that is not a sound outbox is refused at open", function()
    local function refused(path, what)
      local ok, ob, err = pcall(open, path)
      assert(ok, what .. ": open raised: " .. tostring(ob))
      if ob then ob:close() end
      assert.is_nil(ob, what .. " opened")
      local text = type(err) == "table" and err.message or err
      assert.is_string(text, what .. ": no message")
      return text
    end

    -- Names the file and says it is not an outbox (or not a database).
    local function clear_not_outbox(text)
      local lower = text:lower()
      return lower:find(dir:lower(), 1, true) and (lower:find("not a ksms outbox", 1, true)
        or lower:find("not an outbox", 1, true) or lower:find("not a database", 1, true)
        or lower:find("not an sqlite database", 1, true))
    end

    local function made_outbox(name, records)
      local path = dir .. "/" .. name .. ".db"
      os.remove(path)
      local ob = assert(open(path))
      local pad = (" x"):rep(300)
      for i = 1, records do
        local key = name .. i
        local m = message(key)
        m.text = m.text .. pad
        assert(ob:enqueue(m, { key = key }))
      end
      ob:close()
      return path
    end

    local function overwrite(path, offset, bytes)
      local f = assert(io.open(path, "r+b"))
      f:seek("set", offset)
      f:write(bytes)
      f:close()
    end

    local function garbage(n)
      local t = {}
      for i = 1, n do t[i] = string.char((i * 151 + 7) % 256) end
      return table.concat(t)
    end

    it("its header overwritten", function()
      local path = made_outbox("header", 50)
      overwrite(path, 0, garbage(100))
      local text = refused(path, "a file with its header overwritten")
      assert(clear_not_outbox(text), "not a clear error: " .. text)
    end)

    it("bytes overwritten inside", function()
      local path = made_outbox("inside", 200)
      local size = file_size(path)
      assert(size > 8 * 4096, "a small store: " .. size)
      -- Every page but the first: the schema still reads, the data does not.
      for page = 1, math.floor(size / 4096) - 1 do
        overwrite(path, page * 4096, garbage(64))
      end
      local text = refused(path, "a file with bytes overwritten")
      local lower = text:lower()
      assert(lower:find("corrupt", 1, true) or lower:find("malformed", 1, true),
        "not a clear error: " .. text)
    end)

    it("another application's SQLite database, left as it was", function()
      local path = dir .. "/foreign.db"
      os.remove(path)
      local DBI = require "DBI"
      local db = assert(DBI.Connect("SQLite3", path))
      db:autocommit(true)
      assert(db:prepare("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"):execute())
      assert(db:prepare("INSERT INTO users (name) VALUES (?)"):execute("kim"))
      db:close()
      local before = H.read_file(path)
      local text = refused(path, "a foreign SQLite database")
      assert.matches("outbox", text:lower(), 1, true)
      local after, changed = H.read_file(path), {}
      for i = 1, math.max(#before, #after) do
        if before:byte(i) ~= after:byte(i) and #changed < 8 then changed[#changed + 1] = i - 1 end
      end
      assert(before == after, ("the foreign database was changed: %d bytes, then %d; bytes at offsets %s differ"
        .. " (18, 19: the journal mode, now WAL)"):format(#before, #after, table.concat(changed, ", ")))
    end)

    it("a text file, left as it was", function()
      local path = dir .. "/notes.txt"
      local body = ("these are my notes, not an outbox\n"):rep(200)
      H.write_file(path, body)
      local text = refused(path, "a text file")
      assert(clear_not_outbox(text), "not a clear error: " .. text)
      assert.equal(body, H.read_file(path), "the text file was changed")
    end)
  end)
end)
