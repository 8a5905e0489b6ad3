--- ksms.outbox.worker: ob:run, the loop that sends an outbox's queued
-- records, and the recovery of records a dead worker left behind.
--
-- One round per client: claim a batch (one transaction: the records get
-- this worker's owner id and stay queued), hand the batch to
-- client:send_many with on_sending and on_outcome:
-- * on_sending(i), just before message i goes to the transport: a
--   compare-and-set queued + our owner -> sending (durable). It returns
--   false (the client cancels that message) when the set fails, when the
--   record expired (it is marked expired), when the worker is stopping or
--   past its deadline, or when the store failed.
-- * on_outcome(i, outcome): the outcome recorded at once: ok -> sent
--   (provider_id, code), err.maybe_sent -> maybe_sent, cancelled/expired ->
--   what on_sending recorded stays (a record the transport expired after
--   on_sending becomes expired), any other error -> failed.
-- So at most `concurrency` records are ever in sending per worker (what
-- send_many has in flight), and a record is only sent by the worker that
-- won its compare-and-set. After the round the worker's claims that were
-- never handed over go back to the queue.
--
-- Recovery (on open and before each round): a worker owner id is
-- "<pid>@<host>:<random>"; an owner on this host whose pid is not alive is
-- dead: its sending records become maybe_sent (never resent by ksms), its
-- claimed queued records are released. Owners on other hosts are left
-- alone (the SQLite store is a one-machine store), except by a store that
-- keeps leases (store:renew and store:is_dead, the Redis store): the worker
-- renews its lease while it runs, and an owner whose lease lapsed is dead
-- wherever it ran.
--
-- SQLite calls block: run the worker in a plain Lua process, not inside
-- nginx.
-- @module ksms.outbox.worker
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"
local misuse = errors.misuse

local type, pairs, ipairs, pcall, error, tostring, tonumber = type, pairs, ipairs, pcall, error, tostring, tonumber
local format, floor, max, sort = string.format, math.floor, math.max, table.sort
local monotonic = core.monotonic
local sleep, getpid, pid_alive, hostname = core.sleep, core.getpid, core.pid_alive, core.hostname

local _M = { _VERSION = "0.2.0" }

local RUN_OPTIONS = { clients = "table", concurrency = "number", until_idle = "boolean", deadline = "number",
  batch = "number", poll_interval = "number" }

--- The pid and host an owner id names, or nil when it is not one.
-- @tparam string owner
-- @return pid (number), host (string)
function _M.parse_owner(owner)
  if type(owner) ~= "string" then return nil end
  local pid, host = owner:match("^(%d+)@(.*):%x+$")
  pid = tonumber(pid)
  if not pid or pid < 1 or pid > 2147483647 then return nil end
  return pid, host
end

--- Whether an owner is a dead worker: one whose lease lapsed, when the store
-- keeps leases (store:is_dead, the Redis store), or one of this host whose
-- pid is not alive. The same pid as ours is not dead: it is this process
-- (another outbox object) or a reused pid, and either way not ours to judge.
-- @tparam string owner
-- @tparam[opt] string self_owner this worker's id (never dead)
-- @param[opt] store the outbox's store
-- @treturn boolean
function _M.is_dead(owner, self_owner, store)
  if owner == self_owner then return false end
  -- A store with leases (Redis) knows of owners on any machine.
  if store and type(store.is_dead) == "function" and store:is_dead(owner) == true then return true end
  local pid, host = _M.parse_owner(owner)
  if not pid or host ~= hostname() or pid == getpid() then return false end
  return not pid_alive(pid)
end

--- Recovers every dead owner's records (see the module comment).
-- @param ob the outbox
-- @return { maybe_sent = n, released = n }, or nil, err
function _M.recover(ob)
  local total = { maybe_sent = 0, released = 0 }
  local owners, err = ob.store:owners()
  if not owners then return nil, err end
  for _, owner in ipairs(owners) do
    if _M.is_dead(owner, ob.owner, ob.store) then
      local r, rerr = ob.store:recover(owner)
      if not r then return nil, rerr end
      total.maybe_sent = total.maybe_sent + r.maybe_sent
      total.released = total.released + r.released
    end
  end
  return total
end

-- The lease a store with leases (store:renew) keeps for this worker: its
-- records are recovered by others once it has not renewed for LEASE_TTL
-- seconds (it died, or it was paused that long). Renewed every third of it.
_M.LEASE_TTL = 30

--- Renews this worker's lease when its store keeps leases and a third of
-- the TTL has passed (force: now). true, or nil, err (the store failed).
-- @param ob the outbox
-- @tparam[opt] boolean force
function _M.renew(ob, force)
  local st = ob.store
  if type(st.renew) ~= "function" then return true end
  local t = monotonic()
  local ttl = ob.lease_ttl or _M.LEASE_TTL
  if not force and ob.lease_at and t - ob.lease_at < ttl / 3 then return true end
  local ok, err = st:renew(ob.owner, ttl)
  if not ok then return nil, err end
  ob.lease_at = t
  return true
end

-- A provider's id as text: cjson gives Lua 5.4 floats (12345.0).
local function id_text(v)
  if type(v) == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then return format("%.0f", v) end
    return tostring(v)
  end
  if type(v) == "string" then return v end
  return nil
end

local function code_of(v)
  local t = type(v)
  if t == "string" or t == "number" then return v end
  return nil
end

--- The two steps every sender of outbox records takes per record, shared by
-- ob:run's rounds and ksms.oneshot.fleet's holder:
-- h.sending(r) -> boolean: just before record r goes to the transport, the
--   compare-and-set queued + our owner -> sending (false: do not send it);
-- h.outcome(r, out): its outcome recorded (see the module comment).
-- o: deadline (epoch s), guard() (false: send nothing more, e.g. a lock
-- lost), fence ({ key, value }: the set is done only while the Redis key
-- holds value), sending_fields(r) (fields set with the sending mark).
-- h.error() is the first store failure (nil, err), after which nothing
-- more is sent; summary counts sent, failed, maybe_sent, expired.
-- @param ob the outbox
-- @tparam table summary
-- @tparam table o
-- @treturn table h
function _M.hooks(ob, summary, o)
  local store, owner, now = ob.store, ob.owner, ob.now
  local store_err
  local function note(ok, err)
    if ok == nil and not store_err then store_err = err end
    return ok
  end
  local h = { note = note }
  function h.error() return store_err end
  function h.sending(r)
    if store_err or ob.stopping or (o.deadline and now() >= o.deadline) then return false end
    if o.guard and not o.guard() then return false end
    if not note(_M.renew(ob)) then return false end
    if r.expires_at and now() >= r.expires_at then
      if note(store:update(r.key, "queued", "expired", { code = "expired", error = {
        category = "expired", code = "expired", provider = "ksms", maybe_sent = false,
        message = "not handed to a transport before its expires_at: not sent" } }, { owner = owner })) then
        summary.expired = summary.expired + 1
      end
      return false
    end
    local fields = o.sending_fields and o.sending_fields(r) or nil
    return note(store:update(r.key, "queued", "sending", fields, { owner = owner, fence = o.fence })) == true
  end
  function h.outcome(r, out)
    if type(out) ~= "table" then return end
    note(_M.renew(ob))
    local ok
    if out.ok then
      local fields = { provider_id = id_text(out.id) or false, code = code_of(out.code) or false, error = false }
      ok = note(store:update(r.key, { "sending", "queued" }, "sent", fields, { owner = owner }))
      if ok == false then
        -- Recovered meanwhile (or expired by a transport that wrote it
        -- anyway): the provider's answer is the truth.
        ok = note(store:update(r.key, { "maybe_sent", "expired" }, "sent", fields))
      end
      if ok then summary.sent = summary.sent + 1 end
    elseif out.maybe_sent then
      ok = note(store:update(r.key, { "sending", "queued" }, "maybe_sent",
        { code = code_of(out.code) or false, error = out }, { owner = owner }))
      if ok then summary.maybe_sent = summary.maybe_sent + 1 end
    elseif out.category == "cancelled" then
      -- sending refused it (nothing changed) or the transport dropped
      -- it after the mark: not sent, back to the queue.
      note(store:update(r.key, "sending", "queued", { owner = false }, { owner = owner }))
    elseif out.category == "expired" then
      ok = note(store:update(r.key, { "sending", "queued" }, "expired",
        { code = "expired", error = out }, { owner = owner }))
      if ok then summary.expired = summary.expired + 1 end
    else
      ok = note(store:update(r.key, { "sending", "queued" }, "failed",
        { code = code_of(out.code) or false, error = out }, { owner = owner }))
      if ok then summary.failed = summary.failed + 1 end
    end
  end
  return h
end

--- A claimed record's message as the transport takes it (with the
-- record's expires_at), or nil when the stored text is not a message: the
-- record is then failed (never sent; h.note keeps a store failure).
-- @param ob the outbox
-- @param r the record
-- @param h the hooks
-- @tparam table summary counts (failed)
-- @return a message table or nil
function _M.message_of(ob, r, h, summary)
  if r.message then
    local m = {}
    for k, v in pairs(r.message) do m[k] = v end
    m.expires_at = r.expires_at
    return m
  end
  if h.note(ob.store:update(r.key, "queued", "failed", { code = "bad_record", error = {
    category = "invalid_input", code = "bad_record", provider = "ksms", maybe_sent = false,
    message = "the stored message cannot be read: " .. tostring(r.message_error) } }, { owner = ob.owner })) then
    summary.failed = summary.failed + 1 -- the store gave back text that is not a message: never sent
  end
  return nil
end

-- One send_many round over a claimed batch. Returns true, or nil, err
-- when the store failed (the round still ends cleanly).
local function round(ob, client, claimed, o, summary)
  local h = _M.hooks(ob, summary, o)
  local recs, msgs = {}, {}
  for _, r in ipairs(claimed) do
    local m = _M.message_of(ob, r, h, summary)
    if m then recs[#recs + 1], msgs[#recs + 1] = r, m end
  end
  local pok, perr = pcall(client.send_many, client, msgs, { concurrency = o.concurrency,
    on_sending = function(i) return h.sending(recs[i]) end,
    on_outcome = function(i, out) h.outcome(recs[i], out) end })
  -- Claims never handed over go back; a record left in sending by a
  -- raise (its outcome unknown to us) is maybe_sent, as after a crash.
  local ok, err = ob.store:recover(ob.owner)
  if ok then summary.maybe_sent = summary.maybe_sent + ok.maybe_sent end
  if not pok then error(perr, 0) end
  if not ok then return nil, err end
  if h.error() then return nil, h.error() end
  return true
end

--- ob:run{ clients, concurrency, until_idle, deadline, batch, poll_interval } -> summary | nil, err
-- clients: { name = client } beside open's (a name given to both: run's);
-- concurrency (default 8): messages in flight at once, and so the most
-- records ever in sending; batch (default max(64 * concurrency, 256)):
-- records claimed per round; until_idle: return when nothing is claimable;
-- deadline: epoch seconds (the outbox's now) after which nothing more is
-- handed over; poll_interval (default 1 s): the wait when the queue is
-- empty. Without until_idle or deadline it runs until ob:stop().
-- @param ob the outbox
-- @tparam[opt] table opts
-- @return { sent, failed, maybe_sent, expired } counted by this run, or nil, err
function _M.run(ob, opts)
  if opts ~= nil and type(opts) ~= "table" then misuse("ksms.outbox: run takes a table of options") end
  opts = opts or {}
  errors.check_options("ksms.outbox: run", opts, RUN_OPTIONS)
  local c = opts.concurrency or 8
  if type(c) ~= "number" or c < 1 or c ~= floor(c) then misuse("ksms.outbox: run: concurrency must be a whole number >= 1") end
  local batch = opts.batch or max(64 * c, 256)
  if type(batch) ~= "number" or batch < 1 or batch ~= floor(batch) then misuse("ksms.outbox: run: batch must be a whole number >= 1") end
  local poll = opts.poll_interval or 1
  if type(poll) ~= "number" or poll < 0 then misuse("ksms.outbox: run: poll_interval must be seconds >= 0") end
  if opts.deadline ~= nil and type(opts.deadline) ~= "number" then misuse("ksms.outbox: run: deadline must be epoch seconds") end
  local clients = {}
  for name, client in pairs(ob.clients) do clients[name] = client end
  for name, client in pairs(opts.clients or {}) do
    if type(name) ~= "string" or type(client) ~= "table" or type(client.send_many) ~= "function" then
      misuse("ksms.outbox: run: clients." .. tostring(name) .. " is not a ksms client (no send_many)")
    end
    clients[name] = client
    ob.clients[name] = client -- enqueue may use it from now on
  end
  local names = {}
  for name in pairs(clients) do names[#names + 1] = name end
  sort(names)
  if #names == 0 then misuse("ksms.outbox: run needs clients (in open or run)") end
  local o = { concurrency = c, deadline = opts.deadline }
  local summary = { sent = 0, failed = 0, maybe_sent = 0, expired = 0 }
  ob.stopping = false
  while not ob.stopping do
    if o.deadline and ob.now() >= o.deadline then break end
    local ok, err = _M.renew(ob, true)
    if not ok then return nil, err end
    ok, err = _M.recover(ob)
    if not ok then return nil, err end
    local busy = false
    for _, name in ipairs(names) do
      if ob.stopping then break end
      local recs, expired = ob.store:claim(name, ob.owner, batch, ob.now())
      if not recs then return nil, expired end
      summary.expired = summary.expired + expired
      if expired > 0 then busy = true end
      if #recs > 0 then
        busy = true
        local rok, rerr = round(ob, clients[name], recs, o, summary)
        if not rok then return nil, rerr end
      end
    end
    if not busy then
      if opts.until_idle then break end
      local wait = poll
      if o.deadline then wait = math.min(wait, max(0, o.deadline - ob.now())) end
      sleep(wait)
    end
  end
  ob.stopping = false
  return summary
end

return _M
