--- ksms.oneshot.fleet: one OneShot binder per account across any number of
-- processes and machines, over Redis. A OneShot account allows one bound
-- connection; every process of the fleet runs this loop for the account,
-- exactly one of them (the holder of a fenced Redis lock) holds the
-- connection and sends what producers anywhere put in the account's
-- outbox, the others stand by and take over when the lock expires.
--
--   -- a binder process (blocks until SIGINT / SIGTERM, or opts.stop() is true)
--   require("ksms.oneshot.fleet").run {
--     redis = "redis://127.0.0.1:6379/0", account = "main",
--     host =, port =, id =, password =, key =, iv =,   -- the OneShot account
--     lock_ttl = 10, reconnect_delay = 5, window = 200, quiet = 1,
--   }
--   -- a producer (any process; nothing is sent here)
--   local ob = require("ksms.oneshot.fleet").outbox { redis = URL, account = "main" }
--   ob:enqueue({ to =, from =, text = }, { key = "order-42", client = "main" })
--   -- reports, exactly once per consumer group (ksms.oneshot.fleet.reports)
--   local c = require("ksms.oneshot.fleet").reports { redis = URL, account = "main", group = "app", consumer = "a" }
--
-- What the holder does, and why:
-- * It marks a record `sending` just before its frame is built, with the
--   outbox's fenced update: done only while the lock key still holds this
--   hold's "<owner>:<token>", in the same Redis script. A holder paused
--   past lock_ttl (SIGSTOP, GC, a partition) finds the mark refused and
--   writes nothing more; the server's own rule (one bound connection: a
--   second bind gets result 2) keeps a new holder from binding while the
--   old connection lives. The local half: lock:fresh() (two thirds of the
--   TTL since the last renewal was sent) is checked before each frame too.
-- * After each bind it waits `quiet` seconds (default 1) before its first
--   message: whatever the previous connection sent (this holder's or a
--   dead one's) is then more than a second old, so no 1-second window at
--   the server holds more than the granted Speed, whoever held the
--   connection. Within a connection the protocol's pacer keeps Speed.
-- * It keeps at most `window` messages in its session (queued + written,
--   unanswered); what a dead holder wrote and never had answered becomes
--   maybe_sent (the outbox's lease recovery: the holder's lease TTL is
--   lock_ttl), what it claimed but never wrote goes back to the queue and
--   the next holder sends it. Nothing is resent on its own.
-- * Pushed reports: the outbox record becomes delivered / undelivered, the
--   report goes to the account's Redis stream with dedup by ServerMsgId
--   (ksms.oneshot.fleet.reports), opts.on_report(report) runs for a report
--   not seen before, and only then is it acknowledged to the server. When
--   Redis fails the report is left unacknowledged: the server pushes it
--   again, and the dedup keeps the stream from getting it twice.
-- * Leaving (lock lost, stop, signal): nothing more is written, unwritten
--   messages go back to the queue, written ones get their answers for
--   drain_timeout seconds, then UnBindReq; the lock is released (unless it
--   was lost) so a standby binds at once.
--
-- Keys: the outbox's (outbox_namespace, default "ksms:outbox", the records
-- enqueued with { client = account }), and "<namespace>:<account>:lock",
-- ":fence", ":reports", ":seen:<id>" (namespace default "ksms:fleet").
-- Blocking I/O: use socket = "cosocket" inside nginx (ksms.ngx.oneshot's
-- redis option does).
-- @module ksms.oneshot.fleet
-- @alias _M

local core = require "ksms.core"
local redis = require "ksms.redis"
local outbox = require "ksms.outbox"
local worker = require "ksms.outbox.worker"
local track = require "ksms.outbox.track"
local driver = require "ksms.oneshot.driver"
local protocol = require "ksms.oneshot.protocol"
local message = require "ksms.oneshot.message"
local oneshot_client = require "ksms.oneshot.client"
local ad_option = require("ksms.message").check_ad_option
local lock_mod = require "ksms.oneshot.fleet.lock"
local reports = require "ksms.oneshot.fleet.reports"
local errors = require "ksms.errors"
local events = require "ksms.events"

local type, pairs, ipairs, pcall, tostring, setmetatable, error = type, pairs, ipairs, pcall, tostring, setmetatable, error
local min, max, floor, format = math.min, math.max, math.floor, string.format
local monotonic = core.monotonic
local misuse, new_error = errors.misuse, errors.new

local _M = { _VERSION = "0.2.0", DEFAULT_NAMESPACE = "ksms:fleet" }

-- The fleet's own options; the rest go to the OneShot driver and protocol.
local OWN = {
  redis = "string", account = "string", namespace = "string", outbox_namespace = "string",
  lock_ttl = "number", window = "number", quiet = "number", drain_timeout = "number",
  standby_interval = "number", dedup_ttl = "number", report_maxlen = "number",
  stop = "function", signals = "boolean", socket = "string", on_report = "function",
  redis_timeout = "number", ad = "table", now = "function",
}
local SOCKETS = { core = "ksms.oneshot.sockets.core", luasocket = "ksms.oneshot.sockets.luasocket",
  cosocket = "ksms.oneshot.sockets.cosocket" }
-- Set by the fleet, not the caller.
local DRIVER_OWNED = { on_sending = true, on_report = true, auto_reconnect = true }

local REPORTS_STASH = 1000 -- reports for records whose outcome is not recorded yet
local STASH_TTL = 60

local F = {}
F.__index = F
_M.Fleet = F

local function check(opts)
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet: options table expected") end
  for k in pairs(DRIVER_OWNED) do
    if opts[k] ~= nil and k ~= "on_report" then misuse("ksms.oneshot.fleet: " .. k .. " is the fleet's own") end
  end
  errors.check_options("ksms.oneshot.fleet", opts, OWN, driver.options, protocol.options)
  for k, t in pairs(OWN) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse("ksms.oneshot.fleet: " .. k .. " must be a " .. t) end
  end
  if type(opts.redis) ~= "string" then misuse("ksms.oneshot.fleet: redis (a redis:// URL) is required") end
  if type(opts.account) ~= "string" or opts.account == "" or opts.account:find("[%z:%s]") then
    misuse("ksms.oneshot.fleet: account (a name without ':' or spaces) is required")
  end
  for _, k in ipairs { "lock_ttl", "window", "quiet", "drain_timeout", "standby_interval" } do
    local v = opts[k]
    if v ~= nil and not (v >= 0) then misuse("ksms.oneshot.fleet: " .. k .. " must be >= 0") end
  end
  if opts.lock_ttl ~= nil and opts.lock_ttl < 1 then misuse("ksms.oneshot.fleet: lock_ttl must be at least 1 second") end
  if opts.window ~= nil and (opts.window < 1 or opts.window ~= floor(opts.window)) then
    misuse("ksms.oneshot.fleet: window must be a whole number >= 1")
  end
  if opts.socket ~= nil and not SOCKETS[opts.socket] then
    misuse("ksms.oneshot.fleet: socket is \"core\", \"luasocket\" or \"cosocket\"")
  end
  if not redis.parse_url(opts.redis) then misuse("ksms.oneshot.fleet: redis must be \"redis://HOST:PORT/DB\"") end
end

-- The message checker producers enqueue with: the OneShot client's checks
-- (ksms.oneshot.message) without a session. One recipient per record: the
-- holder writes one MsgSendReq per record.
local Checker = {}
Checker.__index = Checker

--- checker:check(msg) -> true | nil, err: the OneShot client's checks.
-- @tparam table msg
function Checker:check(msg)
  if type(msg) ~= "table" then misuse("ksms.oneshot.fleet: check needs a message table") end
  if type(msg.to) == "table" then
    return nil, new_error { category = "invalid_input", code = "recipients", provider = "oneshot",
      message = "one recipient per fleet record: enqueue each number as its own message" }
  end
  if msg.at ~= nil then misuse("ksms: OneShot has no reservations") end
  if msg.images ~= nil then
    return nil, new_error { category = "invalid_input", code = "images", provider = "oneshot",
      message = "images cannot go through the fleet: upload them and give files (names on the server)" }
  end
  local m, aerr = oneshot_client.ad_message(self.ctx, msg) -- an ad composed, at night refused
  if not m then return nil, aerr end
  local body, err = message.build(m, self.limits)
  if not body then err.provider = "oneshot" return nil, err end
  return true
end

--- checker:send_many(): misuse (the holder sends; this only checks).
function Checker:send_many()
  misuse("ksms.oneshot.fleet: this client only checks messages; the fleet's holder sends them")
end

-- ctx: the OneShot client's ad context ({ now, ad }, ksms.rules.ad through
-- ksms.oneshot.client.ad_message), the same at enqueue and at send.
local function ad_ctx(opts, who)
  return { now = opts.now or os.time, ad = ad_option(opts.ad, who) }
end

local function checker(opts)
  return setmetatable({ provider = "oneshot", limits = message.limits_of(opts),
    ctx = ad_ctx(opts, "ksms.oneshot.fleet") }, Checker)
end

local function outbox_url(opts) return opts.redis end

--- A producer's outbox for the account: ob:enqueue(msg, { key, client = account })
-- checks msg as the OneShot client would and stores it in Redis; the
-- fleet's holder sends it. Options: redis, account, outbox_namespace,
-- socket, sms_max, lms_max, recover (false: a producer that leaves
-- recovering dead holders' records to the holder; see ksms.outbox.open).
-- @tparam table opts
-- @return an outbox (ksms.outbox), or nil, err
function _M.outbox(opts)
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet.outbox: options table expected") end
  errors.check_options("ksms.oneshot.fleet.outbox", opts, { redis = "string", account = "string",
    outbox_namespace = "string", socket = "string", sms_max = "number", lms_max = "number", lease_ttl = "number",
    ad = "table", now = "function", recover = "boolean" })
  if type(opts.redis) ~= "string" or type(opts.account) ~= "string" then
    misuse("ksms.oneshot.fleet.outbox: redis and account are required")
  end
  return outbox.open { store = outbox_url(opts), namespace = opts.outbox_namespace, socket = opts.socket,
    clients = { [opts.account] = checker(opts) }, lease_ttl = opts.lease_ttl, recover = opts.recover }
end

--- The account's report stream, read through a consumer group (see
-- ksms.oneshot.fleet.reports.consumer; namespace defaults to the fleet's).
-- @tparam table opts redis, account, group, consumer, namespace, socket
-- @return a consumer, or nil, err
function _M.reports(opts)
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet.reports: options table expected") end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.namespace = o.namespace or _M.DEFAULT_NAMESPACE
  return reports.consumer(o)
end

--- fleet.new(opts) -> a fleet member (nothing connects yet). The options
-- of run; f:run() is the loop, f:step() one round of it, f:close().
-- @tparam table opts
-- @return the member
function _M.new(opts)
  check(opts)
  local dopts = {}
  for k, v in pairs(opts) do if not OWN[k] then dopts[k] = v end end
  local ttl = opts.lock_ttl or 10
  dopts.reconnect_delay = opts.reconnect_delay or 5
  -- A refused bind during a takeover is result 2 (the old connection still
  -- lives a moment): retried sooner than the 30 s the document asks after
  -- a refused login.
  dopts.bind_retry = opts.bind_retry or dopts.reconnect_delay
  local sock = opts.socket or "core"
  local self = setmetatable({
    opts = opts, dopts = dopts, account = opts.account, ttl = ttl,
    ns = (opts.namespace or _M.DEFAULT_NAMESPACE) .. ":" .. opts.account,
    window = opts.window or 200, quiet = opts.quiet or 1, drain_timeout = opts.drain_timeout or 3,
    standby_interval = opts.standby_interval or min(1, ttl / 4),
    socket = sock, adapter = require(SOCKETS[sock]),
    log = opts.logger and events.logger(opts.logger) or nil,
    holding = false, stopping = false, closed = false, ctx = ad_ctx(opts, "ksms.oneshot.fleet"),
    summary = { sent = 0, failed = 0, maybe_sent = 0, expired = 0 },
    stats = { holds = 0, lost = 0, binds = 0, reports = 0, duplicate_reports = 0, unrecorded = 0 },
    stash = {}, unrecorded = {},
  }, F)
  return self
end

function F:_log(level, msg, event)
  if self.log then self.log(level, msg, { provider = "oneshot", event = event, account = self.account }) end
end

-- Outbox, lock and report stream, made when missing (Redis may be down).
function F:_connect()
  if self.ob then return true end
  local o = self.opts
  local ob, oerr = outbox.open { store = outbox_url(o), namespace = o.outbox_namespace, socket = self.socket,
    clients = { [self.account] = checker(o) }, lease_ttl = self.ttl, keep_connection = true }
  if not ob then return nil, oerr end
  -- The lock's and the reports' connection: a handle, so a Redis restart
  -- costs the calls made while it was down, nothing more.
  -- keep: a member's every call comes from its one loop (a process, or
  -- one nginx timer), so over cosockets too it keeps its connection.
  local conn = redis.handle { url = o.redis, socket = self.socket, name = "the fleet's Redis", keep = true,
    connect_timeout = o.redis_timeout or 3, read_timeout = o.redis_timeout or 3 }
  self.conn, self.ob = conn, ob
  self.lock = lock_mod.new(conn, { key = self.ns .. ":lock", fence_key = self.ns .. ":fence",
    owner = ob.owner, ttl = self.ttl })
  self.pub = reports.publisher(conn, { account = self.account, namespace = o.namespace or _M.DEFAULT_NAMESPACE,
    dedup_ttl = o.dedup_ttl, maxlen = o.report_maxlen })
  return true
end

-- A Redis failure: logged; the connections reconnect on their next call,
-- and a holder keeps its session (lock:fresh() decides whether it sends).
function F:_redis_failed(err, what)
  self:_log("warn", what .. ": " .. tostring(err), "redis")
  self.last_error = err
end

function F:_disconnect()
  if self.ob then self.ob:close() end
  if self.conn then self.conn:close() end
  self.ob, self.conn, self.lock, self.pub = nil, nil, nil, nil
end

-- ---- reports ----

function F:_apply_report(ev)
  local how, err = track.apply_report(self.ob, self.account, ev)
  if how == nil then return nil, err end
  return how
end

-- A pushed report: recorded, published, handed to on_report, then (when
-- this returns) acknowledged. Raises to leave it unacknowledged.
function F:_on_report(ev)
  self.stats.reports = self.stats.reports + 1
  local how, err = self:_apply_report(ev)
  if how == nil then error(err, 0) end
  if how == "later" or how == "unmatched" then self:_stash(ev) end
  local added, perr = self.pub:publish(ev)
  if added == nil then error(perr, 0) end
  if added == false then
    self.stats.duplicate_reports = self.stats.duplicate_reports + 1
    return
  end
  local fn = self.opts.on_report
  if fn then fn(ev) end
end

function F:_stash(ev)
  local s = self.stash
  if #s >= REPORTS_STASH then table.remove(s, 1) end
  s[#s + 1] = { ev = ev, at = monotonic() }
end

-- Reports whose record was still being sent: applied once it has an outcome.
function F:_retry_stash()
  local s = self.stash
  if #s == 0 then return end
  local kept, t = {}, monotonic()
  for _, e in ipairs(s) do
    local how = self:_apply_report(e.ev)
    if (how == "later" or how == nil or how == "unmatched") and t - e.at < STASH_TTL then kept[#kept + 1] = e end
  end
  self.stash = kept
end

-- ---- holding ----

function F:_take()
  local ob = self.ob
  self.holding, self.leaving = true, false
  self.stats.holds = self.stats.holds + 1
  self:_log("info", format("holding the %s connection (fence %s)", self.account, tostring(self.lock.token)), "hold")
  worker.renew(ob, true)
  local ok, err = worker.recover(ob)
  if not ok then self:_log("warn", "recovery failed: " .. tostring(err), "recover") end
  local fence = self.lock:fence()
  local lock = self.lock
  self.hooks_opts = {
    guard = function() return not self.leaving and lock:fresh() end,
    fence = fence,
    sending_fields = function(r) return { provider_id = r.umid } end,
  }
  self.h = worker.hooks(ob, self.summary, self.hooks_opts)
  local dopts = {}
  for k, v in pairs(self.dopts) do dopts[k] = v end
  dopts.on_report = function(ev) return self:_on_report(ev) end
  self.d = driver.new("ksms.oneshot.fleet", dopts, self.adapter)
  self.bound_at, self.renew_at = nil, monotonic() + self.ttl / 4
  self.d:open()
end

-- An outcome whose record could not be written (Redis failed) is kept and
-- written again later: the record stays sending until then.
function F:_record(h, r, out)
  local before = h.error()
  h.outcome(r, out)
  if h.error() and not before then
    self.stats.unrecorded = self.stats.unrecorded + 1
    self.unrecorded[#self.unrecorded + 1] = { r = r, out = out }
  end
end

function F:_retry_unrecorded()
  local list = self.unrecorded
  if #list == 0 then return end
  self.unrecorded = {}
  local h = worker.hooks(self.ob, self.summary, self.hooks_opts)
  for i, e in ipairs(list) do
    if h.error() then
      for j = i, #list do self.unrecorded[#self.unrecorded + 1] = list[j] end
      return
    end
    h.outcome(e.r, e.out)
    if h.error() then self.unrecorded[#self.unrecorded + 1] = e end
  end
end

-- Claims records up to the window and hands them to the session.
function F:_top_up()
  local d, ob = self.d, self.ob
  if self.orphans and d:queued() == 0 then
    -- None of our claims is in the session unwritten: any claim left is
    -- an orphan (written ones are sending, which release leaves alone).
    if ob.store:release(ob.owner) then
      self.orphans = false
      worker.renew(ob, true)
    end
  end
  local room = self.window - d:queued() - d:in_flight()
  if room < max(1, floor(self.window / 4)) then return end
  if self.h.error() then self.h = worker.hooks(ob, self.summary, self.hooks_opts) end
  local h = self.h
  local recs, expired = ob.store:claim(self.account, ob.owner, room, ob.now())
  if not recs then
    -- The claim may have been done and its reply lost (a timeout, Redis
    -- restarting): records owned by this live holder that nobody would
    -- send, nor recover. Released once the session holds none unwritten.
    self.orphans = true
    return self:_redis_failed(expired, "claim")
  end
  self.summary.expired = self.summary.expired + expired
  for _, r in ipairs(recs) do
    local m = worker.message_of(ob, r, h, self.summary)
    local am, aerr
    if m then
      -- An ad composed again by the rules at send time: at night it is
      -- refused here (failed, nothing sent) unless night_consent.
      am, aerr = oneshot_client.ad_message(self.ctx, m)
      if not am then self:_record(h, r, aerr) end
      m = am
    end
    if m then
      if m.id == nil and m.user_msg_id == nil then m.id = "f" .. format("%.0f", r.seq or 0) end
      r.umid = m.user_msg_id or m.id
      -- The fenced mark at the first attempt; a 903/11 requeue is written
      -- again only while the hold is still fresh.
      local ok, err = d:submit(m, function(res, e) self:_record(h, r, res or e) end,
        function(rec) if rec.attempts == 0 then return h.sending(r) end return self.hooks_opts.guard() end)
      if not ok then self:_record(h, r, err) end -- refused before any byte: failed, or queue_full: back
    end
  end
end

-- Leaves the hold: nothing more written, unwritten back to the queue,
-- written ones answered or maybe_sent, unbound; the lock released unless lost.
function F:_leave(why)
  if not self.holding then return end
  self.leaving = true
  local d = self.d
  d:hold(true)
  d:take_queued() -- never written: their records stay queued, released below
  d:drain(self.drain_timeout)
  d:close()
  self.holding, self.d = false, nil
  if self.ob then
    local r, err = self.ob.store:release(self.ob.owner)
    if not r then self:_log("warn", "release failed: " .. tostring(err), "release") end
    if why ~= "lost" then self.lock:release() end
  end
  if why == "lost" then self.stats.lost = self.stats.lost + 1 end
  self:_log("info", "left the " .. self.account .. " connection: " .. why, "leave")
end

function F:_hold_round()
  local d, lock, now = self.d, self.lock, monotonic()
  if now >= self.renew_at then
    local ok, err = lock:renew()
    if ok == false then return self:_leave("lost") end
    if ok then
      worker.renew(self.ob, true)
      -- A dead holder's lease may lapse a moment after our take: its
      -- records are recovered at the first renewal after that.
      local rok, rerr = worker.recover(self.ob)
      if not rok then self:_log("warn", "recovery failed: " .. tostring(rerr), "recover") end
      self:_retry_unrecorded()
      self:_retry_stash()
      self.renew_at = now + self.ttl / 4
    else
      self:_redis_failed(err, "lock renewal")
      self.renew_at = now + min(0.5, self.ttl / 8)
    end
  end
  local fresh = lock:fresh()
  d:hold(not fresh)
  if d.bound then
    if not self.bound_at then
      self.bound_at = now
      self.stats.binds = self.stats.binds + 1
    end
    if fresh and now >= self.bound_at + self.quiet then self:_top_up() end
  else
    self.bound_at = nil
  end
  d:poll(0.02)
end

function F:_standby_round()
  local ok, err = self:_connect()
  if not ok then
    self:_redis_failed(err, "connect")
    return self.standby_interval
  end
  local got, holder = self.lock:acquire()
  if got then
    self:_take()
    return 0
  end
  if got == nil then self:_redis_failed(holder, "lock") end
  return self.standby_interval
end

--- Whether the loop should stop: stop() (f:stop() or opts.stop), or a
-- caught SIGINT / SIGTERM.
-- @treturn boolean
function F:stopping_now()
  if self.stopping then return true end
  local fn = self.opts.stop
  if fn and fn() then return true end
  if self.signals and core.stop_signal() then return true end
  return false
end

--- One round: stand by (try the lock), or hold (renew, top up, I/O for at
-- most 20 ms). Returns the seconds to wait before the next round.
-- @treturn number
function F:step()
  if self.holding then
    self:_hold_round()
    return 0
  end
  return self:_standby_round()
end

--- The loop (see the module comment): until f:stop(), opts.stop() returns
-- true, or (with signals, the default in fleet.run) SIGINT / SIGTERM.
-- @return the summary { sent, failed, maybe_sent, expired } and stats
function F:run()
  local sleep = self.adapter.sleep
  while not self:stopping_now() do
    local wait = self:step()
    local deadline = monotonic() + wait
    while wait > 0 and not self:stopping_now() do
      sleep(min(wait, 0.1))
      wait = deadline - monotonic()
    end
  end
  self:close()
  return self.summary, self.stats
end

--- Asks the loop to stop after its round (leaves the hold cleanly).
function F:stop() self.stopping = true end

--- Leaves the hold (when held), closes Redis. Idempotent.
function F:close()
  if self.closed then return end
  self.closed = true
  if self.holding then self:_leave("stopped") end
  self:_disconnect()
end

--- fleet.run(opts): a blocking binder loop for a plain Lua process (see
-- the module comment); SIGINT and SIGTERM stop it cleanly (signals =
-- false leaves the process's signals alone). A Redis that cannot be
-- reached at start is nil, err at once (a wrong URL must not look like a
-- standby); once running, Redis failures are waited out.
-- @tparam table opts
-- @return summary, stats, or nil, err
function _M.run(opts)
  local f = _M.new(opts)
  local ok, err = f:_connect()
  if not ok then return nil, err end
  if opts.signals ~= false and f.socket ~= "cosocket" then
    core.catch_stop_signals()
    f.signals = true
  end
  return f:run()
end

return _M
