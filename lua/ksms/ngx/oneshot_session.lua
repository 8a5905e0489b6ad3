-- ksms.ngx.oneshot_session: the OneShot protocol state machine
-- (ksms.oneshot.protocol, unchanged) over an ngx.socket.tcp cosocket, for
-- one nginx timer (a cosocket lives and dies with the handler that made
-- it). The behaviour of ksms.oneshot.session: callbacks, maybe-sent
-- outcomes, reconnect with jitter, hold outside the window, acks after the
-- report callbacks. ksms.ngx.oneshot drives it; use that in nginx.
--
--   local s = session.new { host, port, id, password, key, iv, on_report,
--     on_spam, on_change_phone, on_sending, on_requeued,
--     reconnect_delay = 30, connect_timeout = 10, send_timeout = 10,
--     read_timeout = 95, outside_window = "hold", ...protocol options }
--   s:connect()               -> true | nil, err  (from the timer that steps it)
--   s:step(max_wait)          -> connected? (waits for data, a protocol
--                                deadline or max_wait, then reads, polls, writes)
--   s:submit(msg, on_result)  -> rec | nil, err
--   s:hold(flag)              -> keep queued messages back (draining)
--   s:drain(timeout)          -> waits for the answers of messages written
--   s:take_queued()           -> { { rec =, on_result = }, ... } not written
--   s:close(timeout)          -> UnBindReq, wait, close (queued ones stay)
--   s:reconnect_wait()        -> seconds until the next connect is due
--
-- Reading: a light thread blocks in receiveany(65536) and hands the bytes
-- over through a semaphore, because a read timeout, although it leaves the
-- cosocket open, is logged at error level on every expiry; waiting on the
-- semaphore with a timeout logs nothing. The cosocket is full-duplex, so
-- the main thread writes while the reader waits. The reader's own read
-- timeout (read_timeout) is only a backstop: the protocol's keepalive
-- makes the server answer at least every keepalive_interval seconds.

local protocol = require "ksms.oneshot.protocol"
local errors = require "ksms.errors"
local in_window = require("ksms.oneshot.session").in_window
local core = require "ksms.core"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local type, pairs, pcall, setmetatable, error, tostring = type, pairs, pcall, setmetatable, error, tostring
local min, floor = math.min, math.floor
local concat = table.concat
local monotonic = core.monotonic
local random = core.random -- math.random is not seeded per worker
local spawn, kill = ngx.thread.spawn, ngx.thread.kill
local log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN

local _M = { _VERSION = "0.1.0" }

local S = {}
S.__index = S

local OWN = { host = true, port = true, on_report = true, on_spam = true, on_change_phone = true,
  on_sending = true, on_requeued = true, reconnect_delay = true,
  connect_timeout = true, send_timeout = true, read_timeout = true, outside_window = true,
  clock = true }
_M.own_options = OWN

local function net_error(code, message)
  return errors.new { category = "network", code = code, provider = "oneshot", retryable = true,
    message = message }
end

function _M.new(opts)
  if type(opts) ~= "table" then error("ksms.ngx.oneshot_session: options table expected", 2) end
  if type(opts.host) ~= "string" or type(opts.port) ~= "number" then
    error("ksms.ngx.oneshot_session: host (string) and port (number) are required", 2)
  end
  local popts = {}
  for k, v in pairs(opts) do if not OWN[k] then popts[k] = v end end
  local p = protocol.new(popts)
  local ka = (popts.keepalive_interval or 25) + (popts.alive_timeout or 10)
  return setmetatable({
    opts = opts, p = p, sock = nil, bound = false, grant = nil, callbacks = {},
    inbox = {}, reader = nil, reader_err = nil, sema = nil, holding = false,
    reconnect_delay = opts.reconnect_delay or 30, reconnect_at = nil, last_error = nil,
    read_ms = floor((opts.read_timeout or ka + 60) * 1000),
    clock = opts.clock or ngx.time,
  }, S)
end

local function reader(self, sock)
  while true do
    local data, err = sock:receiveany(65536)
    if data then
      local inbox = self.inbox
      inbox[#inbox + 1] = data
      self.sema:post(1)
    elseif err ~= "timeout" then
      self.reader_err = err
      self.sema:post(1)
      return
    end
  end
end

function S:connect()
  if self.sock then return true end
  local o = self.opts
  local sock = ngx.socket.tcp()
  sock:settimeouts((o.connect_timeout or 10) * 1000, (o.send_timeout or 10) * 1000, self.read_ms)
  local ok, err = sock:connect(o.host, o.port)
  if not ok then
    self.last_error = net_error("connect", "cannot connect to " .. o.host .. ":" .. o.port .. ": " .. tostring(err))
    self.reconnect_at = monotonic() + self.reconnect_delay * (0.8 + 0.4 * random())
    return nil, self.last_error
  end
  self.sock, self.reader_err, self.inbox = sock, nil, {}
  self.sema = semaphore.new(0)
  self.reconnect_at = nil
  self.reader = spawn(reader, self, sock)
  self:_write(self.p:connected(monotonic()))
  return self.sock ~= nil
end

function S:reconnect_wait()
  if not self.reconnect_at then return 0 end
  local w = self.reconnect_at - monotonic()
  return w > 0 and w or 0
end

function S:_write(out)
  if out == "" or not self.sock then return true end
  local ok, err = self.sock:send(out)
  if not ok then
    -- A frame may be cut in half: the connection cannot be trusted.
    self:_lost(net_error("send", "write failed: " .. tostring(err)))
    return false
  end
  return true
end

-- The connection is gone: written but unanswered messages get their
-- maybe-sent outcome, the rest waits for the next connect.
function S:_lost(err, delay)
  if not self.sock then return end
  if self.reader then kill(self.reader) end
  self.sock:close()
  self.sock, self.reader, self.bound = nil, nil, false
  self.last_error = err
  self.reconnect_at = monotonic() + (delay or self.reconnect_delay) * (0.8 + 0.4 * random())
  self:_emit_all(self.p:disconnected(monotonic()))
end

-- At most one protocol warning a second, with a count of those left out:
-- a hostile server's stream of bad frames must not flood the error log.
function S:_warn(err)
  local now = monotonic()
  if self.warned_at and now - self.warned_at < 1 then
    self.unwarned = self.unwarned + 1
    return
  end
  local skipped = self.unwarned or 0
  self.warned_at, self.unwarned = now, 0
  log(WARN, "ksms.ngx.oneshot: ", tostring(err),
    skipped > 0 and (" (" .. skipped .. " more protocol errors not logged)") or "")
end

local function call(name, fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then log(ERR, "ksms.ngx.oneshot: ", name, " raised: ", tostring(err)) end
  return ok
end

function S:_emit(ev)
  local t = ev.type
  if t == "result" then
    local cb = self.callbacks[ev.rec]
    self.callbacks[ev.rec] = nil
    if cb then call("on_result", cb, protocol.outcome_of(ev)) end
  elseif t == "report" or t == "spam" or t == "change_phone" then
    local handler = self.opts["on_" .. t]
    -- Not acknowledged when it raises: the server pushes it again later.
    if handler and not call("on_" .. t, handler, ev) then return end
    self:_write(self.p:ack(ev, monotonic()))
  elseif t == "bound" then
    self.bound, self.grant = true, ev
  elseif t == "bind_failed" then
    log(WARN, "ksms.ngx.oneshot: bind refused: ", tostring(ev.err))
    self:_lost(ev.err, ev.retry_after)
  elseif t == "dead" then
    self:_lost(net_error(ev.reason, "the server stopped answering (" .. ev.reason .. ")"))
  elseif t == "protocol_error" then
    self:_warn(ev.err)
    if ev.fatal then self:_lost(ev.err) else self.last_error = ev.err end
  elseif t == "unbound" then
    self.bound = false
  elseif t == "requeued" and self.opts.on_requeued then
    call("on_requeued", self.opts.on_requeued, ev.rec)
  end
end

function S:_emit_all(events)
  for i = 1, #events do self:_emit(events[i]) end
end

-- Before bytes go out: tell which messages they carry (the binder records
-- "written" first, so a crash in between errs towards maybe-sent).
function S:_sending()
  local fn = self.opts.on_sending
  if not fn then return end
  for rec in pairs(self.callbacks) do
    if rec.state == "sent" and rec._told ~= rec.attempts then
      rec._told = rec.attempts
      call("on_sending", fn, rec)
    end
  end
end

function S:step(max_wait)
  if not self.sock then return false end
  local now = monotonic()
  local wait = max_wait or 1
  local due = self.p:next_deadline()
  if due and due - now < wait then wait = due - now end
  if wait > 0 and not self.inbox[1] and not self.reader_err then
    -- At least 1 ms: shorter rounds to 0, which returns without yielding.
    self.sema:wait(wait < 0.001 and 0.001 or wait)
  end
  now = monotonic()
  local inbox = self.inbox
  if inbox[1] then
    self.inbox = {}
    local events, out = self.p:receive(#inbox == 1 and inbox[1] or concat(inbox), now)
    self:_emit_all(events)
    if not self:_write(out) then return false end
  end
  if not self.sock then return false end
  if self.reader_err then
    self:_lost(net_error(self.reader_err == "closed" and "closed" or "receive",
      "the connection failed: " .. tostring(self.reader_err)))
    return false
  end
  -- Outside the granted sending window the queue waits (the server would
  -- answer 901), as while draining.
  local outside = self.grant and not in_window(self.grant, self.clock())
  self.outside = outside
  self.p:hold(self.holding or outside)
  local events, out = self.p:poll(now)
  self:_emit_all(events)
  if out ~= "" and self.sock then
    self:_sending()
    self:_write(out)
  end
  return self.sock ~= nil
end

function S:submit(msg, on_result)
  if on_result ~= nil and type(on_result) ~= "function" then
    error("ksms.ngx.oneshot_session: on_result must be a function", 2)
  end
  local rec, err = self.p:submit(msg)
  if not rec then return nil, err end
  self.callbacks[rec] = on_result or false
  return rec
end

function S:queued() return self.p:queued() end
function S:in_flight() return self.p:in_flight() end
function S:hold(flag) self.holding = flag and true or false end

function S:drain(timeout)
  self.holding = true
  local deadline = monotonic() + (timeout or 3)
  while self.sock and self.p:in_flight() > 0 do
    local left = deadline - monotonic()
    if left <= 0 then break end
    self:step(min(left, 0.1))
  end
  return self.p:in_flight() == 0
end

local DROPPED = errors.new { category = "unknown", code = "handed_back", provider = "oneshot",
  message = "taken back from the session before it was written" }

function S:take_queued()
  local list = {}
  local events = self.p:drop_queued(DROPPED)
  for i = 1, #events do
    local rec = events[i].rec
    list[i] = { rec = rec, on_result = self.callbacks[rec] }
    self.callbacks[rec] = nil
  end
  return list
end

function S:close(timeout)
  if self.sock and self.bound then
    local deadline = monotonic() + (timeout or 2)
    if self:_write(self.p:close(monotonic())) then
      while self.sock and self.bound do
        local left = deadline - monotonic()
        if left <= 0 then break end
        self:step(min(left, 0.1))
      end
    end
  end
  if self.sock then
    if self.reader then kill(self.reader) end
    self.sock:close()
    self.sock, self.reader = nil, nil
    self:_emit_all(self.p:disconnected(monotonic()))
  end
  self.bound = false
end

return _M
