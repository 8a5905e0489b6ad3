-- ksms.oneshot.session: a OneShot account bound over one TCP connection,
-- driven by the sans-I/O state machine (ksms.oneshot.protocol) over the
-- core's blocking TCP client (core.tcp_connect), which never waits past
-- its timeouts.
--
--   local s = session.new { host, port, id, password, key, iv,
--     on_report, on_spam, on_change_phone, reconnect_delay = 30,
--     keepalive_interval = 25, encrypted = false, ... }
--   s:connect()                 -> true | nil, err   (connect and bind)
--   s:send(msg)                 -> result | nil, err (blocks until its outcome;
--                                  msg.images: JPEGs uploaded first, sent as MMS)
--   s:upload(data [, ext])      -> the uploaded file's name | nil, err
--   s:submit(msg, on_result)    -> true | nil, err   (queued; on_result(res) or on_result(nil, err))
--   s:poll(timeout)             -> runs I/O and callbacks for up to timeout seconds
--   s:flush([timeout])          -> true when every submitted message has its outcome
--   s:close()                   -> UnBind, then close (idempotent; also __close;
--                                  no __gc, see Session.close)
--
-- Every submitted message ends in exactly one outcome: its MsgSendRes, a
-- refusal before sending, or, when the connection died after it was
-- written, { category = "unknown", maybe_sent = true }: never resent unless
-- resend_unanswered = true. Messages not yet written when a connection dies
-- are sent after the reconnect (reconnect_delay, jittered); with
-- auto_reconnect = false there is none, so they end at once as not sent
-- (category "network", code "not_connected", maybe_sent = false). Outside the
-- BeginTime..EndTime the bind grants (Korea time) messages are held until
-- the window opens, or refused with outside_window = "refuse". Pushed reports,
-- spam notices and number changes reach the callbacks, and each is
-- acknowledged only after its callback returns.

local core = require "ksms.core"
local protocol = require "ksms.oneshot.protocol"
local errors = require "ksms.errors"

local type, pairs, pcall, setmetatable, error, tostring = type, pairs, pcall, setmetatable, error, tostring
local min, max, floor = math.min, math.max, math.floor
local monotonic, tcp_connect = core.monotonic, core.tcp_connect
local random = core.random -- the OS random source: LuaJIT never seeds math.random
local misuse = errors.misuse

local _M = { _VERSION = "0.1.0" }

local Session = {}
Session.__index = Session

-- Options the session keeps, with their types; the protocol's
-- (protocol.options) go to the protocol; any other raises.
local OWN = { host = "string", port = "number", on_report = "function", on_spam = "function",
  on_change_phone = "function", reconnect_delay = "number", connect_timeout = "number",
  write_timeout = "number", auto_reconnect = "boolean", outside_window = "string", clock = "function" }
_M.options = OWN

-- Is the Korea-time hour of `epoch` inside the granted BeginTime..EndTime
-- (hours, end exclusive; a window like 22..3 wraps midnight; 0..24 is all day)?
local function in_window(grant, epoch)
  local b, e = tonumber(grant.begin_time) or 0, tonumber(grant.end_time) or 24
  if e - b >= 24 or b == e then return true end
  -- Arithmetic, not os.date: this runs on every turn of the I/O loop, and
  -- POSIX time has no leap seconds, so the hour is exact (KST is UTC+9).
  local h = floor((epoch + 9 * 3600) % 86400 / 3600)
  if b < e then return h >= b and h < e end
  return h >= b or h < e
end
_M.in_window = in_window

function _M.new(opts)
  if type(opts) ~= "table" then misuse("ksms.oneshot.session: options table expected") end
  errors.check_options("ksms.oneshot.session", opts, OWN, protocol.options)
  if type(opts.host) ~= "string" or type(opts.port) ~= "number" then
    misuse("ksms.oneshot.session: host (string) and port (number) are required")
  end
  local ow = opts.outside_window or "hold"
  if ow ~= "hold" and ow ~= "refuse" then
    misuse("ksms.oneshot.session: outside_window is \"hold\" or \"refuse\"")
  end
  local popts = {}
  for k, v in pairs(opts) do if not OWN[k] then popts[k] = v end end
  local p = protocol.new(popts)
  return setmetatable({
    opts = opts, p = p, conn = nil, bound = false, closed = false,
    callbacks = {}, reconnect_at = nil, last_error = nil,
    reconnect_delay = opts.reconnect_delay or 30,
    outside_window = ow, clock = opts.clock or os.time,
    upload_results = setmetatable({}, { __mode = "k" }),
  }, Session)
end

function Session:_write(out)
  if out == "" or not self.conn then return true end
  local ok, err = self.conn:send(out)
  if not ok then
    -- A frame may be cut in half: the connection cannot be trusted.
    self:_lost(err)
    return false
  end
  return true
end

function Session:_emit(ev)
  local t = ev.type
  if t == "result" then
    local cb = self.callbacks[ev.rec]
    self.callbacks[ev.rec] = nil
    if cb then cb(protocol.outcome_of(ev)) end
  elseif t == "report" or t == "spam" or t == "change_phone" then
    local handler = self.opts["on_" .. t]
    if handler then
      local ok, err = pcall(handler, ev)
      if not ok then
        -- Not acknowledged: the server pushes it again after a reconnect.
        self.last_error = errors.new { category = "unknown", code = "callback",
          provider = "oneshot", message = "on_" .. t .. " raised: " .. tostring(err) }
        return
      end
    end
    self:_write(self.p:ack(ev, monotonic()))
  elseif t == "bound" then
    self.bound = true
    self.grant = ev
  elseif t == "bind_failed" then
    self.last_error = ev.err
    self:_lost(ev.err, ev.retry_after)
  elseif t == "dead" then
    self:_lost(errors.new { category = "network", code = ev.reason, provider = "oneshot",
      message = "the server stopped answering (" .. ev.reason .. ")" })
  elseif t == "protocol_error" then
    -- Non-fatal ones (an answer nobody waits for, a mistyped push) are
    -- ignored but kept as the last error.
    if ev.fatal then self:_lost(ev.err) else self.last_error = ev.err end
  elseif t == "unbound" then
    self.bound = false
  elseif t == "upload_done" or t == "upload_failed" then
    self.upload_results[ev.handle] = ev
  end
end

function Session:_emit_all(events)
  for i = 1, #events do self:_emit(events[i]) end
end

-- The connection is gone: every message written but unanswered gets its
-- maybe-sent outcome, the rest waits for the reconnect (or, when there
-- will be none, ends as not sent).
function Session:_lost(err, delay)
  if self.conn then
    self.conn:close()
    self.conn = nil
    self.bound = false
    self.last_error = err or self.last_error
    local d = delay or self.reconnect_delay
    self.reconnect_at = monotonic() + d * (0.8 + 0.4 * random())
    self:_emit_all(self.p:disconnected(monotonic()))
    if self.opts.auto_reconnect == false then self:_drop_unsent() end
  end
end

-- Without a connection to come, what was never written was not sent.
-- Returns how many messages and uploads ended.
function Session:_drop_unsent()
  local err = errors.new { category = "network", code = "not_connected", provider = "oneshot",
    retryable = true, maybe_sent = false,
    message = "not connected and auto_reconnect is off: the message was never written, so it was not sent" }
  local messages, uploads = self.p:drop_queued(err), self.p:drop_uploads(err)
  self:_emit_all(messages)
  self:_emit_all(uploads)
  return #messages + #uploads
end

function Session:_open()
  local o = self.opts
  local conn, err = tcp_connect(o.host, o.port, { connect_timeout = o.connect_timeout or 10,
    read_timeout = 30, write_timeout = o.write_timeout or 10 })
  if not conn then
    err.provider = "oneshot"
    self.last_error = err
    self.reconnect_at = monotonic() + self.reconnect_delay * (0.8 + 0.4 * random())
    return nil, err
  end
  self.conn = conn
  self.reconnect_at = nil
  self:_write(self.p:connected(monotonic()))
  return true
end

-- One round of I/O: waits at most until `deadline` (or the protocol's next
-- deadline), feeds what arrived, writes what is due.
function Session:_step(deadline)
  local now = monotonic()
  if not self.conn then
    if self.closed or self.opts.auto_reconnect == false then
      -- No connection will come: end what waits for one, and wait out the
      -- deadline asleep (a caller's loop must not spin here).
      if not self.closed and self:_drop_unsent() > 0 then return end
      if deadline > now then core.sleep(deadline - now) end
      return
    end
    if self.reconnect_at and now < self.reconnect_at then
      -- Nothing to do until the reconnect: sleep in the socket-free way.
      local wake = min(deadline, self.reconnect_at)
      if wake > now then core.sleep(wake - now) end
      return
    end
    self:_open()
    return
  end
  local due = self.p:next_deadline()
  local wait = deadline - now
  if due then wait = min(wait, due - now) end
  local data, err = self.conn:receive(65536, max(0, wait))
  now = monotonic()
  if data then
    local events, out = self.p:receive(data, now)
    self:_emit_all(events)
    if not self:_write(out) then return end
  elseif err.code ~= "timeout" then
    self:_lost(err)
    return
  end
  if self.conn then
    -- Outside the granted sending window the queue waits (the server
    -- would answer 901); "refuse" turns new messages away in submit.
    if self.grant then self.p:hold(not in_window(self.grant, self.clock())) end
    local events, out = self.p:poll(now)
    self:_emit_all(events)
    self:_write(out)
  end
end

-- s:connect() -> true | nil, err: connects and waits for the bind result.
function Session:connect(timeout)
  if self.closed then error("ksms.oneshot.session: closed", 2) end
  if self.bound then return true end
  self.last_error = nil
  local ok, err = self:_open()
  if not ok then return nil, err end
  local deadline = monotonic() + (timeout or 15)
  while self.conn and not self.bound and monotonic() < deadline do self:_step(deadline) end
  if self.bound then return true end
  -- Gone: why it went (a refused or unreadable bind answer, the bind
  -- timeout, ...); still connecting: our own timeout ran out first.
  if not self.conn and self.last_error then return nil, self.last_error end
  return nil, errors.new { category = "timeout", code = "bind_timeout",
    provider = "oneshot", message = "no bind answer in time" }
end

function Session:submit(msg, on_result)
  if self.closed then error("ksms.oneshot.session: closed", 2) end
  if on_result ~= nil and type(on_result) ~= "function" then error("ksms.oneshot.session: on_result must be a function", 2) end
  if self.outside_window == "refuse" and self.grant and not in_window(self.grant, self.clock()) then
    return nil, errors.new { category = "schedule", code = "outside_window", provider = "oneshot",
      retryable = true, message = ("outside the sending window the server grants (%s:00-%s:00 KST)")
        :format(tostring(self.grant.begin_time), tostring(self.grant.end_time)) }
  end
  local rec, err = self.p:submit(msg)
  if not rec then return nil, err end
  self.callbacks[rec] = on_result or false
  return true
end

-- s:poll(timeout) -> runs I/O and callbacks for up to timeout seconds.
function Session:poll(timeout)
  local deadline = monotonic() + (timeout or 0)
  repeat self:_step(deadline) until monotonic() >= deadline
  return true
end

-- s:flush([timeout]) -> true when every submitted message has its outcome,
-- or nil, err when the time ran out first.
function Session:flush(timeout)
  local deadline = monotonic() + (timeout or 60)
  while (self.p:queued() > 0 or self.p:in_flight() > 0) and monotonic() < deadline do
    self:_step(deadline)
  end
  if self.p:queued() == 0 and self.p:in_flight() == 0 then return true end
  return nil, errors.new { category = "timeout", code = "flush", provider = "oneshot",
    message = ("%d messages still queued, %d awaiting an answer"):format(self.p:queued(), self.p:in_flight()) }
end

-- MMS images: JPEG only, at most 3, 1 MB in all (document 1.2), as paths
-- or { data =, filename = } tables. Checked before anything is uploaded.
local function load_images(images)
  if type(images) == "string" or (type(images) == "table" and images.data) then images = { images } end
  if type(images) ~= "table" or #images == 0 then error("ksms: 'images' is a path, { data = }, or a list of them", 4) end
  local function bad(fmt, ...)
    return nil, errors.new { category = "invalid_input", code = "image", provider = "oneshot", message = fmt:format(...) }
  end
  if #images > 3 then return bad("%d images; OneShot takes at most 3", #images) end
  local out, total = {}, 0
  for i, item in ipairs(images) do
    local data = type(item) == "table" and item.data
    if type(item) == "string" then
      local f, ferr = io.open(item, "rb")
      if not f then return bad("image %d cannot be read: %s", i, tostring(ferr)) end
      data = f:read("a")
      f:close()
    end
    if type(data) ~= "string" then error("ksms: image " .. i .. " is a path or { data = }", 4) end
    if data:sub(1, 3) ~= "\255\216\255" then return bad("image %d is not a JPEG", i) end
    if data:sub(-2) ~= "\255\217" then return bad("image %d is a cut-off JPEG (no end marker)", i) end
    total = total + #data
    out[i] = data
  end
  if total > 1024 * 1024 then return bad("images are %d bytes in all; OneShot takes at most 1 MB", total) end
  return out
end

-- s:upload(data [, ext]) -> file name | nil, err: the name, data and
-- finish steps of an MMS image upload, waited for.
function Session:upload(data, ext, timeout)
  local h, err = self.p:upload(data, ext or ".jpg")
  if not h then return nil, err end
  local deadline = monotonic() + (timeout or 60)
  while not self.upload_results[h] and monotonic() < deadline do self:_step(deadline) end
  local ev = self.upload_results[h]
  if not ev then
    return nil, errors.new { category = "timeout", code = "upload", provider = "oneshot", message = "upload not finished in time" }
  end
  if ev.type == "upload_failed" then return nil, ev.err end
  return ev.file_name
end

-- s:send(msg) -> result | nil, err: submits and waits for its outcome.
-- msg.images (paths or { data = }) are checked, uploaded, and sent as MMS.
function Session:send(msg, timeout)
  if type(msg) == "table" and msg.images ~= nil then
    local datas, ierr = load_images(msg.images)
    if not datas then return nil, ierr end
    local copy, files = {}, {}
    for k, v in pairs(msg) do if k ~= "images" then copy[k] = v end end
    for i, data in ipairs(datas) do
      local name, uerr = self:upload(data, ".jpg", timeout)
      if not name then return nil, uerr end
      files[i] = name
    end
    copy.files = files
    msg = copy
  end
  local done, res, rerr = false
  local ok, err = self:submit(msg, function(r, e) done, res, rerr = true, r, e end)
  if not ok then return nil, err end
  local deadline = monotonic() + (timeout or 60)
  while not done and monotonic() < deadline do self:_step(deadline) end
  if done then return res, rerr end
  -- Still queued or in flight: it may yet be sent, so it must not be resent
  -- blindly (the same outcome ksms.client("oneshot") gives).
  return nil, errors.new { category = "unknown", code = "no_outcome", provider = "oneshot", maybe_sent = true,
    message = "no outcome in time; the message stays queued and may still be sent" }
end

function Session:close()
  if self.closed then return end
  self.closed = true
  if self.conn and self.bound then
    local deadline = monotonic() + 3
    self:_write(self.p:close(monotonic()))
    while self.conn and self.bound and monotonic() < deadline do self:_step(deadline) end
  end
  if self.conn then
    self.conn:close()
    self.conn = nil
    self:_emit_all(self.p:disconnected(monotonic()))
  end
  -- Every message and upload still queued gets its outcome: not sent.
  local err = errors.new { category = "network", code = "closed",
    provider = "oneshot", retryable = true, maybe_sent = false,
    message = "the session was closed before this message was sent" }
  self:_emit_all(self.p:drop_queued(err))
  self:_emit_all(self.p:drop_uploads(err))
end

-- No __gc: closing unbinds and waits for the answer, which a finalizer
-- must not do; the TCP connection has its own finalizer.
Session.__close = Session.close

function Session:__tostring()
  return ("ksms.oneshot.session(%s:%d, %s)"):format(self.opts.host, self.opts.port,
    self.bound and "bound" or (self.conn and "connecting" or "disconnected"))
end

return _M
