--- ksms.oneshot.session: a OneShot account bound over one TCP connection:
-- the OneShot driver (ksms.oneshot.driver, which runs the sans-I/O
-- ksms.oneshot.protocol) over a blocking socket adapter: the core's TCP
-- client (core.tcp_connect, which never waits past its timeouts), or with
-- socket = "luasocket" LuaSocket (require "socket"), or any adapter table
-- (the interface is in ksms.oneshot.driver).
--
--   local s = session.new { host, port, id, password, key, iv,
--     on_report, on_spam, on_change_phone, reconnect_delay = 30,
--     keepalive_interval = 25, encrypted = false, socket = "core", ... }
--     (the options: ksms.oneshot.driver and ksms.oneshot.protocol)
--   s:connect()                 -> true | nil, err   (connect and bind)
--   s:send(msg)                 -> result | nil, err (blocks until its outcome;
--                                  msg.images: JPEGs uploaded first, sent as MMS)
--   s:upload(data [, ext])      -> the uploaded file's name | nil, err
--   s:submit(msg, on_result, on_sending) -> true | nil, err   (queued; on_result(res) or on_result(nil, err);
--                                  on_sending(rec) just before its frame is built, at each
--                                  attempt; false holds it back: cancelled, never written)
--   s:poll(timeout)             -> runs I/O and callbacks for up to timeout seconds
--   s:flush([timeout])          -> true when every submitted message has its outcome
--   s:close()                   -> UnBind, then close (idempotent; also __close;
--                                  no __gc, see Session.__close)
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
-- acknowledged only after its callback returns. A callback that raises
-- (on_result too) is recorded in s.last_error and stops nothing.
-- @module ksms.oneshot.session
-- @alias _M

local core = require "ksms.core"
local driver = require "ksms.oneshot.driver"
local window = require "ksms.oneshot.window"
local errors = require "ksms.errors"

local type, pairs, ipairs, setmetatable, tostring = type, pairs, ipairs, setmetatable, tostring
local monotonic = core.monotonic
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

local Session = setmetatable({}, { __index = driver.Driver })
Session.__index = Session

-- The options the session itself takes (the driver's and the protocol's
-- are in driver.options and protocol.options).
local OWN = { socket = "string" } -- "core" (the default), "luasocket", or an adapter table
local ADAPTERS = { core = "ksms.oneshot.sockets.core", luasocket = "ksms.oneshot.sockets.luasocket" }

-- Every option a session takes but the protocol's, with its type.
_M.options = { socket = OWN.socket }
for k, t in pairs(driver.options) do _M.options[k] = t end

_M.in_window = window.in_window -- kept for callers of ksms.oneshot.session.in_window

local function adapter_of(socket)
  if socket == nil then socket = "core" end
  if type(socket) == "table" then
    if type(socket.new) ~= "function" or type(socket.sleep) ~= "function" then
      misuse("ksms.oneshot.session: socket (a table) needs new and sleep (see ksms.oneshot.driver)")
    end
    return socket
  end
  local name = ADAPTERS[socket]
  if not name then misuse("ksms.oneshot.session: socket is \"core\", \"luasocket\" or an adapter table") end
  return require(name)
end

--- A OneShot session (the driver over a blocking socket). See docs/oneshot.md for every option.
-- @tparam table opts host, port, id, password, key, iv, socket ("core" or "luasocket"), on_report, on_result, ...
-- @return a session
function _M.new(opts)
  if type(opts) ~= "table" then misuse("ksms.oneshot.session: options table expected") end
  local adapter = adapter_of(opts.socket)
  return setmetatable(driver.new("ksms.oneshot.session", opts, adapter, OWN), Session)
end

-- MMS images: JPEG only, at most 3, 1 MB in all (document 1.2), as paths
-- or { data =, filename = } tables. Checked before anything is uploaded.
local function load_images(images)
  if type(images) == "string" or (type(images) == "table" and images.data) then images = { images } end
  if type(images) ~= "table" or #images == 0 then misuse("ksms: 'images' is a path, { data = }, or a list of them") end
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
      data = f:read("*a")
      f:close()
    end
    if type(data) ~= "string" then misuse("ksms: image " .. i .. " is a path or { data = }") end
    if data:sub(1, 3) ~= "\255\216\255" then return bad("image %d is not a JPEG", i) end
    if data:sub(-2) ~= "\255\217" then return bad("image %d is a cut-off JPEG (no end marker)", i) end
    total = total + #data
    out[i] = data
  end
  if total > 1024 * 1024 then return bad("images are %d bytes in all; OneShot takes at most 1 MB", total) end
  return out
end

--- s:upload(data [, ext]) -> file name | nil, err: the name, data and
-- finish steps of an MMS image upload, waited for.
function Session:upload(data, ext, timeout)
  local h, err = self.p:upload(data, ext or ".jpg")
  if not h then return nil, err end
  local deadline = monotonic() + (timeout or 60)
  while not self.upload_results[h] and monotonic() < deadline do self:_pump(deadline) end
  local ev = self.upload_results[h]
  if not ev then
    return nil, errors.new { category = "timeout", code = "upload", provider = "oneshot", message = "upload not finished in time" }
  end
  if ev.type == "upload_failed" then return nil, ev.err end
  return ev.file_name
end

--- s:send(msg) -> result | nil, err: submits and waits for its outcome.
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
  while not done and monotonic() < deadline do self:_pump(deadline) end
  if done then return res, rerr end
  -- Still queued or in flight: it may yet be sent, so it must not be resent
  -- blindly (the same outcome ksms.client("oneshot") gives).
  return nil, errors.new { category = "unknown", code = "no_outcome", provider = "oneshot", maybe_sent = true,
    message = "no outcome in time; the message stays queued and may still be sent" }
end

-- No __gc: closing unbinds and waits for the answer, which a finalizer
-- must not do; the TCP connection has its own finalizer.
Session.__close = Session.close

function Session:__tostring()
  return ("ksms.oneshot.session(%s:%d, %s)"):format(self.opts.host, self.opts.port,
    self.bound and "bound" or (self.conn and "connecting" or "disconnected"))
end

return _M
