--- ksms.oneshot.driver: the one OneShot session driver. It runs the sans-I/O
-- state machine (ksms.oneshot.protocol) over a socket adapter, and owns
-- what every OneShot session does whatever its I/O: option checking, the
-- user callbacks (each under pcall), event dispatch, reconnect with
-- jitter, the sending window, submit / flush / drain / close, last_error.
-- ksms.oneshot.session (blocking: the core's TCP client or LuaSocket) and
-- ksms.ngx.oneshot (cosockets) are this driver with an adapter.
--
-- A socket adapter is a module { new(opts) -> sock, sleep(seconds) }; opts
-- carries read_timeout and write_timeout (seconds). A sock has 4 methods:
--   sock:connect(host, port, timeout) -> true | nil, err
--   sock:send(bytes, timeout)         -> true | nil, err   (all of bytes or
--                                        an error: the connection is then dropped)
--   sock:receive(max, timeout)        -> bytes (1..max) | nil, "timeout" | nil, err
--                                        (waits at most timeout; 0 does not wait)
--   sock:close()                      (idempotent)
-- err is a string or a ksms error; "closed" means the peer closed. sleep
-- waits without a socket (the driver calls it while disconnected). The
-- adapters: ksms.oneshot.sockets.core, .luasocket, .cosocket.
--
--   local d = driver.new(name, opts, adapter [, extra_options])
--   d:open()                  -> true | nil, err   (connect, BindReq written; no wait)
--   d:connect([timeout])      -> true | nil, err   (open and wait for the bind answer)
--   d:step(max_wait)          -> connected?  (one round: waits for data, a protocol
--                                deadline or max_wait, reads, polls, writes)
--   d:submit(msg, on_result)  -> true | nil, err   (on_result(res) or on_result(nil, err))
--   d:poll(timeout), d:flush([timeout]), d:drain([timeout]), d:hold(flag)
--   d:take_queued()           -> { { rec =, on_result = }, ... } never written
--   d:unbind([timeout])       -> UnBindReq, wait, disconnect (queued ones stay)
--   d:close()                 -> unbind, then every queued message ends as not sent
--   d.last_error, d.bound, d.grant, d.outside, d.reconnect_at, d:reconnect_wait()
--
-- Options (driver.options, plus protocol.options, plus the caller's
-- extra_options; any other raises, naming those that exist): host, port,
-- connect_timeout (10), write_timeout (10), read_timeout (a backstop:
-- keepalive_interval + alive_timeout + 60), reconnect_delay (30, jittered
-- by 20% either way), auto_reconnect (true), outside_window ("hold" or
-- "refuse"), clock (os.time: the epoch the window is judged by), and the
-- callbacks on_report, on_spam, on_change_phone (each push is acknowledged
-- only after its callback returns: one that raises is pushed again after a
-- reconnect), on_sending(rec) (before the frame of a MsgSendReq is built
-- and written; false holds the message back: it ends as cancelled, never
-- written; submit takes a per-message one too), on_requeued(rec), and on_event(ev) (ksms.events): one event per
-- message outcome (operation "send", or "alimtalk" / "friendtalk" by its
-- kind), per pushed report, spam notice and number change, per connect and
-- bind attempt ("bind") and per bound connection lost ("disconnect"),
-- and logger(level, message, fields) (ksms.events.logger): where the
-- driver's log lines go (callback errors, protocol errors, refused binds,
-- lost connections and their reconnect); without it the blocking session
-- logs nothing and the nginx binder logs to ngx.log.
--
-- A callback that raises (on_result too) is recorded in last_error
-- (category "unknown", code "callback") and logged through the log hook
-- when there is one; the loop goes on, the other events of the batch are
-- dispatched and the bytes the protocol produced are written.
-- @module ksms.oneshot.driver
-- @alias _M

local core = require "ksms.core"
local protocol = require "ksms.oneshot.protocol"
local errors = require "ksms.errors"
local events = require "ksms.events"
local in_window = require("ksms.oneshot.window").in_window

local type, pairs, pcall, setmetatable, tostring = type, pairs, pcall, setmetatable, tostring
local min, format = math.min, string.format
local monotonic = core.monotonic
local random = core.random -- the OS random source: LuaJIT never seeds math.random
local misuse, new_error = errors.misuse, errors.new
local outcome_of = protocol.outcome_of

local _M = { _VERSION = "0.2.0" }

local D = {}
D.__index = D
_M.Driver = D

local OPTIONS = { host = "string", port = "number", on_report = "function", on_spam = "function",
  on_change_phone = "function", on_sending = "function", on_requeued = "function",
  reconnect_delay = "number", connect_timeout = "number", write_timeout = "number",
  read_timeout = "number", auto_reconnect = "boolean",
  outside_window = "string", clock = "function", on_event = "function", logger = "function" }
_M.options = OPTIONS

-- A socket error as a ksms error: an adapter's string, or its error object
-- (the core's), named for OneShot.
local function net_error(err, code, what)
  if type(err) == "table" then
    err.provider = err.provider or "oneshot"
    return err
  end
  if err == "timeout" then
    return new_error { category = "timeout", code = "timeout", provider = "oneshot", retryable = true,
      message = what .. "timed out" }
  end
  return new_error { category = "network", code = err == "closed" and "closed" or code, provider = "oneshot",
    retryable = true, message = what .. tostring(err) }
end

local function jitter(delay) return monotonic() + delay * (0.8 + 0.4 * random()) end

--- driver.new(name, opts, adapter [, extra_options]): name prefixes every
-- misuse message; extra_options are options the caller's wrapper keeps
-- (they are checked as known, and not passed to the protocol).
function _M.new(name, opts, adapter, extra)
  if type(opts) ~= "table" then misuse(name .. ": options table expected") end
  errors.check_options(name, opts, OPTIONS, extra or {}, protocol.options)
  for k, t in pairs(OPTIONS) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse(name .. ": " .. k .. " must be a " .. t) end
  end
  if opts.host == nil or opts.port == nil then misuse(name .. ": host (string) and port (number) are required") end
  local ow = opts.outside_window or "hold"
  if ow ~= "hold" and ow ~= "refuse" then misuse(name .. ": outside_window is \"hold\" or \"refuse\"") end
  local popts = {}
  for k, v in pairs(opts) do if not OPTIONS[k] and not (extra and extra[k]) then popts[k] = v end end
  local p = protocol.new(popts)
  local d = setmetatable({
    name = name, opts = opts, p = p, adapter = adapter, conn = nil, bound = false, closed = false,
    grant = nil, outside = false, holding = false, callbacks = {}, on_sendings = {}, reconnect_at = nil, last_error = nil,
    reconnect_delay = opts.reconnect_delay or 30, connect_timeout = opts.connect_timeout or 10,
    write_timeout = opts.write_timeout or 10, auto_reconnect = opts.auto_reconnect ~= false,
    read_timeout = opts.read_timeout or (popts.keepalive_interval or 25) + (popts.alive_timeout or 10) + 60,
    outside_window = ow, clock = opts.clock or os.time,
    gate = nil,         -- set below: self:_gate as a closure for the protocol
    upload_results = setmetatable({}, { __mode = "k" }),
    submitted = {},     -- rec -> monotonic time of submit (with on_event)
    binds = 0, ever_bound = false, -- connect attempts since the last bind

    -- log(level, message, fields): the caller's logger (ksms.events.logger);
    -- without one the blocking session is silent and the nginx binder logs
    -- to ngx.log.
    log = opts.logger and events.logger(opts.logger) or nil,
  }, D)
  d.gate = function(rec) return d:_gate(rec) end
  return d
end

-- ---- callbacks and events ----

-- Runs a user callback: one that raises is recorded and logged, never
-- propagated (the loop, the batch and the bytes to write go on).
function D:_call(what, fn, a, b)
  local ok, err = pcall(fn, a, b)
  if ok then return true end
  self:_raised(what, err)
  return false
end

-- A callback raised: kept as last_error and logged.
function D:_raised(what, err)
  self.last_error = new_error { category = "unknown", code = "callback", provider = "oneshot",
    message = what .. " raised: " .. tostring(err) }
  if self.log then self.log("error", what .. " raised: " .. tostring(err), { provider = "oneshot", event = "callback_error" }) end
end

-- At most one protocol warning a second, with a count of those left out:
-- a hostile server's stream of bad frames must not flood the log.
function D:_warn(err)
  if not self.log then return end
  local now = monotonic()
  if self.warned_at and now - self.warned_at < 1 then
    self.unwarned = self.unwarned + 1
    return
  end
  local skipped = self.unwarned or 0
  self.warned_at, self.unwarned = now, 0
  self.log("warn", tostring(err) .. (skipped > 0 and (" (" .. skipped .. " more protocol errors not logged)") or ""),
    { provider = "oneshot", event = "protocol_error" })
end

-- One on_event event (ksms.events); the hook is pcalled.
function D:_event(operation, out, duration, kind, recipients, attempt, extra)
  local hook = self.opts.on_event
  if not hook then return end
  local ev = events.event("oneshot", operation, out, duration, kind, recipients, attempt)
  if extra then for k, v in pairs(extra) do ev[k] = v end end
  events.emit(hook, ev, self.log)
end

local KAKAO = { alimtalk = true, friendtalk = true }

function D:_emit(ev)
  local t = ev.type
  if t == "result" then
    local rec = ev.rec
    local cb = self.callbacks[rec]
    self.callbacks[rec] = nil
    self.on_sendings[rec] = nil
    local t0 = self.submitted[rec]
    self.submitted[rec] = nil
    if self.opts.on_event then
      local o = ev.outcome
      if ev.ok then o = { ok = true, code = ev.result or 0, kind = rec.kind } end
      self:_event(KAKAO[rec.kind] and rec.kind or "send", o, t0 and monotonic() - t0 or 0, rec.kind, 1,
        rec.attempts or 0)
    end
    if cb then self:_call("on_result", cb, outcome_of(ev)) end
  elseif t == "report" or t == "spam" or t == "change_phone" then
    if self.opts.on_event then
      local o = ev.outcome or { ok = true }
      if t == "report" and ev.ok then o = { ok = true, code = ev.result } end
      self:_event(t, o, 0, nil, 1, 1)
    end
    local handler = self.opts["on_" .. t]
    -- Not acknowledged when it raises: the server pushes it again later.
    if handler and not self:_call("on_" .. t, handler, ev) then return end
    self:_write(self.p:ack(ev, monotonic()))
  elseif t == "bound" then
    self.bound, self.grant = true, ev
    self:_bind_event({ ok = true, code = 0 })
  elseif t == "bind_failed" then
    self.last_error = ev.err
    self:_bind_event(ev.err)
    if self.log then self.log("warn", "bind refused: " .. tostring(ev.err), { provider = "oneshot", event = "bind_refused" }) end
    self:_lost(ev.err, ev.retry_after)
  elseif t == "dead" then
    self:_lost(new_error { category = "network", code = ev.reason, provider = "oneshot", retryable = true,
      message = "the server stopped answering (" .. ev.reason .. ")" })
  elseif t == "protocol_error" then
    -- Non-fatal ones (an answer nobody waits for, a mistyped push) are
    -- ignored but kept as the last error.
    self:_warn(ev.err)
    if ev.fatal then self:_lost(ev.err) else self.last_error = ev.err end
  elseif t == "unbound" then
    self.bound = false
  elseif t == "requeued" then
    local fn = self.opts.on_requeued
    if fn then self:_call("on_requeued", fn, ev.rec) end
  elseif t == "upload_done" or t == "upload_failed" then
    self.upload_results[ev.handle] = ev
  end
end

function D:_emit_all(events)
  for i = 1, #events do self:_emit(events[i]) end
end

-- ---- the connection ----

function D:_write(out)
  if out == "" or not self.conn then return true end
  local ok, err = self.conn:send(out, self.write_timeout)
  if not ok then
    -- A frame may be cut in half: the connection cannot be trusted.
    self:_lost(net_error(err, "send", "write failed: "))
    return false
  end
  return true
end

-- The connection is gone: every message written but unanswered gets its
-- maybe-sent outcome, the rest waits for the reconnect (or, when there
-- will be none, ends as not sent).
function D:_lost(err, delay)
  if not self.conn then return end
  if self.bound and self.opts.on_event then
    local e = err or self.last_error or { category = "network", code = "closed" }
    self:_event("disconnect", { category = e.category, code = e.code }, 0, nil, 0, 1)
  end
  self.conn:close()
  local was_bound = self.bound
  self.conn, self.bound = nil, false
  self.last_error = err or self.last_error
  self.reconnect_at = jitter(delay or self.reconnect_delay)
  if self.log and was_bound then
    local e = err or self.last_error
    self.log("warn", "connection lost: " .. tostring(e) .. (self.auto_reconnect and
      (format(" (reconnecting in %.0f s)", self.reconnect_at - monotonic())) or ""),
      { provider = "oneshot", event = "disconnect" })
  end
  self:_emit_all(self.p:disconnected(monotonic()))
  if not self.auto_reconnect then self:_drop_unsent() end
end

-- Without a connection to come, what was never written was not sent.
-- Returns how many messages and uploads ended.
function D:_drop_unsent()
  local err = new_error { category = "network", code = "not_connected", provider = "oneshot",
    retryable = true, maybe_sent = false,
    message = "not connected and auto_reconnect is off: the message was never written, so it was not sent" }
  local messages, uploads = self.p:drop_queued(err), self.p:drop_uploads(err)
  self:_emit_all(messages)
  self:_emit_all(uploads)
  return #messages + #uploads
end

-- The protocol's gate: a message's own on_sending, then the session's,
-- just before its frame is built; either returning false holds it back
-- (cancelled, never written). One that raises is recorded (last_error) and
-- does not hold the message back: a broken hook is not a decision.
function D:_gate(rec)
  local mine = self.on_sendings[rec]
  self.on_sendings[rec] = nil
  if mine then
    local ok, verdict = pcall(mine, rec)
    if not ok then self:_raised("on_sending", verdict)
    elseif verdict == false then return false end
  end
  local fn = self.opts.on_sending
  if fn then
    local ok, verdict = pcall(fn, rec)
    if not ok then self:_raised("on_sending", verdict)
    elseif verdict == false then return false end
  end
  return true
end

-- A "bind" event: each connect and bind attempt, ok or not.
function D:_bind_event(out)
  local t0 = self.connect_started
  self.connect_started = nil
  if not t0 then return end
  local attempt, reconnect = self.binds, self.ever_bound
  if out.ok then self.binds, self.ever_bound = 0, true end
  self:_event("bind", out, monotonic() - t0, nil, 0, attempt, { reconnect = reconnect })
end

--- d:open() -> true | nil, err: connects and writes the bind request.
function D:open()
  if self.conn then return true end
  local o = self.opts
  self.binds, self.connect_started = self.binds + 1, monotonic()
  local sock = self.adapter.new { read_timeout = self.read_timeout, write_timeout = self.write_timeout }
  local ok, err = sock:connect(o.host, o.port, self.connect_timeout)
  if not ok then
    err = net_error(err, "connect", "cannot connect to " .. o.host .. ":" .. tostring(o.port) .. ": ")
    self.last_error = err
    if self.log then self.log("warn", tostring(err), { provider = "oneshot", event = "connect_failed" }) end
    self:_bind_event(err)
    self.reconnect_at = jitter(self.reconnect_delay)
    return nil, err
  end
  self.conn, self.reconnect_at = sock, nil
  if not self:_write(self.p:connected(monotonic())) then return nil, self.last_error end
  return true
end

--- Seconds until the next connect is due (0: now).
function D:reconnect_wait()
  if not self.reconnect_at then return 0 end
  local w = self.reconnect_at - monotonic()
  return w > 0 and w or 0
end

--- d:step(max_wait) -> connected?: one round of I/O on the open connection:
-- waits at most max_wait (or until the protocol's next deadline), feeds
-- what arrived, writes what is due.
function D:step(max_wait)
  local conn = self.conn
  if not conn then return false end
  local now = monotonic()
  local wait = max_wait or 0
  local due = self.p:next_deadline()
  if due and due - now < wait then wait = due - now end
  local data, err = conn:receive(65536, wait > 0 and wait or 0)
  now = monotonic()
  if data then
    local events, out = self.p:receive(data, now)
    self:_emit_all(events)
    if not self:_write(out) then return false end
  elseif err ~= "timeout" then
    self:_lost(net_error(err, "receive", "the connection failed: "))
    return false
  end
  if not self.conn then return false end
  -- Outside the granted sending window the queue waits (the server would
  -- answer 901); "refuse" turns new messages away in submit. Held while
  -- draining too.
  local outside = self.grant and not in_window(self.grant, self.clock()) or false
  self.outside = outside
  self.p:hold(self.holding or outside)
  local events, out = self.p:poll(now, self.gate)
  self:_emit_all(events)
  self:_write(out)
  return self.conn ~= nil
end

-- One round waiting at most until deadline, whether connected or not:
-- reconnects when due (unless auto_reconnect is off or the session is
-- closed), and sleeps, socket-free, while there is nothing to do.
function D:_pump(deadline)
  local now = monotonic()
  if self.conn then return self:step(deadline - now) end
  local sleep = self.adapter.sleep
  if self.closed or not self.auto_reconnect then
    -- No connection will come: end what waits for one, and wait out the
    -- deadline asleep (a caller's loop must not spin here).
    if not self.closed and self:_drop_unsent() > 0 then return end
    if deadline > now then sleep(deadline - now) end
    return
  end
  if self.reconnect_at and now < self.reconnect_at then
    local wake = min(deadline, self.reconnect_at)
    if wake > now then sleep(wake - now) end
    return
  end
  self:open()
end

--- d:connect([timeout]) -> true | nil, err: connects and waits for the bind.
function D:connect(timeout)
  if self.closed then misuse(self.name .. ": closed") end
  if self.bound then return true end
  self.last_error = nil
  local ok, err = self:open()
  if not ok then return nil, err end
  local deadline = monotonic() + (timeout or 15)
  while self.conn and not self.bound and monotonic() < deadline do self:_pump(deadline) end
  if self.bound then return true end
  -- Gone: why it went (a refused or unreadable bind answer, the bind
  -- timeout, ...); still connecting: our own timeout ran out first.
  if not self.conn and self.last_error then return nil, self.last_error end
  return nil, new_error { category = "timeout", code = "bind_timeout",
    provider = "oneshot", message = "no bind answer in time" }
end

-- ---- messages ----

--- Queues a message; on_result(res, err) is called with its outcome.
-- msg.expires_at (epoch seconds, by the clock option): a message still
-- queued then is never written and ends as `expired`.
-- @tparam table msg
-- @tparam[opt] function on_result
-- @tparam[opt] function on_sending called just before its bytes are written
-- @return the message's id, or nil, err (queue full)
function D:submit(msg, on_result, on_sending)
  if self.closed then misuse(self.name .. ": closed") end
  if on_result ~= nil and type(on_result) ~= "function" then misuse(self.name .. ": on_result must be a function") end
  if on_sending ~= nil and type(on_sending) ~= "function" then misuse(self.name .. ": on_sending must be a function") end
  local grant = self.grant
  if self.outside_window == "refuse" and grant and not in_window(grant, self.clock()) then
    return nil, new_error { category = "schedule", code = "outside_window", provider = "oneshot",
      retryable = true, message = ("outside the sending window the server grants (%s:00-%s:00 KST)")
        :format(tostring(grant.begin_time), tostring(grant.end_time)) }
  end
  local deadline
  if type(msg) == "table" and type(msg.expires_at) == "number" then
    deadline = monotonic() + (msg.expires_at - self.clock())
  end
  local rec, err = self.p:submit(msg, deadline)
  if not rec then return nil, err end
  self.callbacks[rec] = on_result or false
  if on_sending then self.on_sendings[rec] = on_sending end
  if self.opts.on_event then self.submitted[rec] = monotonic() end
  return true
end

--- Messages queued, not yet written.
-- @treturn integer
function D:queued() return self.p:queued() end
--- Messages written, not yet answered.
-- @treturn integer
function D:in_flight() return self.p:in_flight() end
--- d:hold(flag): keep queued messages back (while draining).
function D:hold(flag) self.holding = flag and true or false end

--- d:poll(timeout) -> true: runs I/O and callbacks for up to timeout seconds.
function D:poll(timeout)
  local deadline = monotonic() + (timeout or 0)
  repeat self:_pump(deadline) until monotonic() >= deadline
  return true
end

--- d:flush([timeout]) -> true when every submitted message has its outcome,
-- or nil, err when the time ran out first.
function D:flush(timeout)
  local p = self.p
  local deadline = monotonic() + (timeout or 60)
  while (p:queued() > 0 or p:in_flight() > 0) and monotonic() < deadline do self:_pump(deadline) end
  if p:queued() == 0 and p:in_flight() == 0 then return true end
  return nil, new_error { category = "timeout", code = "flush", provider = "oneshot",
    message = ("%d messages still queued, %d awaiting an answer"):format(p:queued(), p:in_flight()) }
end

--- d:drain([timeout]) -> true when every written message has its answer;
-- holds the queue (d:hold(false) lets it go again).
function D:drain(timeout)
  self.holding = true
  local deadline = monotonic() + (timeout or 3)
  while self.conn and self.p:in_flight() > 0 do
    local left = deadline - monotonic()
    if left <= 0 then break end
    self:step(left)
  end
  return self.p:in_flight() == 0
end

local HANDED_BACK = new_error { category = "unknown", code = "handed_back", provider = "oneshot",
  message = "taken back from the session before it was written" }

--- d:take_queued() -> the messages never written, out of the session, with
-- their on_result (which the session no longer calls).
function D:take_queued()
  local list = {}
  local events = self.p:drop_queued(HANDED_BACK)
  for i = 1, #events do
    local rec = events[i].rec
    list[i] = { rec = rec, on_result = self.callbacks[rec] }
    self.callbacks[rec] = nil
    self.on_sendings[rec] = nil
    self.submitted[rec] = nil
  end
  return list
end

--- d:unbind([timeout]): UnBindReq, waits for the answer, disconnects. Queued
-- messages stay queued (for the next connection).
function D:unbind(timeout)
  if self.conn and self.bound then
    local deadline = monotonic() + (timeout or 3)
    if self:_write(self.p:close(monotonic())) then
      while self.conn and self.bound do
        local left = deadline - monotonic()
        if left <= 0 then break end
        self:step(left)
      end
    end
  end
  if self.conn then
    self.conn:close()
    self.conn = nil
    self:_emit_all(self.p:disconnected(monotonic()))
  end
  self.bound = false
end

--- d:close(): unbinds; every message and upload still queued gets its
-- outcome: not sent. Idempotent; the session cannot be used again.
function D:close()
  if self.closed then return end
  self.closed = true
  self:unbind(3)
  local err = new_error { category = "network", code = "closed",
    provider = "oneshot", retryable = true, maybe_sent = false,
    message = "the session was closed before this message was sent" }
  self:_emit_all(self.p:drop_queued(err))
  self:_emit_all(self.p:drop_uploads(err))
end

return _M
