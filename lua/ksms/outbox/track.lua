--- ksms.outbox.track: delivery and settling "maybe sent" for the outbox.
--
--   ob:track{ clients, interval = 5, until_idle, deadline, rounds,
--             per_round = 50, max_age = 259200, skew = 300, max_pages = 4 }
--     -> summary | nil, err
--   ob:reconcile(key [, { clients, skew, max_pages }]) -> report | nil, err
--
-- track moves `sent` records to `delivered` or `undelivered`:
--   ppurio   client:report(cmid) for each sent record with its cmid
--            (provider_id), at most per_round a round per client;
--   Cafe24   client:history{...} searched by recipient, time and text
--            (ksms.outbox.lookup), at most per_round records and max_pages
--            history pages per recipient a round;
--   OneShot  the reports the server pushes, matched by UserMsgId (the
--            record's provider_id): the outbox adds a report handler to
--            every OneShot client it runs (client:add_report_handler), so
--            reports arriving while ob:run sends are recorded too; track
--            keeps the session bound and polled between rounds.
--   Senders and MessageMe have no delivery lookup: their records stay sent.
-- A record sent more than max_age seconds ago is no longer polled.
-- Rounds are interval seconds apart. track returns after `rounds` rounds,
-- at `deadline` (epoch seconds, the outbox's clock), or with until_idle
-- once a whole pass over every client's sent records found none that can
-- still be settled, or after ob:stop(); with none of these it runs until
-- its process ends.
--
-- reconcile looks a `maybe_sent` record up where the provider can say
-- whether it arrived (Cafe24's history; ppurio's report when the record
-- has a cmid) and returns { key, outcome, state, provider, evidence,
-- record }: outcome "sent" (the record is now sent with code "reconciled";
-- evidence names the history entry or report: for Cafe24 the record's
-- provider_id becomes the entry's reference, and the evidence is kept as
-- JSON in the store's meta "reconcile:<key>"), "not_found" (searched, nothing; it stays
-- maybe_sent; evidence says what was searched), "no_lookup" (Senders,
-- MessageMe, OneShot, ppurio without a cmid: nothing can be asked),
-- "not_maybe_sent" (the record is in another state; nothing done) or
-- "changed" (its state changed while it was being looked up). nil, err
-- for an unknown key, a client not given, a failed lookup or store call.
-- @module ksms.outbox.track
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"
local lookup = require "ksms.outbox.lookup"
local cjson = require "cjson.safe"

local type, pairs, ipairs, tostring, setmetatable, error = type, pairs, ipairs, tostring, setmetatable, error
local sort = table.sort
local format = string.format
local os_time = os.time
local sleep = core.sleep
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

local json = cjson.new() -- our own: the caller's cjson settings never change ours

local KIND = lookup.KIND
local STASH_MAX = 1000 -- pushed reports kept while their record is still being sent
local STASH_TTL = 600  -- seconds a report for no record is kept (its outcome may be recorded late)

local function now_of(ob)
  local f = ob.now
  if type(f) == "function" then
    local t = f()
    if type(t) == "number" then return t end
  end
  return os_time()
end

local function store_error(err, what)
  if type(err) == "table" and err.category then return err end
  return require("ksms.outbox.store").error("io", what .. ": " .. tostring(err))
end

-- The per-outbox state of pushed reports: counters and the stash.
local function delivery_of(ob)
  local d = ob._delivery
  if not d then
    -- order[head..tail]: the stash's keys, oldest first (a count, not #:
    -- the list has holes at its head).
    d = { reports = 0, unmatched = 0, applied = 0, stashed = 0, dropped = 0, stash = {}, order = {},
      head = 1, tail = 0 }
    ob._delivery = d
  end
  return d
end

-- ---- settling ----

-- sent -> delivered | undelivered. true, false (the record moved on
-- meanwhile), or nil, err (the store failed).
local function settle(store, rec, verdict, fields, from)
  local ok, err = store:update(rec.key, from or { "sent" }, verdict, fields)
  if ok == nil and err ~= nil then return nil, store_error(err, "the store could not record the delivery") end
  return ok and true or false
end

-- ---- OneShot pushed reports ----

-- What a pushed report records: its Result as the code, and for a failed
-- delivery the protocol's error (category, code, message).
local function report_fields(ev)
  local fields = { code = ev.result }
  if not ev.ok then
    local o = type(ev.outcome) == "table" and ev.outcome or {}
    fields.error = { category = o.category or "unknown", code = o.code or ev.result, provider = "oneshot",
      message = type(o.message) == "string" and o.message:sub(1, 200) or "delivery failed" }
  end
  return fields
end

--- Applies one pushed OneShot report to the outbox record whose
-- provider_id is its UserMsgId: "applied", "unmatched", "later" (the record
-- is still being sent), "done" (already settled), or nil, err (the store
-- failed). ksms.oneshot.fleet's holder calls it for every report.
-- @param ob the outbox
-- @tparam string name the client's name in the outbox
-- @tparam table ev the protocol's report event
-- @return how, or nil, err
function _M.apply_report(ob, name, ev)
  local store = ob.store
  local id = ev.user_msg_id
  if type(id) ~= "string" or id == "" then return "unmatched" end
  local rec, err = store:find_ref(name, id)
  if not rec then
    if err ~= nil then return nil, store_error(err, "the store could not look the report's UserMsgId up") end
    return "unmatched"
  end
  local st = rec.state
  if st == "queued" or st == "sending" then return "later" end
  if st ~= "sent" and st ~= "maybe_sent" then return "done" end
  local verdict = ev.ok and "delivered" or "undelivered"
  -- A report for a maybe_sent record is the server's word that it had it.
  local ok, uerr = settle(store, rec, verdict, report_fields(ev), { "sent", "maybe_sent" })
  if ok == nil then return nil, uerr end
  return ok and "applied" or "done"
end

local function stash(d, name, ev)
  local k = name .. "\0" .. tostring(ev.user_msg_id)
  if d.stash[k] then return end
  if d.tail - d.head + 1 >= STASH_MAX then
    local old = d.order[d.head]
    d.order[d.head] = nil
    d.head = d.head + 1
    if d.stash[old] then d.stash[old] = nil; d.dropped = d.dropped + 1 end
  end
  d.stash[k] = { name = name, ev = ev, at = os_time() }
  d.tail = d.tail + 1
  d.order[d.tail] = k
  d.stashed = d.stashed + 1
end

-- Retries the stashed reports; returns how many wait for a record still
-- being sent (those for no record do not keep track from being idle).
local function flush_stash(ob)
  local d = delivery_of(ob)
  local order, kept, waiting = d.order, {}, 0
  local t = os_time()
  for i = d.head, d.tail do
    local k = order[i]
    local s = d.stash[k]
    if s then
      local how = _M.apply_report(ob, s.name, s.ev)
      if how == "later" or how == nil then
        kept[#kept + 1] = k
        waiting = waiting + 1
      elseif how == "unmatched" and t - s.at < STASH_TTL then
        kept[#kept + 1] = k
      else
        d.stash[k] = nil
        if how == "applied" then d.applied = d.applied + 1 end
      end
    end
  end
  d.order, d.head, d.tail = kept, 1, #kept
  return waiting
end

local watched = setmetatable({}, { __mode = "k" })

--- Makes the outbox receive the reports a OneShot client is pushed
-- (idempotent): a handler added with client:add_report_handler, after the
-- client's own on_report. A report whose record cannot be written (the
-- store failed) is left unacknowledged, so the server pushes it again
-- after a reconnect. One for a record still being sent, or for no record
-- (counted as unmatched: its outcome may not be recorded yet, or it is a
-- message sent outside the outbox), is acknowledged and kept in memory
-- (at most 1000; a report for no record at most 10 minutes), and applied
-- at the next track round or when ob:run returns.
-- @param ob the Outbox
-- @tparam string name the client's name in the outbox
-- @param client a ksms.client("oneshot", ...)
function _M.watch(ob, name, client)
  if type(client) ~= "table" or KIND[client.provider] ~= "push" then return false end
  local w = watched[client]
  if w then w.ob, w.name = ob, name; return true end
  if type(client.add_report_handler) ~= "function" then return false end
  w = { ob = ob, name = name }
  watched[client] = w
  client:add_report_handler(function(ev)
    local o = w.ob
    local d = delivery_of(o)
    d.reports = d.reports + 1
    local how, err = _M.apply_report(o, w.name, ev)
    if how == nil then error(err, 0) end -- unacknowledged: pushed again later
    if how == "unmatched" then
      -- Perhaps its outcome is not recorded yet: kept a while, then dropped.
      d.unmatched = d.unmatched + 1
      stash(d, w.name, ev)
    elseif how == "later" then stash(d, w.name, ev)
    elseif how == "applied" then d.applied = d.applied + 1 end
  end)
  return true
end

-- ---- polling ----

local function check_opts(o, known, where)
  if o == nil then return {} end
  if type(o) ~= "table" then misuse(where .. ": options table expected") end
  for k, v in pairs(o) do
    local t = known[k]
    if not t then misuse(format("%s: unknown option '%s'", where, tostring(k))) end
    if t == "number" and (type(v) ~= "number" or v ~= v or v < 0) then
      misuse(format("%s: %s must be a number >= 0", where, k))
    elseif t ~= "number" and type(v) ~= t then
      misuse(format("%s: %s must be a %s", where, k, t))
    end
  end
  return o
end

local TRACK_OPTS = { clients = "table", interval = "number", until_idle = "boolean", deadline = "number",
  rounds = "number", per_round = "number", max_age = "number", skew = "number", max_pages = "number" }

-- The times a record's send happened between: from when it was stored (or
-- handed to the transport) to when its outcome was recorded.
local function window(rec, skew)
  local hi = rec.updated_at or rec.created_at
  local lo = rec.created_at or hi
  if type(hi) ~= "number" or type(lo) ~= "number" then return nil end
  return lo - skew, hi + skew
end

local function claimed_by_other(store, name, rec)
  return function(ref)
    local other, err = store:find_ref(name, ref)
    if other == nil and err ~= nil then return true end -- the store failed: match nothing
    return type(other) == "table" and other.key ~= rec.key
  end
end

-- The fields a verdict records: the provider's code, and for a failed
-- delivery an error saying what the provider said.
local function verdict_fields(provider, verdict, code, category, message, ref)
  local fields = { code = code, provider_id = ref }
  if verdict == "undelivered" then
    fields.error = { category = category or "recipient", code = code, provider = provider,
      message = type(message) == "string" and message:sub(1, 200) or "delivery failed" }
  end
  return fields
end

-- One lookup for a sent record: verdict, detail, fields for the update.
local function look(ob, c, rec, o)
  local client, provider = c.client, c.client.provider
  if provider == "ppurio" then
    local verdict, detail = lookup.ppurio(client, rec.provider_id)
    return verdict, detail, verdict_fields(provider, verdict, detail.call_status, detail.category,
      detail.description and ("report " .. tostring(detail.call_status) .. ": " .. detail.description))
  end
  local lo, hi = window(rec, o.skew)
  if not lo then return "not_found", { reason = "the record has no times" } end
  local verdict, detail = lookup.cafe24(client, rec, { lo = lo, hi = hi, max_pages = o.max_pages,
    claimed = claimed_by_other(ob.store, c.name, rec) })
  local entry = detail.searched and detail.searched[1] and detail.searched[1].entry
  local status = entry and entry.status
  return verdict, detail, verdict_fields(provider, verdict, status, "recipient",
    "Cafe24's history says the message failed (sendStatus 9" .. (entry and entry.refunded_at
      and (", refunded " .. entry.refunded_at) or "") .. ")", detail.ref)
end

-- Advances a client's pass over its sent records (in seq order, from
-- c.since) by one page of at most 2 * per_round records, and at most
-- per_round lookups. The page is read whole before any record is updated:
-- a store's cursor need not survive updates of the rows it walks.
-- Returns nil, err when the store fails.
local function step(ob, c, o, s)
  local store, t = ob.store, now_of(ob)
  if not c.since then c.since, c.pass_pending = 0, 0 end
  local limit = o.per_round * 2
  local it, ierr = store:iterate { state = "sent", client = c.name, since = c.since, limit = limit }
  if not it then return nil, store_error(ierr, "the store could not list sent records") end
  local page = {}
  for rec in it do page[#page + 1] = rec end
  local looked, read = 0, 0
  local polled = KIND[c.client.provider] ~= "push"
  for _, rec in ipairs(page) do
    if looked >= o.per_round then break end
    read = read + 1
    if type(rec.seq) == "number" then c.since = rec.seq end
    local sent_at = rec.updated_at or rec.created_at
    if type(sent_at) ~= "number" or t - sent_at > o.max_age then
      s.stale = s.stale + 1
    elseif not polled then
      c.pass_pending = c.pass_pending + 1 -- OneShot: waits for its pushed report
    elseif c.client.provider == "ppurio" and (type(rec.provider_id) ~= "string" or rec.provider_id == "") then
      s.stale = s.stale + 1 -- no cmid: nothing to ask
    else
      looked = looked + 1
      s.lookups = s.lookups + 1
      local verdict, _, fields = look(ob, c, rec, o)
      if verdict == "delivered" or verdict == "undelivered" then
        local ok, err = settle(store, rec, verdict, fields)
        if ok == nil then return nil, err end
        if ok then s[verdict] = s[verdict] + 1 else s.raced = s.raced + 1 end
      else
        if verdict == "error" then s.errors = s.errors + 1 end
        c.pass_pending = c.pass_pending + 1
      end
    end
  end
  if read == #page and #page < limit then
    -- The end of the sent records: the pass is complete.
    c.since, c.last_pending, c.passes = nil, c.pass_pending, (c.passes or 0) + 1
    c.in_pass = false
  else
    c.in_pass = true
  end
  return true
end

local function pump(pushed, wait)
  if #pushed == 0 then
    if wait > 0 then sleep(wait) end
    return
  end
  local share = wait / #pushed
  for _, c in ipairs(pushed) do
    local session = c.client.session
    if session and not session.bound then session:connect() end
    if session then session:poll(share) end
  end
end

--- Runs the delivery polling (see the module's header for the options).
-- @param ob the Outbox
-- @tparam[opt] table o clients, interval, until_idle, deadline, rounds, per_round, max_age, skew, max_pages
-- @return summary { rounds, lookups, delivered, undelivered, pending, stale, errors, raced, reports, unmatched, no_lookup = { names } } | nil, err
function _M.track(ob, o)
  o = check_opts(o, TRACK_OPTS, "ob:track")
  local opts = { interval = o.interval or 5, per_round = o.per_round or 50, max_age = o.max_age or 3 * 86400,
    skew = o.skew or 300, max_pages = o.max_pages or 4 }
  if opts.per_round < 1 then misuse("ob:track: per_round must be at least 1") end
  local clients = o.clients or ob.clients or {}
  local names = {}
  for name in pairs(clients) do names[#names + 1] = name end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local list, pushed = {}, {}
  local s = { rounds = 0, lookups = 0, delivered = 0, undelivered = 0, pending = 0, stale = 0, errors = 0,
    raced = 0, reports = 0, unmatched = 0, no_lookup = {} }
  for _, name in ipairs(names) do
    local client = clients[name]
    if type(client) ~= "table" then misuse("ob:track: clients." .. tostring(name) .. " is not a client") end
    local kind = KIND[client.provider]
    if kind then
      local c = { name = name, client = client }
      list[#list + 1] = c
      if kind == "push" then
        _M.watch(ob, name, client)
        pushed[#pushed + 1] = c
      end
    else
      s.no_lookup[#s.no_lookup + 1] = name
    end
  end
  local d = delivery_of(ob)
  local reports0, unmatched0 = d.applied, d.unmatched
  ob.stopping = false -- ob:stop() (from a callback, a signal handler) ends it as it ends ob:run
  while not ob.stopping do
    local waiting = flush_stash(ob)
    local idle = waiting == 0
    for _, c in ipairs(list) do
      local ok, err = step(ob, c, opts, s)
      if not ok then
        err.summary = s
        return nil, err
      end
      if c.last_pending == nil or c.last_pending > 0 or c.in_pass then idle = false end
    end
    s.rounds = s.rounds + 1
    s.reports, s.unmatched = d.applied - reports0, d.unmatched - unmatched0
    if o.rounds and s.rounds >= o.rounds then break end
    if o.until_idle and idle or ob.stopping then break end
    local wait = opts.interval
    if o.deadline then
      local left = o.deadline - now_of(ob)
      if left <= 0 then break end
      if left < wait then wait = left end
    end
    pump(pushed, wait)
  end
  local pending = 0
  for _, c in ipairs(list) do pending = pending + (c.in_pass and c.pass_pending or c.last_pending or 0) end
  s.pending = pending + flush_stash(ob)
  ob.stopping = false
  s.reports, s.unmatched = d.applied - reports0, d.unmatched - unmatched0
  return s
end

-- ---- reconcile ----

local RECONCILE_OPTS = { clients = "table", skew = "number", max_pages = "number" }

local function report(rec, outcome, provider, evidence, state)
  return { key = rec.key, outcome = outcome, state = state or rec.state, provider = provider,
    evidence = evidence, record = rec }
end

--- Settles a maybe_sent record where the provider can say (see the module's header).
-- @param ob the Outbox
-- @tparam string key
-- @tparam[opt] table o clients, skew, max_pages
-- @return report | nil, err
function _M.reconcile(ob, key, o)
  if type(key) ~= "string" then misuse("ob:reconcile: key must be a string") end
  o = check_opts(o, RECONCILE_OPTS, "ob:reconcile")
  local store = ob.store
  local rec, gerr = store:get(key)
  if not rec then
    if gerr ~= nil then return nil, store_error(gerr, "the store could not read the record") end
    return nil, errors.new { category = "invalid_input", code = "unknown_key",
      message = format("no record with key %q", key:sub(1, 64)) }
  end
  if rec.state ~= "maybe_sent" then return report(rec, "not_maybe_sent", nil, nil) end
  local client = (o.clients or ob.clients or {})[rec.client]
  if type(client) ~= "table" then
    return nil, errors.new { category = "invalid_input", code = "no_client",
      message = format("record %q was sent with client %q, which this outbox was not given", key:sub(1, 64),
        tostring(rec.client)) }
  end
  local provider = client.provider
  local verdict, detail, ref
  if provider == "cafe24" then
    local lo, hi = window(rec, o.skew or 300)
    if not lo then return report(rec, "not_found", provider, { reason = "the record has no times" }) end
    verdict, detail = lookup.cafe24(client, rec, { lo = lo, hi = hi, max_pages = o.max_pages or 4,
      claimed = claimed_by_other(store, rec.client, rec) })
    detail.source = "cafe24 history"
    ref = detail.ref
  elseif provider == "ppurio" and type(rec.provider_id) == "string" and rec.provider_id ~= "" then
    verdict, detail = lookup.ppurio(client, rec.provider_id)
    detail.source = "ppurio report"
    -- A report with a call_status is the provider's word that it had it.
    if verdict == "pending" and not detail.call_status then verdict = "not_found" end
  else
    local why = provider == "ppurio" and "ppurio reports by cmid, and this record has none"
      or provider == "oneshot" and "OneShot has no lookup: only the reports it pushes, matched by UserMsgId"
      or (tostring(provider) .. " offers no lookup of sent messages")
    return report(rec, "no_lookup", provider, { reason = why })
  end
  if verdict == "error" then
    local err = errors.new { category = (detail.error and detail.error.category) or "unknown",
      code = (detail.error and detail.error.code) or "lookup", provider = provider, retryable = true,
      message = "the lookup failed: " .. tostring(detail.error and detail.error.message or detail.message) }
    err.evidence = detail
    return nil, err
  end
  if verdict == "not_found" then return report(rec, "not_found", provider, detail) end
  local ok, uerr = settle(store, rec, "sent", { provider_id = ref, code = "reconciled" }, { "maybe_sent" })
  if ok == nil then return nil, uerr end
  if not ok then return report(store:get(key) or rec, "changed", provider, detail) end
  -- The evidence stays with the store (the record's provider_id names the
  -- history entry; the whole search is in meta "reconcile:<key>").
  local text = json.encode { at = now_of(ob), provider = provider, evidence = detail }
  if text then store:meta_set("reconcile:" .. key, text) end
  return report(store:get(key) or rec, "sent", provider, detail, "sent")
end

--- Attaches track and reconcile to the Outbox object, and has ob:run add
-- the outbox's report handler to the OneShot clients it runs.
-- @tparam table Outbox the outbox's method table
function _M.attach(Outbox)
  Outbox.track = _M.track
  Outbox.reconcile = _M.reconcile
  local run = Outbox.run
  if type(run) == "function" and not Outbox._tracked_run then
    Outbox._tracked_run = run
    Outbox.run = function(self, o)
      local clients = type(o) == "table" and type(o.clients) == "table" and o.clients or self.clients
      if type(clients) == "table" then
        for name, c in pairs(clients) do _M.watch(self, name, c) end
      end
      local a, b = run(self, o)
      flush_stash(self)
      return a, b
    end
  end
end

return _M
