--- ksms.ngx.oneshot_fleet: ksms.ngx.oneshot on Redis, the mode
-- `start{ redis = "redis://HOST:PORT/DB", account = NAME, ... }` selects
-- (`store = "redis://..."` is the same option under the outbox's name).
-- Every worker of every nginx that starts it runs a ksms.oneshot.fleet
-- member (socket = "cosocket") in a timer: the fleet's Redis lock picks
-- the one holder of the account's bound connection across workers, nginx
-- instances and machines (no shared dict, no shared-dict lock), the
-- others stand by. Handlers put messages in the account's Redis outbox
-- and read each record's state there, so what is queued survives a full
-- nginx stop (and start) and a producer on any machine reaches the holder.
--
--   init_worker_by_lua_block {
--     require("ksms.ngx.oneshot").start { redis = "redis://127.0.0.1:6379/0", account = "main",
--       host =, port =, id =, password =, key =, iv =,   -- the OneShot account
--       lock_ttl = 10, on_report = function(r) ... end }   -- and fleet.run's other options
--   }
--   -- rewrite, access, content or timer (they talk to Redis over cosockets)
--   local key, err = oneshot.submit(msg, { account = "main", key = "order-42" })
--   local res, err = oneshot.outcome(key, { account = "main", timeout = 10 })
--   local res, err = oneshot.send(msg, { account = "main", timeout = 10 })
--   local t = oneshot.status { account = "main" }
--
-- submit checks msg as the OneShot client would (bad input: nil, err,
-- nothing stored) and stores it queued before it returns the record's key:
-- opts.key, else the message's id (with "#sub_id"), else a generated one.
-- A key already stored returns the same key and stores nothing: a
-- retried request does not send twice.
-- outcome reads the record: sent, delivered or undelivered give a result
-- { ok = true, provider = "oneshot", code, id (UserMsgId), key, state };
-- failed and expired give nil, err (the error the holder recorded);
-- maybe_sent gives nil, err with maybe_sent = true (never resent by ksms:
-- ksms.outbox's resolve decides); queued and sending are waited for up to
-- opts.timeout (0), then nil, err with category "timeout", pending = true.
-- A Redis that cannot be reached gives nil, err (category "server",
-- retryable). Reports go to on_report in the holding worker and to the
-- account's Redis stream (ksms.oneshot.fleet.reports), deduplicated there.
--
-- The member stops on ngx.worker.exiting() (reload, stop): it writes
-- nothing more, gives its unwritten records back to the queue, waits for
-- the answers of written ones (drain_timeout), unbinds and releases the
-- lock, so a standby (another worker, another nginx) binds at once. A
-- member that raises is closed and started again after restart_delay.
-- @module ksms.ngx.oneshot_fleet
-- @alias _M

local fleet = require "ksms.oneshot.fleet"
local kredis = require "ksms.redis"
local driver = require "ksms.oneshot.driver"
local protocol = require "ksms.oneshot.protocol"
local errors = require "ksms.errors"

local ngx = ngx
local type, pairs, tostring, pcall, error = type, pairs, tostring, pcall, error
local min, max, find = math.min, math.max, string.find
local timer_at, exiting, sleep = ngx.timer.at, ngx.worker.exiting, ngx.sleep
local now, update_time, get_phase = ngx.now, ngx.update_time, ngx.get_phase
local ngx_log, ERR, WARN, NOTICE, INFO = ngx.log, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO
local misuse, new_error, check_options = errors.misuse, errors.new, errors.check_options

local _M = { _VERSION = "0.2.0" }

-- start's options here beside the driver's and the protocol's: the
-- fleet's (ksms.oneshot.fleet) and this module's own.
local OWN = { redis = "string", store = "string", account = "string", namespace = "string",
  outbox_namespace = "string", lock_ttl = "number", window = "number", quiet = "number",
  drain_timeout = "number", standby_interval = "number", dedup_ttl = "number", report_maxlen = "number",
  stop = "function", on_report = "function", redis_timeout = "number", restart_delay = "number" }
local DRIVER = {}
for k, t in pairs(driver.options) do
  if k ~= "on_sending" and k ~= "on_requeued" and k ~= "auto_reconnect" then DRIVER[k] = t end
end
local HANDLER = { account = "string", key = "string", expires_at = "number", timeout = "number" }

-- The phases with cosockets: the handlers talk to Redis only there.
local PHASES = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true }

local LEVELS = { error = ERR, warn = WARN, notice = NOTICE, info = NOTICE, debug = INFO }

-- The member's and its driver's log lines, to ngx.log unless start got a logger.
local function ngx_logger(level, msg)
  ngx_log(LEVELS[level] or WARN, "ksms.ngx.oneshot: ", msg)
end

--- Whether start's options select this mode (redis or store given).
-- @tparam table opts
-- @treturn boolean
function _M.wanted(opts)
  return type(opts) == "table" and (opts.redis ~= nil or opts.store ~= nil)
end

-- The checked options: the fleet member's, and the state's parts.
local function check(opts)
  check_options("ksms.ngx.oneshot.start", opts, OWN, DRIVER, protocol.options)
  for k, t in pairs(OWN) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse("ksms.ngx.oneshot.start: " .. k .. " must be a " .. t) end
  end
  local url = opts.redis
  if opts.store ~= nil then
    if not find(opts.store, "^redis://") then
      misuse("ksms.ngx.oneshot.start: store is \"redis://HOST:PORT/DB\" (leave it out for the shared-dict binder)")
    end
    if url ~= nil and url ~= opts.store then misuse("ksms.ngx.oneshot.start: redis and store differ: give one") end
    url = opts.store
  end
  if type(opts.account) ~= "string" then misuse("ksms.ngx.oneshot.start: account (a name) is required with redis") end
  if opts.restart_delay ~= nil and not (opts.restart_delay >= 0) then
    misuse("ksms.ngx.oneshot.start: restart_delay must be seconds >= 0")
  end
  local fopts = {}
  for k, v in pairs(opts) do
    if k ~= "store" and k ~= "restart_delay" then fopts[k] = v end
  end
  fopts.redis, fopts.socket = url, "cosocket"
  local user_stop = opts.stop
  fopts.stop = function() return exiting() or (user_stop ~= nil and user_stop() and true) or false end
  fopts.logger = opts.logger or ngx_logger
  return url, fopts
end

-- One worker's member loop: F:run until it stops (exiting, or opts.stop);
-- one that raised is closed and made again after restart_delay.
local function loop(premature, st)
  if premature or exiting() then return end
  local m = st.member
  if m.closed then
    m = fleet.new(st.fopts)
    st.member = m
  end
  local ok, err = pcall(m.run, m)
  if ok then return end
  ngx_log(ERR, "ksms.ngx.oneshot: the fleet member failed: ", tostring(err))
  pcall(m.close, m)
  st.restarts = st.restarts + 1
  if exiting() then return end
  local tok, terr = timer_at(st.restart_delay, loop, st)
  if not tok then ngx_log(ERR, "ksms.ngx.oneshot: cannot restart the fleet member: ", terr) end
end

--- The Redis mode of ksms.ngx.oneshot.start (see the module comment):
-- checks the options, makes this worker's fleet member and starts its
-- timer (nothing in a process that is not a worker).
-- @tparam table opts start's options
-- @return the state the handlers below take
function _M.start(opts)
  if opts.dict ~= nil then
    misuse("ksms.ngx.oneshot.start: give dict (the shared-dict binder) or redis (the fleet), not both")
  end
  local url, fopts = check(opts)
  local member = fleet.new(fopts) -- checks the rest; connects nothing yet
  local st = { fleet = true, url = url, account = opts.account, fopts = fopts, member = member,
    outbox_namespace = opts.outbox_namespace, sms_max = opts.sms_max, lms_max = opts.lms_max,
    lock_key = (opts.namespace or fleet.DEFAULT_NAMESPACE) .. ":" .. opts.account .. ":lock",
    restart_delay = opts.restart_delay or 1, restarts = 0 }
  if ngx.worker.id() == nil then return st end
  local ok, err = timer_at(0, loop, st)
  if not ok then error("ksms.ngx.oneshot.start: cannot create the fleet timer: " .. tostring(err), 3) end
  return st
end

-- ---- the handler side ----

local function need_cosocket(what)
  local phase = get_phase()
  if not PHASES[phase] then
    misuse(what .. ": with redis it talks to Redis over a cosocket: call it in a rewrite, access or content "
      .. "handler or a timer, not in " .. tostring(phase))
  end
end

local function handler_opts(what, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then misuse(what .. ": options must be a table") end
  check_options(what, opts, HANDLER)
  return opts
end

-- The worker's producer outbox, opened at the first handler call that
-- needs it (open runs a script) and shared by every request of the worker:
-- its Redis store's connection is a ksms.redis handle, which keeps one
-- cosocket per request, so no request uses or closes another's.
local function outbox_of(st)
  if st.ob then return st.ob end
  local ob, err = fleet.outbox { redis = st.url, account = st.account, outbox_namespace = st.outbox_namespace,
    socket = "cosocket", sms_max = st.sms_max, lms_max = st.lms_max, recover = false }
  if not ob then return nil, err end
  st.ob = ob
  return ob
end

local function key_of(msg, opts)
  if opts.key ~= nil then return opts.key end
  local id = msg.user_msg_id or msg.id
  if id == nil then return nil end
  local sub = msg.user_msg_sub_id or msg.sub_id
  if sub == nil or sub == "" then return tostring(id) end
  return tostring(id) .. "#" .. tostring(sub)
end

--- submit in the Redis mode: checked, stored queued, the record's key.
-- @param st the state start returned
-- @tparam table msg
-- @tparam[opt] table opts account, key, expires_at
-- @return the record's key, or nil, err
function _M.submit(st, msg, opts)
  need_cosocket("ksms.ngx.oneshot.submit")
  if type(msg) ~= "table" then misuse("ksms.ngx.oneshot.submit: message table expected") end
  opts = handler_opts("ksms.ngx.oneshot.submit", opts)
  local ob, err = outbox_of(st)
  if not ob then return nil, err end
  local rec, eerr = ob:enqueue(msg, { key = key_of(msg, opts), client = st.account, expires_at = opts.expires_at })
  if not rec then return nil, eerr end
  return rec.key
end

local RESULT_STATES = { sent = true, delivered = true, undelivered = true }
local ERROR_STATES = { failed = true, expired = true, maybe_sent = true }
local FIELD_TYPES = { string = true, number = true, boolean = true }

-- The error a settled record carries (what the holder recorded, runtime
-- input: only plain fields are kept).
local function error_of(rec)
  local f = {}
  if type(rec.error) == "table" then
    for k, v in pairs(rec.error) do
      if type(k) == "string" and FIELD_TYPES[type(v)] then f[k] = v end
    end
  end
  if not errors.categories[f.category] then f.category = rec.state == "expired" and "expired" or "unknown" end
  if type(f.message) ~= "string" then f.message = "the message's record is " .. rec.state end
  f.provider = f.provider or "oneshot"
  if f.code == nil then f.code = rec.code end
  f.maybe_sent = rec.state == "maybe_sent"
  f.retryable = f.retryable and not f.maybe_sent
  f.key, f.state = rec.key, rec.state
  return new_error(f)
end

local wait_for

--- outcome in the Redis mode: the record's state as a result or an error,
-- waiting up to opts.timeout while it is queued or sending.
-- @param st the state start returned
-- @tparam string key
-- @tparam[opt] table opts account, timeout
-- @return a result, or nil, err
function _M.outcome(st, key, opts)
  need_cosocket("ksms.ngx.oneshot.outcome")
  if type(key) ~= "string" then misuse("ksms.ngx.oneshot.outcome: key (a string) expected") end
  opts = handler_opts("ksms.ngx.oneshot.outcome", opts)
  local ob, err = outbox_of(st)
  if not ob then return nil, err end
  return wait_for(ob, key, opts.timeout or 0)
end

-- outcome's loop (one connection for all its looks).
wait_for = function(ob, key, timeout)
  update_time()
  local deadline = now() + timeout
  local nap = 0.005
  while true do
    local rec, gerr = ob:status(key)
    if rec == nil then
      if gerr then return nil, gerr end
      return nil, new_error { category = "unknown", code = "no_outcome", provider = "oneshot",
        message = "no record with key '" .. errors.bound(key, 64) .. "' in the account's outbox" }
    end
    if RESULT_STATES[rec.state] then
      return { ok = true, provider = "oneshot", code = rec.code, id = rec.provider_id, key = rec.key, state = rec.state }
    end
    if ERROR_STATES[rec.state] then return nil, error_of(rec) end
    update_time()
    local left = deadline - now()
    if left <= 0 then
      return nil, new_error { category = "timeout", code = "pending", provider = "oneshot", retryable = true,
        pending = true, id = key, state = rec.state,
        message = "no outcome yet (the record is " .. tostring(rec.state) .. "): ask again with outcome(key)" }
    end
    -- Never under 1 ms: nginx rounds it to ngx.sleep(0).
    sleep(max(0.001, min(nap, left)))
    nap = min(nap * 2, 0.05)
  end
end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

--- status in the Redis mode: this worker's role and counters, and (where
-- cosockets work) the lock's holder and the outbox's counts per state.
-- @param st the state start returned
-- @return a table
function _M.status(st)
  local m = st.member
  local d = m.holding and m.d or nil
  local t = { mode = "redis", account = st.account, pid = ngx.worker.pid(),
    role = m.holding and "holder" or (m.closed and "stopped" or "standby"),
    leader_here = m.holding, bound = d ~= nil and d.bound or false,
    grant = d and d.bound and copy(d.grant) or nil,
    stats = copy(m.stats), summary = copy(m.summary), restarts = st.restarts,
    last_error = m.last_error and tostring(m.last_error) or nil }
  if not PHASES[get_phase()] then return t end
  local ob, err = outbox_of(st)
  if ob then
    local counts
    counts, err = ob:counts()
    if counts then
      t.counts = counts
      t.queued = (counts.queued or 0) + (counts.sending or 0)
    end
  end
  local conn, cerr = kredis.connect { url = st.url, socket = "cosocket", connect_timeout = 2, read_timeout = 2 }
  if conn then
    local v, gerr = conn:call("GET", st.lock_key)
    conn:close()
    if type(v) == "string" then t.holder = v end
    err = err or gerr
  else
    err = err or cerr
  end
  if err then t.redis_error = tostring(err) end
  return t
end

return _M
