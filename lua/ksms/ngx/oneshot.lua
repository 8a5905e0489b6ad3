--- ksms.ngx.oneshot: SMTNT OneShot inside nginx. The provider allows one
-- bound connection per account, so one worker (the "binder", whichever
-- holds a lock in the shared dictionary) keeps the session; handlers in any
-- worker queue messages in the dictionary and read their outcomes there.
--
--   # nginx.conf, http block
--   lua_shared_dict ksms_oneshot 10m;   # same name and size: survives reload
--   init_worker_by_lua_block {
--     require("ksms.ngx.oneshot").start {
--       dict = "ksms_oneshot", host =, port =, id =, password =, key =, iv =,
--       on_report = function(r) ... end,    -- also on_spam, on_change_phone
--       reconnect_delay = 30, keepalive_interval = 25, queue_limit = 10000,
--       -- and outcome_ttl = 600, pending_ttl = 3600, lock_ttl = 10,
--       -- lock_interval = 0.5, queue_poll = 0.02, prefetch, drain_timeout = 3,
--       -- close_timeout = 2, outside_window = "hold" | "refuse", prefix,
--       -- connect_timeout, write_timeout, read_timeout, on_event, logger
--       -- (logger(level, message, fields): the binder's log lines; default ngx.log),
--       -- clock, and any ksms.oneshot.protocol option (ksms.oneshot.driver
--       -- has them all; the binder runs that driver over a cosocket,
--       -- ksms.oneshot.sockets.cosocket)
--     }
--   }
--
--   -- any handler (rewrite, access, content, timer: it may sleep)
--   local oneshot = require "ksms.ngx.oneshot"
--   local res, err = oneshot.send({ to =, from =, text = }, { dict = "ksms_oneshot", timeout = 10 })
--   local id, err  = oneshot.submit(msg, opts)       -- queued; returns at once
--   local res, err = oneshot.outcome(id, { timeout = 0 })   -- look, or wait
--   local t        = oneshot.status(opts)            -- queue, holder, counters
--
-- host: an address, or a name with a `resolver` directive in nginx (a
-- cosocket does not use the system resolver).
--
-- On Redis (a fleet): start{ redis = "redis://HOST:PORT/DB", account =
-- NAME, host =, port =, id =, password =, key =, iv =, lock_ttl = 10, ... }
-- (store = "redis://..." is the same option; no dict) takes the options of
-- ksms.oneshot.fleet.run: every worker of every nginx runs a fleet member
-- in a timer, the fleet's Redis lock picks the one holder across workers
-- and machines, and handlers keep the same four calls, given { account =
-- NAME } instead of { dict = }: submit stores the message in the
-- account's Redis outbox and returns its record key (opts.key, the
-- message's id, or a generated one), outcome reads the record, status
-- says this worker's role. Queued messages survive a full nginx stop.
-- The handlers talk to Redis over cosockets (rewrite, access, content,
-- timer). See ksms.ngx.oneshot_fleet.
--
-- Outcomes have the shape of ksms.oneshot.session's on_result: a result
-- { ok = true, provider = "oneshot", code = 0, id, sub_id, raw } (raw left
-- out, raw_dropped said, when the server's answer cannot be JSON) or nil, err
-- (a ksms error; category "unknown" with maybe_sent = true when the
-- connection died after the message was written: never resent). A wait
-- that runs out gives category "timeout" with pending = true: the message
-- stays queued, ask again with outcome(id). dict defaults to the one
-- dictionary start was given.
--
-- Checks: programmer misuse raises; bad input (a wrong number, a text too
-- long, ...) returns nil, err in the handler before anything is queued
-- (ksms.oneshot.message, the checks the protocol's submit runs, with the
-- binder's sms_max and lms_max); a full queue gives category "rate_limit".
-- msg.images (MMS uploads) is not supported here: give files, names of
-- images already uploaded. Reports are acknowledged after on_report
-- returns; one handled but not yet acknowledged when the binder moves to
-- another worker is delivered again there (at least once).
--
-- Why a worker and not the privileged agent: the agent needs OpenResty's
-- nginx patches (stock nginx with lua-nginx-module has none), and a lock
-- with a TTL also moves the session to another worker when the holder dies.
-- On reload or shutdown (ngx.worker.exiting()) the binder stops taking
-- messages, gives the ones it took but did not write back to the head of the
-- queue, waits for the answers of written ones (drain_timeout), unbinds
-- and only then releases the lock, so the next binder never binds beside it.
-- A holder that dies without that (a crash, kill -9) leaves claims: the next
-- holder, after lock_ttl, queues the unwritten ones again and gives the
-- written ones their maybe-sent outcome.
-- @module ksms.ngx.oneshot
-- @alias _M

local queue = require "ksms.ngx.queue"
local driver = require "ksms.oneshot.driver"
local cosocket = require "ksms.oneshot.sockets.cosocket"
local protocol = require "ksms.oneshot.protocol"
local message = require "ksms.oneshot.message"
local events = require "ksms.events"
local errors = require "ksms.errors"
local cjson = require "cjson"
local in_window = require("ksms.oneshot.window").in_window
local misuse = errors.misuse

local ngx = ngx
local type, pairs, pcall, tostring, tonumber, error, next = type, pairs, pcall, tostring, tonumber, error, next
local min, max, ceil = math.min, math.max, math.ceil
local sort = table.sort
local timer_at, timer_every, exiting, sleep = ngx.timer.at, ngx.timer.every, ngx.worker.exiting, ngx.sleep
local now, update_time = ngx.now, ngx.update_time
local ngx_log, ERR, WARN, NOTICE = ngx.log, ngx.ERR, ngx.WARN, ngx.NOTICE
local LEVEL_NAME = { [ERR] = "error", [WARN] = "warn", [NOTICE] = "notice" }

-- The binder's log lines: to start{ logger = } when given (ksms.events.logger:
-- a raising logger is ignored), else to ngx.log.
local function log(st, level, ...)
  if st.logger then
    local parts = { ... }
    for i = 1, #parts do parts[i] = tostring(parts[i]) end
    st.logger(LEVEL_NAME[level] or "error", table.concat(parts), { provider = "oneshot", event = "binder" })
  else
    ngx_log(level, ...)
  end
end

local _M = { _VERSION = "0.2.0" }

local json = cjson.new()
json.decode_max_depth(20)
local encode, decode = json.encode, json.decode

local started = {}   -- dict name -> state (per worker)
local accounts = {}  -- account -> state of the Redis mode (per worker)
local fleet_mode     -- ksms.ngx.oneshot_fleet, loaded by a start with redis

-- Options of this module; the rest go to the driver and the protocol.
local OWN = { dict = "string", queue_limit = "number", outcome_ttl = "number", pending_ttl = "number",
  lock_ttl = "number", lock_interval = "number", queue_poll = "number", prefetch = "number",
  drain_timeout = "number", close_timeout = "number", prefix = "string" }

local function handle_of(id, sub_id)
  if sub_id == nil or sub_id == "" then return id end
  return id .. "#" .. sub_id
end

local function state_for(opts, level)
  local acct = type(opts) == "table" and opts.account or nil
  if acct ~= nil then
    local st = accounts[acct]
    if not st then error("ksms.ngx.oneshot: start{ redis =, account = \"" .. tostring(acct) .. "\" } was not called in this worker", level + 1) end
    return st
  end
  local name = opts and opts.dict
  if name == nil then
    local only, st = next(started)
    local acct_only, ast = next(accounts)
    if only and next(started, only) == nil and not acct_only then return st end
    if acct_only and next(accounts, acct_only) == nil and not only then return ast end
    error("ksms.ngx.oneshot: give opts.dict or opts.account (start{} was called for none or several)", level + 1)
  end
  local st = started[name]
  if not st then error("ksms.ngx.oneshot: start{ dict = \"" .. tostring(name) .. "\" } was not called in this worker", level + 1) end
  return st
end

-- ---- the binder (runs in the worker holding the lock) ----

local function err_table(e)
  local t = {}
  for k, v in pairs(e) do t[k] = v end
  return t
end

-- The outcome as stored: JSON. The server's raw answer may hold what JSON
-- cannot (1e999 decodes to an infinite number): then it is left out.
local function outcome_doc(res, err)
  if not res then return encode { e = err_table(err) } end
  local ok, doc = pcall(encode, { r = res })
  if ok then return doc end
  local r = {}
  for k, v in pairs(res) do if k ~= "raw" then r[k] = v end end
  r.raw_dropped = "the server's answer cannot be stored as JSON"
  return encode { r = r }
end

local function finish(st, h, res, err)
  st.taken[h] = nil
  st.q:put_outcome(h, outcome_doc(res, err))
  st.q:unclaim(h)
end

local function on_result_for(st, h)
  return function(res, err) finish(st, h, res, err) end
end

-- Takes messages from the shared queue while the session can send soon:
-- a few at a time, so little is held in this worker alone.
local function feed(st)
  local s, q = st.sess, st.q
  if not s.bound or s.outside then return 0 end
  local room = st.prefetch - s:queued()
  while room > 0 do
    local raw = q:pop()
    if not raw then break end
    local ok, entry = pcall(decode, raw)
    if not ok or type(entry) ~= "table" or type(entry.h) ~= "string" or type(entry.m) ~= "table" then
      q:count("bad_entries")
      log(st, ERR, "ksms.ngx.oneshot: dropped an unreadable queue entry")
    else
      local h = entry.h
      q:claim(h, raw)
      q:count("taken")
      local sok, rec, serr = pcall(s.submit, s, entry.m, on_result_for(st, h))
      if not sok then
        finish(st, h, nil, errors.new { category = "invalid_input", code = "rejected", provider = "oneshot",
          message = "the binder refused the message: " .. tostring(rec) })
      elseif not rec then
        finish(st, h, nil, serr)
      else
        st.taken[h] = raw
      end
    end
    room = room - 1
  end
  return room
end

-- Messages taken but not written go back to the head of the shared queue.
local function hand_back(st)
  local list = st.sess:take_queued()
  if #list == 0 then return end
  local raws, q = {}, st.q
  for i = 1, #list do
    local h = handle_of(list[i].rec.id, list[i].rec.sub_id)
    local raw = st.taken[h]
    st.taken[h] = nil
    -- No claim left: a newer holder already took it back (this worker
    -- stalled past lock_ttl). Unclaimed before the push: a crash in
    -- between loses it rather than doubles it.
    if raw and q:claimed(h) then
      q:unclaim(h)
      raws[#raws + 1] = raw
    end
  end
  q:unpop(raws)
  if #raws > 0 then q:count("handed_back", #raws) end
end

local binder

local function publish(st, bound, grant)
  if not st.leader then return end   -- a newer holder speaks for itself
  st.q:set("state", encode { pid = ngx.worker.pid(), bound = bound,
    speed = grant and grant.speed, begin_time = grant and grant.begin_time,
    end_time = grant and grant.end_time, at = ngx.now() })
  if grant then
    st.q:set("grant", encode { begin_time = grant.begin_time, end_time = grant.end_time, speed = grant.speed })
  end
end

-- Stop holding the session: hand back, drain, unbind, release (if ours).
local function stop(st)
  local s, q, cfg = st.sess, st.q, st.cfg
  -- Refreshed before each bounded step (tick no longer runs while the
  -- worker exits): the next holder must not bind before our UnBind.
  if st.leader then q:refresh(st.token, cfg.lock_ttl) end
  s:hold(true)
  hand_back(st)
  if s.conn then
    s:drain(cfg.drain_timeout)
    hand_back(st)       -- any 903/11 put back meanwhile
    if st.leader then q:refresh(st.token, cfg.lock_ttl) end
    s:unbind(cfg.close_timeout)
  end
  hand_back(st)
  s:hold(false)
  if st.leader then
    publish(st, false)
    q:release(st.token, next(st.taken) == nil)
    st.leader = false
    log(st, NOTICE, "ksms.ngx.oneshot: released the binder lock")
  end
end

local function schedule(st, delay)
  local ok, err = timer_at(delay, binder, st)
  if not ok then
    log(st, ERR, "ksms.ngx.oneshot: cannot schedule the binder: ", err)
    stop(st)
    return
  end
  st.pending = true
end

local function run(premature, st)
  local s, q, cfg = st.sess, st.q, st.cfg
  if premature or exiting() or not st.leader then return stop(st) end
  local ok, err = s:open()
  if not ok then
    log(st, WARN, "ksms.ngx.oneshot: ", tostring(err))
    return schedule(st, s:reconnect_wait())
  end
  while true do
    -- The lock itself, each round: tick may not have run if this worker
    -- was stalled, and a newer holder must not see us send.
    if st.leader and q:holder() ~= st.token then
      log(st, ERR, "ksms.ngx.oneshot: the binder lock was lost (stalled longer than lock_ttl?)")
      st.leader = false
    end
    if exiting() or not st.leader then return stop(st) end
    local room = feed(st)
    -- Short waits while the queue may hold work; the answers and pushes
    -- of the server wake the step at once anyway.
    local wait = (s.bound and room > 0 and not s.outside) and cfg.queue_poll or 0.1
    local was_bound = s.bound
    if not s:step(wait) then break end
    if s.bound and not was_bound then
      q:count("binds")
      publish(st, true, s.grant)
      -- About 0.1 s worth of sending, so little sits in this worker alone.
      st.prefetch = cfg.prefetch or max(2, ceil((s.grant.speed or 1) * 0.1))
    end
  end
  q:count("lost")
  publish(st, false)
  -- (the driver logs the lost connection or the failed connect)
  if exiting() or not st.leader then return stop(st) end
  return schedule(st, s:reconnect_wait())
end

binder = function(premature, st)
  st.pending, st.running = false, true
  local ok, err = pcall(run, premature, st)
  if not ok then
    log(st, ERR, "ksms.ngx.oneshot: the binder failed: ", tostring(err))
    pcall(stop, st)
  end
  st.running = false
end

-- A holder that died left claims: written ones get maybe-sent outcomes,
-- the others go back to the head of the queue (oldest first).
local function recover(st)
  local q = st.q
  if q:take_clean() then return end
  local back, n = {}, 0
  for h, v in pairs(q:claims()) do
    q:unclaim(h)
    if v == "s" then
      n = n + 1
      st.q:put_outcome(h, encode { e = err_table(errors.new { category = "unknown", code = "connection_lost",
        provider = "oneshot", maybe_sent = true,
        message = "the binder stopped before the server answered; the message may have been sent" }) })
    else
      local ok, e = pcall(decode, v)
      back[#back + 1] = { raw = v, t = ok and type(e) == "table" and tonumber(e.t) or 0 }
    end
  end
  sort(back, function(a, b) return a.t < b.t end)
  local raws = {}
  for i = 1, #back do raws[i] = back[i].raw end
  q:unpop(raws)
  if n > 0 then q:count("recovered_maybe_sent", n) end
  if #raws > 0 then q:count("recovered", #raws) end
  if n + #raws > 0 then
    log(st, WARN, "ksms.ngx.oneshot: recovered ", #raws, " queued and ", n, " maybe-sent messages of a previous binder")
  end
end

-- Every lock_interval in every worker: the holder refreshes the lock, the
-- others try to take it.
local function tick(premature, st)
  if premature or exiting() then return end
  local q, cfg = st.q, st.cfg
  if st.leader then
    if not q:refresh(st.token, cfg.lock_ttl) then
      log(st, ERR, "ksms.ngx.oneshot: the binder lock was lost (stalled longer than lock_ttl?)")
      st.leader = false
      if not st.running then hand_back(st) end
    elseif not st.pending and not st.running then
      schedule(st, 0)   -- a binder that failed: start again
    end
    return
  end
  if st.pending or st.running then return end   -- still stopping after losing the lock
  if q:acquire(st.token, cfg.lock_ttl) then
    st.leader = true
    q:count("acquired")
    log(st, NOTICE, "ksms.ngx.oneshot: this worker holds the binder lock")
    recover(st)
    schedule(st, 0)
  end
end

-- What a caller may give the driver: its options but the two callbacks
-- the binder sets itself, and auto_reconnect (the binder always reconnects).
local SESSION_OPTIONS = {}
for k, t in pairs(driver.options) do
  if k ~= "on_sending" and k ~= "on_requeued" and k ~= "auto_reconnect" then SESSION_OPTIONS[k] = t end
end

local function check_opts(opts)
  if type(opts) ~= "table" then misuse("ksms.ngx.oneshot.start: options table expected") end
  errors.check_options("ksms.ngx.oneshot.start", opts, OWN, SESSION_OPTIONS, protocol.options)
  for k, t in pairs(OWN) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse("ksms.ngx.oneshot.start: " .. k .. " must be a " .. t) end
  end
  if not opts.dict then misuse("ksms.ngx.oneshot.start: dict (a lua_shared_dict name) is required") end
  local dict = ngx.shared[opts.dict]
  if not dict then misuse("ksms.ngx.oneshot.start: no lua_shared_dict named '" .. opts.dict .. "'") end
  local cfg = {
    queue_limit = opts.queue_limit or 10000, outcome_ttl = opts.outcome_ttl or 600,
    pending_ttl = opts.pending_ttl or 3600, lock_ttl = opts.lock_ttl or 10,
    lock_interval = opts.lock_interval or 0.5, queue_poll = opts.queue_poll or 0.02,
    prefetch = opts.prefetch, drain_timeout = opts.drain_timeout or 3,
    close_timeout = opts.close_timeout or 2, prefix = opts.prefix,
    outside_window = opts.outside_window or "hold",
  }
  if cfg.lock_ttl < 3 * cfg.lock_interval then
    misuse("ksms.ngx.oneshot.start: lock_ttl must be at least 3 lock_interval")
  end
  if cfg.lock_ttl <= cfg.drain_timeout or cfg.lock_ttl <= cfg.close_timeout then
    misuse("ksms.ngx.oneshot.start: lock_ttl must exceed drain_timeout and close_timeout")
  end
  if cfg.outside_window ~= "hold" and cfg.outside_window ~= "refuse" then
    misuse("ksms.ngx.oneshot.start: outside_window is \"hold\" or \"refuse\"")
  end
  local sopts = {}
  for k, v in pairs(opts) do if not OWN[k] then sopts[k] = v end end
  sopts.outside_window = nil   -- the session holds; refusing is done here
  return dict, cfg, sopts
end

--- start(opts) -> true: in init_worker_by_lua, in every worker. With
-- redis (or store) = "redis://..." and account: the Redis mode,
-- ksms.ngx.oneshot_fleet; without: the shared-dict binder.
function _M.start(opts)
  if type(opts) == "table" and (opts.redis ~= nil or opts.store ~= nil) then
    fleet_mode = fleet_mode or require "ksms.ngx.oneshot_fleet"
    if type(opts.account) == "string" and accounts[opts.account] then
      error("ksms.ngx.oneshot.start: already started for account " .. opts.account, 2)
    end
    local st = fleet_mode.start(opts)
    accounts[opts.account] = st
    return true
  end
  local dict, cfg, sopts = check_opts(opts)
  if started[opts.dict] then error("ksms.ngx.oneshot.start: already started for " .. opts.dict, 2) end
  local st = { name = opts.dict, dict = dict, cfg = cfg, taken = {}, leader = false,
    pending = false, running = false, prefetch = cfg.prefetch or 2,
    q = queue.new(dict, cfg),
    token = ngx.worker.pid() .. ":" .. ngx.now() }
  -- The handlers check messages against the binder's limits (sms_max, lms_max).
  st.limits = message.limits_of(sopts)
  sopts.on_sending = function(rec) st.q:claim(handle_of(rec.id, rec.sub_id), "s") end
  sopts.on_requeued = function(rec)
    local h = handle_of(rec.id, rec.sub_id)
    if st.taken[h] then st.q:claim(h, st.taken[h]) end
  end
  sopts.clock = sopts.clock or ngx.time
  st.sess = driver.new("ksms.ngx.oneshot.start", sopts, cosocket)
  st.logger = opts.logger and events.logger(opts.logger) or nil
  if not st.logger then
    st.sess.log = function(level, msg) ngx_log(level == "error" and ERR or WARN, "ksms.ngx.oneshot: ", msg) end
  end
  started[opts.dict] = st
  -- Not a worker (the master, a cache helper, the privileged agent): the
  -- handler side works, no binder runs here.
  if ngx.worker.id() == nil then return true end
  local ok, err = timer_at(0, tick, st)
  if ok then ok, err = timer_every(cfg.lock_interval, tick, st) end
  if not ok then error("ksms.ngx.oneshot.start: cannot create timers: " .. tostring(err), 2) end
  return true
end

-- ---- the handler side ----

local function schedule_error(grant)
  return errors.new { category = "schedule", code = "outside_window", provider = "oneshot", retryable = true,
    message = ("outside the sending window the server grants (%s:00-%s:00 KST)")
      :format(tostring(grant.begin_time), tostring(grant.end_time)) }
end

--- submit(msg, opts) -> id | nil, err: checked, queued, returns at once.
function _M.submit(msg, opts)
  local st = state_for(opts, 2)
  if st.fleet then return fleet_mode.submit(st, msg, opts) end
  if type(msg) ~= "table" then error("ksms.ngx.oneshot.submit: message table expected", 2) end
  if msg.images ~= nil then
    error("ksms.ngx.oneshot.submit: 'images' is not supported here; give 'files' (names of uploaded images)", 2)
  end
  local m = {}
  for k, v in pairs(msg) do m[k] = v end
  if m.id ~= nil and m.user_msg_id ~= nil then error("ksms.ngx.oneshot.submit: give id or user_msg_id, not both", 2) end
  m.id, m.user_msg_id = m.user_msg_id or m.id, nil
  m.sub_id, m.user_msg_sub_id = m.user_msg_sub_id or m.sub_id, nil
  local q = st.q
  if m.id == nil then m.id = q:next_id() end
  if type(m.id) == "number" then m.id = tostring(m.id) end
  if type(m.sub_id) == "number" then m.sub_id = tostring(m.sub_id) end
  local body, err = message.build(m, st.limits) -- raises on misuse, nil, err on bad input
  if not body then return nil, err end
  if st.cfg.outside_window == "refuse" then
    local g = q:get("grant")
    local ok, grant = pcall(decode, g or "null")
    if ok and type(grant) == "table" and not in_window(grant, ngx.time()) then return nil, schedule_error(grant) end
  end
  local h = handle_of(body.UserMsgId, body.UserMsgSubId)
  local ok, qerr = q:push(h, encode { h = h, m = m, t = ngx.now() })
  if not ok then return nil, qerr end
  return h
end

local function decode_outcome(raw)
  local ok, o = pcall(decode, raw)
  if not ok or type(o) ~= "table" then
    return nil, errors.new { category = "protocol", code = "bad_outcome", provider = "oneshot",
      message = "the stored outcome is not readable" }
  end
  if o.r then return o.r end
  local e = o.e
  if type(e) ~= "table" or not errors.categories[e.category] then
    return nil, errors.new { category = "unknown", code = "bad_outcome", provider = "oneshot",
      message = "the stored outcome carries no usable error" }
  end
  return nil, errors.new(e)
end

--- outcome(id, opts) -> result | nil, err; opts.timeout (seconds, 0): how
-- long to wait for it (polling the dictionary with ngx.sleep).
function _M.outcome(h, opts)
  local st = state_for(opts, 2)
  if st.fleet then return fleet_mode.outcome(st, h, opts) end
  if type(h) ~= "string" then error("ksms.ngx.oneshot.outcome: id (a string) expected", 2) end
  local timeout = opts and opts.timeout or 0
  update_time()
  local deadline = now() + timeout
  local nap = 0.005
  while true do
    local raw = st.q:get_outcome(h)
    if raw == nil then
      return nil, errors.new { category = "unknown", code = "no_outcome", provider = "oneshot",
        message = "no message '" .. h .. "' is pending, or its outcome has expired" }
    end
    if raw ~= "" then return decode_outcome(raw) end
    update_time()
    local left = deadline - now()
    if left <= 0 then
      return nil, errors.new { category = "timeout", code = "pending", provider = "oneshot", retryable = true,
        pending = true, id = h,
        message = "no outcome yet; the message stays queued: ask again with outcome(id)" }
    end
    -- Never under 1 ms: nginx rounds it to ngx.sleep(0), which neither
    -- waits nor lets the clock move.
    sleep(max(0.001, min(nap, left)))
    nap = min(nap * 2, 0.05)
  end
end

--- send(msg, opts) -> result | nil, err: submit, then wait (opts.timeout, 30 s).
function _M.send(msg, opts)
  local h, err = _M.submit(msg, opts)
  if not h then return nil, err end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.timeout = o.timeout or 30
  return _M.outcome(h, o)
end

--- status(opts) -> { queued, holder, state, counters }
function _M.status(opts)
  local st = state_for(opts, 2)
  if st.fleet then return fleet_mode.status(st) end
  local q = st.q
  local s = q:get("state")
  local ok, state = pcall(decode, s or "null")
  return { queued = q:length(), holder = q:holder(), state = ok and state ~= cjson.null and state or nil,
    counters = q:counters(), leader_here = st.leader }
end

return _M
