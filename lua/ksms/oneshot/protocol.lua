--- ksms.oneshot.protocol: the OneShot client protocol as a sans-I/O state
-- machine. It performs no I/O and keeps no time of its own: bytes received
-- and the current time (any monotonic seconds) go in, bytes to write and
-- events come out. (The wall clock is read once, by new(), for the default
-- id_prefix.) A session (sockets, timers) drives it:
--
--   local p = protocol.new { id =, password =, key =, iv =, ... }
--   out                = p:connected(now)        -- after the TCP connect
--   events, out        = p:receive(bytes, now)   -- whatever the socket gave
--   events, out        = p:poll(now, [gate])     -- at p:next_deadline() or later
--   out                = p:ack(event, [now])     -- after handling a report,
--                                                -- spam or change_phone event
--   rec | nil, err     = p:submit(msg, [deadline]) -- queue a message (built and
--                                                -- checked by ksms.oneshot.message)
--   handle | nil, err  = p:upload(data, ext)     -- queue an MMS image upload
--   out                = p:close(now)            -- UnBindReq (when bound)
--   events             = p:disconnected(now)     -- the socket is gone
--   t | nil            = p:next_deadline()       -- when poll is next due
--
-- out is always a string ("" when there is nothing to write); write all of
-- it, in order. Every event is a table with a `type`:
--   bound        speed, begin_time, end_time, effective_time, bind_id
--   bind_failed  code, err (a ksms error), retry_after (seconds: bind_retry,
--                default 30, after a refused login, as the document asks; nil after an answer
--                that cannot be read, so the caller's own delay applies)
--   result       rec, user_msg_id, sub_id, result, ok, outcome, body
--                (outcome: { ok = true, code = 0 } or a ksms error; a message
--                lost with the connection: category "unknown", maybe_sent)
--   requeued     rec, result, retry_at (903/11, or resend_unanswered)
--   report       user_msg_id, sub_id, server_msg_id, msg_type, phone, result,
--                telecom, delivery_time, user_data, result_message, outcome,
--                body -- needs p:ack(event)
--   spam         spam_id, phone, deny_no, body          -- needs p:ack(event)
--   change_phone server_msg_id, phone, change_phone, body -- needs p:ack(event)
--   sent         rec, user_msg_id, sub_id, attempt (1 the first time, 2 and
--                on after a requeue): one for every MsgSendReq in the out
--                that the same poll returns. The events come back before
--                the bytes are written, so a driver can record "written"
--                first. poll's gate(rec), when given, is asked just before
--                each MsgSendReq is framed: false holds that message back
--                (a result event, category "cancelled", nothing written).
--   upload_step  handle, step ("name" | "data" | "finish"), result
--   upload_done  handle, file_name   /  upload_failed handle, err
--   alive_res    /  unbound result  /  dead reason ("alive_timeout" | "bind_timeout")
--   protocol_error err, fatal (fatal: drop the connection, then disconnected())
--
-- Nothing the server sends raises. A bind answer that cannot be read
-- (Base64, AES, JSON, a mistyped Result) is a bind_failed with a protocol
-- error (code bad_bind_answer) at once. An upload answer out of step or
-- mistyped fails that upload (out_of_order, bad_answer); a MsgSendRes
-- without a usable Result ends its message with a protocol error,
-- maybe_sent. Anything else unusable (an answer nobody waits for, an
-- unknown method, mistyped ids, a push with mistyped fields) is a
-- non-fatal protocol_error and otherwise ignored (a push is then neither
-- delivered nor acknowledged). Whole numbers where text is meant are taken
-- as their digits, digit strings where numbers are meant as numbers.
--
-- Pacing: after BindRes grants Speed, poll writes MsgSendReq frames evenly
-- spaced so that no 1-second window holds more than Speed of them (see
-- ksms.oneshot.pacer). Results 903 and 11 put the message back at the head
-- of the queue and pause sending with a growing backoff.
-- @module ksms.oneshot.protocol
-- @alias _M

-- States and transitions: STATES[state] says which events move it where
-- (on), which answer methods it waits for (awaits: one that comes in any
-- other state is a non-fatal protocol_error "unexpected"), whether pushes
-- are acknowledged in it (acks), and whether poll writes MsgSendReq and
-- keepalives (sends) or watches the bind timer (binding). Every change of
-- p.state goes through P:_to(event), which refuses an event the table does
-- not list, so this table is the state machine.
--
--   idle, disconnected --connect--> bind_wait  (--connect_encrypted--> key_wait)
--   key_wait  --PrivateKeyRes 0--> bind_wait      (key_ok)
--   bind_wait --BindRes 0--> bound                (bind_ok)
--   key_wait, bind_wait --refused or unreadable answer--> failed (bind_failed)
--   key_wait, bind_wait, bound --bind_timeout / alive_timeout--> dead (timeout)
--   bound     --close()--> closing --UnBindRes--> closed             (unbound)
--   any state with a connection --bytes that are not frames--> failed (fatal)
--   any state --disconnected()--> disconnected
local CONNECTED = { fatal = "failed", disconnect = "disconnected" }
local function on(t) for k, v in pairs(CONNECTED) do t[k] = t[k] or v end return t end
local STATES = {
  idle         = { on = { connect = "bind_wait", connect_encrypted = "key_wait", disconnect = "disconnected" } },
  disconnected = { on = { connect = "bind_wait", connect_encrypted = "key_wait", disconnect = "disconnected" } },
  key_wait     = { on = on { key_ok = "bind_wait", bind_failed = "failed", timeout = "dead" },
                   awaits = { PrivateKeyRes = true }, binding = true },
  bind_wait    = { on = on { bind_ok = "bound", bind_failed = "failed", timeout = "dead" },
                   awaits = { BindRes = true }, binding = true },
  bound        = { on = on { close = "closing", timeout = "dead" }, acks = true, sends = true },
  closing      = { on = on { unbound = "closed" }, awaits = { UnBindRes = true }, acks = true },
  closed       = { on = on {} },
  failed       = { on = on {} },
  dead         = { on = on {} },
}
local NONE = {}
for _, st in pairs(STATES) do st.awaits = st.awaits or NONE end

local core = require "ksms.core"
local cjson = require "cjson"
local codec = require "ksms.oneshot.codec"
local schema = require "ksms.oneshot.schema"
local codes = require "ksms.oneshot.codes"
local pacer_mod = require "ksms.oneshot.pacer"
local errors = require "ksms.errors"
local message = require "ksms.oneshot.message"

local type, pairs, ipairs, tostring, tonumber, setmetatable, error =
  type, pairs, ipairs, tostring, tonumber, setmetatable, error
local concat, format, floor, min = table.concat, string.format, math.floor, math.min
local aes_encrypt, aes_decrypt = core.aes128cbc_encrypt, core.aes128cbc_decrypt
local b64encode, b64decode, cp949_len = core.b64encode, core.b64decode, core.cp949_len
local build = message.build
local random = core.random -- the OS random source: LuaJIT never seeds math.random

local _M = { _VERSION = "0.2.0" }

local json = cjson.new()
json.decode_max_depth(16)
json.decode_invalid_numbers(false)
local null = cjson.null

_M.kinds = message.kinds -- kind -> MsgType

local OPTIONS = {
  id = "string", password = "string", key = "string", iv = "string", encrypted = "boolean",
  upload_method = "string", keepalive_interval = "number", alive_timeout = "number",
  bind_timeout = "number", queue_limit = "number", pace_margin = "number",
  max_retries = "number", retry_backoff = "number", resend_unanswered = "boolean",
  id_prefix = "string", version = "number", dedup_size = "number", sms_max = "number",
  lms_max = "number", upload_chunk = "number", default_speed = "number", bind_retry = "number",
}
_M.options = OPTIONS -- the drivers check a caller's options against these and theirs

-- Ids and names a server sends that we keep or echo back are at most this
-- long (the document's UserMsgId is at most 20 bytes).
local KEY_MAX = 64

local function fail(category, code, message, extra)
  local e = { category = category, code = code, message = message, provider = "oneshot" }
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return nil, errors.new(e)
end

local function perr(code, message)
  return errors.new { category = "protocol", code = code, message = message, provider = "oneshot" }
end

-- A non-fatal protocol error: reported, otherwise ignored.
local function note(events, err, method, body)
  events[#events + 1] = { type = "protocol_error", fatal = false, err = err, method = method, body = body }
end

-- The server's frames (answers, reports) are a few hundred bytes; a frame
-- or inflated payload past this is refused, so a zlib bomb costs 64 KiB.
local MAX_FRAME = 64 * 1024
-- A Speed past this is taken as this (the pacer keeps a slot per send).
local MAX_SPEED = 10000
local MAX_SAFE = 2 ^ 53

-- A text field of the server's: a string as it is, nothing as "", a whole
-- number as its digits (cjson gives Lua 5.4 floats: 80.0, not "80");
-- anything else (a table, a boolean, a fraction) is mistyped: nil.
local function text_field(v)
  local t = type(v)
  if t == "string" then return v end
  if v == nil or v == null then return "" end
  if t == "number" and v == floor(v) and v > -MAX_SAFE and v < MAX_SAFE then return format("%d", v) end
  return nil
end

-- A whole-number field (Result, MsgType): a number or a string of digits;
-- nil when absent or mistyped.
local function int_field(v)
  local t = type(v)
  if t == "string" then
    if #v > 15 or not v:find("^%-?%d+$") then return nil end
    v = tonumber(v)
  elseif t ~= "number" then
    return nil
  end
  if v ~= floor(v) or v <= -MAX_SAFE or v >= MAX_SAFE then return nil end
  return floor(v)
end

-- Server text quoted in an error message: cut, never a table's address.
local function quote(v)
  if type(v) ~= "string" then return "a " .. type(v) end
  if #v > 40 then return format("'%s...' (%d bytes)", v:sub(1, 40), #v) end
  return "'" .. v .. "'"
end

local P = {}
P.__index = P
_M.states = STATES

-- The one place p.state changes.
function P:_to(event)
  local nxt = STATES[self.state].on[event]
  if not nxt then error("ksms.oneshot.protocol: internal: " .. event .. " in state " .. self.state, 2) end
  self.state = nxt
end

--- The sans-I/O OneShot state machine.
-- @tparam table opts id, password, key, iv, ...
-- @return a protocol object
function _M.new(opts)
  if type(opts) ~= "table" then error("ksms.oneshot.protocol.new: options table expected", 2) end
  for k, v in pairs(opts) do
    local t = OPTIONS[k]
    if not t then error("ksms.oneshot.protocol.new: unknown option '" .. tostring(k) .. "'", 2) end
    if type(v) ~= t then error(format("ksms.oneshot.protocol.new: %s must be a %s", k, t), 2) end
  end
  for _, k in ipairs { "id", "password", "key", "iv" } do
    if not opts[k] then error("ksms.oneshot.protocol.new: '" .. k .. "' is required", 2) end
  end
  if #opts.key < 16 then error("ksms.oneshot.protocol.new: key must be at least 16 bytes", 2) end
  if #opts.iv ~= 16 then error("ksms.oneshot.protocol.new: iv must be 16 bytes", 2) end
  local um = opts.upload_method or "UploadFileReq"
  if um ~= "UploadFileReq" and um ~= "UploadFileDataReq" then
    error("ksms.oneshot.protocol.new: upload_method must be UploadFileReq or UploadFileDataReq", 2)
  end
  local self = setmetatable({
    opts = opts,
    key = opts.key:sub(1, 16), iv = opts.iv, encrypted = opts.encrypted or false,
    upload_method = um,
    keepalive_interval = opts.keepalive_interval or 25,
    alive_timeout = opts.alive_timeout or 10,
    bind_timeout = opts.bind_timeout or 10,
    bind_retry = opts.bind_retry or 30, -- seconds before the next bind after a refused one
    queue_limit = opts.queue_limit or 10000,
    pace_margin = opts.pace_margin or 0.015,
    max_retries = opts.max_retries or 5,
    retry_backoff = opts.retry_backoff or 0.1,
    resend_unanswered = opts.resend_unanswered or false,
    sms_max = opts.sms_max or 90, lms_max = opts.lms_max or 2000,
    limits = message.limits_of(opts), -- ksms.rules.text's limits for message.build
    upload_chunk = opts.upload_chunk or 1536,
    dedup_size = opts.dedup_size or 10000,
    id_prefix = opts.id_prefix or format("%x%04x", os.time() % 0x10000000, random(0, 0xffff)),
    seq = 0,
    state = "idle",
    -- the send queue: a deque of records
    q = {}, qhead = 1, qtail = 0,
    ids = {},          -- key -> rec for every queued or in-flight message
    inflight = {}, n_inflight = 0,
    seen = {}, seen_ring = {}, seen_pos = 1,
    uploads = {}, upload = nil,
  }, P)
  return self
end

-- ---- framing ----

-- Every text that reaches a frame was checked for UTF-8 where it entered
-- (submit, the pushes we echo, the upload's file name), so the writer
-- refusing one here is a bug of ours: raise rather than drop the frame.
local function encoded(s, err)
  if not s then error("ksms.oneshot.protocol: internal: " .. tostring(err), 3) end
  return s
end

local frame, body_json = codec.frame, codec.body_json
local encrypted_in_plain_mode = schema.encrypted_in_plain_mode

function P:_frame(method, body)
  if body ~= nil and (self.encrypt_all or encrypted_in_plain_mode[method]) then
    local plain = encoded(body_json(method, body))
    body = b64encode(aes_encrypt(plain, self.body_key, self.iv))
  end
  local s, err = frame(method, body)
  if not s then encoded(s, err) end
  return s
end

function P:_body(msg)
  local b = msg.Body
  if b == nil or b == null then return {} end
  if type(b) == "table" then return b end
  if type(b) ~= "string" then return nil, perr("bad_body", "Body is neither an object nor a string") end
  local raw, err = b64decode((b:gsub("%s", "")))
  if not raw then return nil, perr("bad_body", "Body is not Base64: " .. tostring(err and err.message)) end
  local key = self.body_key or self.key
  local plain = aes_decrypt(raw, key, self.iv)
  if not plain and key ~= self.key then plain = aes_decrypt(raw, self.key, self.iv) end
  if not plain then return nil, perr("bad_body", "Body does not decrypt with the configured key and IV") end
  local ok, t = pcall(json.decode, plain)
  if not ok or type(t) ~= "table" then return nil, perr("bad_body", "decrypted Body is not a JSON object") end
  return t
end

-- ---- queue ----

function P:_push_back(rec)
  self.qtail = self.qtail + 1
  self.q[self.qtail] = rec
end

function P:_push_front(rec)
  self.qhead = self.qhead - 1
  self.q[self.qhead] = rec
end

function P:_pop()
  local h = self.qhead
  if h > self.qtail then return nil end
  local rec = self.q[h]
  self.q[h] = nil
  self.qhead = h + 1
  return rec
end

--- Messages queued, not yet written.
-- @treturn integer
function P:queued() return self.qtail - self.qhead + 1 end

--- p:hold(flag): while held, queued messages wait (outside the sending
-- window the server grants); keepalives and pushes go on.
function P:hold(flag) self.held = flag and true or false end

--- p:drop_queued(err) -> events: every message not yet written ends now
-- with err as its outcome (the session is closing; nothing was sent).
function P:drop_queued(err)
  local events = {}
  local rec = self:_pop()
  while rec do
    self.ids[rec.key] = nil
    rec.state = "dropped"
    events[#events + 1] = { type = "result", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id,
      ok = false, outcome = err }
    rec = self:_pop()
  end
  return events
end
--- Messages written, not yet answered.
-- @treturn integer
function P:in_flight() return self.n_inflight end

--- p:drop_uploads(err) -> events: every upload not yet started fails now
-- with err (the session is closing, or will not reconnect).
function P:drop_uploads(err)
  local events = {}
  for i = 1, #self.uploads do
    local up = self.uploads[i]
    up.state = "failed"
    events[i] = { type = "upload_failed", handle = up, err = err }
  end
  self.uploads = {}
  return events
end

-- ---- dedup of pushed requests (report, spam, change_phone) ----

function P:_seen(key)
  return self.seen[key]
end

function P:_remember(key)
  local entry = { acked = false }
  local ring, pos = self.seen_ring, self.seen_pos
  local old = ring[pos]
  if old then self.seen[old] = nil end
  ring[pos] = key
  self.seen_pos = pos % self.dedup_size + 1
  self.seen[key] = entry
  return entry
end

-- ---- connection lifecycle ----

--- The socket connected: returns the BindReq bytes to write.
-- @tparam number now
-- @treturn string
function P:connected(now)
  if not STATES[self.state].on.connect then
    errors.misuse("ksms.oneshot.protocol: connected() while " .. self.state)
  end
  self.decoder = codec.decoder { max_frame = MAX_FRAME, max_payload = MAX_FRAME }
  self.encrypt_all = false
  self.body_key = self.key
  self.alive_sent_at = nil
  self.last_tx = now
  self.bind_sent_at = now
  self.pacer = nil
  if self.encrypted then
    self:_to("connect_encrypted")
    return codec.frame("PrivateKeyReq")
  end
  self:_to("connect")
  return self:_bind_req()
end

function P:_bind_req()
  return self:_frame("BindReq", { BindId = self.opts.id, BindPwd = self.opts.password,
    Version = self.opts.version or 1 })
end

--- Starts an orderly close: returns the UnBind bytes to write.
-- @tparam[opt] number now
-- @treturn string
function P:close(now)
  if not STATES[self.state].on.close then return "" end
  self:_to("close")
  if now then self.last_tx = now end
  return self:_frame("UnBindReq", { BindId = self.opts.id })
end

local function lost_error(rec)
  return errors.new {
    category = "unknown", code = "connection_lost", provider = "oneshot", maybe_sent = true,
    message = "the connection closed before the server answered; the message may have been sent",
  }
end

--- The connection is gone: returns the events for what was in flight.
-- @tparam number now
-- @treturn table events
function P:disconnected(now)
  local events = {}
  -- in-flight messages, in the order they were written
  local list = {}
  for _, rec in pairs(self.inflight) do list[#list + 1] = rec end
  table.sort(list, function(a, b) return a.sent_seq < b.sent_seq end)
  self.inflight, self.n_inflight = {}, 0
  if self.resend_unanswered then
    for i = #list, 1, -1 do
      local rec = list[i]
      rec.state = "queued"
      self:_push_front(rec)
    end
    for _, rec in ipairs(list) do
      events[#events + 1] = { type = "requeued", rec = rec, reason = "connection_lost", retry_at = now }
    end
  else
    for _, rec in ipairs(list) do
      self.ids[rec.key] = nil
      rec.state = "lost"
      local err = lost_error(rec)
      events[#events + 1] = { type = "result", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id,
        ok = false, outcome = err }
    end
  end
  if self.cur_upload then
    local up = self.cur_upload
    self.cur_upload = nil
    events[#events + 1] = { type = "upload_failed", handle = up,
      err = errors.new { category = "network", code = "connection_lost", provider = "oneshot",
        message = "the connection closed during the upload" } }
  end
  if self.decoder then self.decoder:close() end
  self.decoder = nil
  self:_to("disconnect")
  self.pacer = nil
  self.alive_sent_at = nil
  return events
end

-- ---- submitting ----

--- p:submit(msg) -> rec | nil, err: msg is built and checked by
-- ksms.oneshot.message (misuse raises at the caller's line), then numbered
-- (when it has no id), refused when its id is queued or in flight or the
-- queue is full, and queued. deadline (optional, in poll's now units): a
-- message still queued then is never written; it ends with an `expired`
-- result event.
function P:submit(msg, deadline)
  local body, kind = build(msg, self.limits)
  if not body then return nil, kind end
  if self.qtail - self.qhead + 1 >= self.queue_limit then
    return fail("rate_limit", "queue_full",
      format("the send queue holds %d messages (queue_limit)", self.queue_limit), { retryable = true })
  end
  local id, sub_id = body.UserMsgId, body.UserMsgSubId
  if not id then
    self.seq = self.seq + 1
    id = self.id_prefix .. "-" .. self.seq
    body.UserMsgId = id
  end
  local key = id .. "\0" .. sub_id
  if self.ids[key] then
    return fail("duplicate", "duplicate_id", "a message with UserMsgId '" .. id .. "' is already queued or in flight")
  end
  -- kind: what the result reports (the session's results read rec.kind).
  local rec = { id = id, sub_id = sub_id, key = key, msg_type = body.MsgType, kind = kind, body = body,
    attempts = 0, state = "queued", to = body.PhoneNo, deadline = deadline }
  self.ids[key] = rec
  self:_push_back(rec)
  return rec
end

-- ---- uploads (MMS images) ----

--- Queues an MMS image upload.
-- @tparam string data the file's bytes
-- @tparam[opt] string ext ".jpg"
function P:upload(data, ext)
  if type(data) ~= "string" then error("ksms.oneshot: upload needs the file's bytes", 2) end
  ext = ext or ".jpg"
  if type(ext) ~= "string" then error("ksms.oneshot: upload extension must be a string", 2) end
  if ext:sub(1, 1) ~= "." then ext = "." .. ext end
  if #data == 0 then return fail("invalid_input", "empty_file", "the file is empty") end
  if #data > 1024 * 1024 then return fail("invalid_input", "file_too_large", "images must total at most 1 MB") end
  local h = { data = data, ext = ext, state = "queued" }
  self.uploads[#self.uploads + 1] = h
  return h
end

function P:_upload_next(out)
  local up = self.cur_upload
  if up.pos <= #up.data then
    local chunk = up.data:sub(up.pos, up.pos + self.upload_chunk - 1)
    up.pos = up.pos + #chunk
    up.step = "data"
    out[#out + 1] = self:_frame(self.upload_method, { Data = b64encode(chunk) })
  else
    up.step = "finish"
    out[#out + 1] = self:_frame("UploadFileFinishReq", { FileName = up.file_name, FileSize = #up.data })
  end
end

-- The answer each upload step waits for.
local UPLOAD_ANSWER = { name = "UploadFileNameRes", data = "UploadFileRes", finish = "UploadFileFinishRes" }
local UPLOAD_METHODS = { UploadFileNameRes = true, UploadFileRes = true, UploadFileFinishRes = true }

function P:_upload_fail(up, err, events)
  self.cur_upload = nil
  up.state = "failed"
  events[#events + 1] = { type = "upload_failed", handle = up, err = err }
end

function P:_upload_res(method, body, berr, events, out)
  local up = self.cur_upload
  if not up then return note(events, perr("unexpected", method .. " without an upload in progress"), method) end
  local want = UPLOAD_ANSWER[up.step]
  if method ~= want then
    -- The server's upload state is not ours: this upload cannot go on.
    return self:_upload_fail(up, perr("out_of_order", method .. " while waiting for " .. want), events)
  end
  if not body then return self:_upload_fail(up, berr, events) end
  local r = int_field(body.Result)
  if not r then
    return self:_upload_fail(up, perr("bad_answer", method .. " has no usable Result: " .. quote(body.Result)), events)
  end
  events[#events + 1] = { type = "upload_step", handle = up, step = up.step, result = r }
  if r ~= 0 then return self:_upload_fail(up, codes.error(codes.send, r), events) end
  if method == "UploadFileNameRes" then
    local name = body.FileName
    if type(name) ~= "string" or name == "" then
      return self:_upload_fail(up, perr("bad_answer", "UploadFileNameRes carries no file name"), events)
    end
    -- echoed in UploadFileFinishReq and MsgSendReq: short, and UTF-8
    if #name > KEY_MAX or not cp949_len(name) then
      return self:_upload_fail(up, perr("bad_answer", format("UploadFileNameRes's file name (%d bytes) is not a short UTF-8 text", #name)), events)
    end
    up.file_name = name
    up.pos = 1
    self:_upload_next(out)
  elseif method == "UploadFileRes" then
    self:_upload_next(out)
  else -- UploadFileFinishRes
    self.cur_upload = nil
    up.state = "done"
    events[#events + 1] = { type = "upload_done", handle = up, file_name = up.file_name }
  end
end

-- ---- receiving ----

local function ok_outcome(r) return { ok = true, code = r } end

--- Feeds bytes read from the socket.
-- @tparam string bytes
-- @tparam number now
-- @return events, bytes to write
function P:receive(bytes, now)
  local events, out = {}, {}
  if not self.decoder then
    error("ksms.oneshot.protocol: receive() without a connection", 2)
  end
  local msgs, err = self.decoder:feed(bytes)
  if msgs then
    for i = 1, #msgs do self:_handle(msgs[i], now, events, out) end
  end
  if err then
    self:_to("fatal")
    err.provider = "oneshot"      -- the core's frame errors say "ksms"
    events[#events + 1] = { type = "protocol_error", fatal = true, err = err }
  end
  local s = concat(out)
  if s ~= "" then self.last_tx = now end
  return events, s
end

function P:_pushed(key, ev, ack_method, ack_body, events, out)
  local seen = self:_seen(key)
  if seen then
    -- a repeat: delivered once; answer it again only if the app already did
    if seen.acked and STATES[self.state].acks then
      out[#out + 1] = self:_frame(ack_method, ack_body)
    end
    return
  end
  self:_remember(key)
  ev._key, ev._ack_method, ev._ack_body = key, ack_method, ack_body
  events[#events + 1] = ev
end

function P:_bind_failed(err, events, code)
  self:_to("bind_failed")
  events[#events + 1] = { type = "bind_failed", code = code, retry_after = code and self.bind_retry or nil, err = err }
end

-- The text fields of a push, checked: name -> text | nil, err. The first
-- `keys` of them make the push's dedup key, which is remembered
-- (dedup_size of them): ids and numbers, short in the document (UserMsgId
-- at most 20 bytes), so longer ones are refused rather than kept.
local REPORT_TEXT = { keys = 3, "ServerMsgId", "UserMsgId", "UserMsgSubId",
  "PhoneNo", "Telecom", "DeliveryTime", "UserData" }
local SPAM_TEXT = { keys = 3, "SpamId", "PhoneNo", "DenyNo" }
local CHANGE_TEXT = { keys = 3, "ServerMsgId", "PhoneNo", "ChangePhoneNo" }
local function push_fields(method, body, names)
  local f = {}
  for i = 1, #names do
    local name = names[i]
    local v = text_field(body[name])
    if not v then return nil, perr("bad_push", method .. ": " .. name .. " is " .. quote(body[name]) .. ", not text") end
    if i <= names.keys and #v > KEY_MAX then
      return nil, perr("bad_push", format("%s: %s is %d bytes, over %d", method, name, #v, KEY_MAX))
    end
    -- the key fields are echoed in the acknowledgement, which must be JSON
    if i <= names.keys and not cp949_len(v) then
      return nil, perr("bad_push", method .. ": " .. name .. " is not valid UTF-8")
    end
    f[name] = v
  end
  return f
end

local function text_or_nil(v) return type(v) == "string" and v or nil end

-- PrivateKeyRes and BindRes, in the state that waits for them: anything
-- unreadable ends the bind now rather than at bind_timeout.
function P:_bind_answer(method, body, berr, now, events, out)
  if not body then
    return self:_bind_failed(perr("bad_bind_answer", method .. ": " .. berr.message), events)
  end
  local r = int_field(body.Result)
  -- A key answer without a Result is taken as 0 (the document shows none).
  if method == "PrivateKeyRes" and body.Result == nil then r = 0 end
  if not r then
    return self:_bind_failed(perr("bad_bind_answer", method .. " has no usable Result: " .. quote(body.Result)), events)
  end
  if r ~= 0 then return self:_bind_failed(codes.error(codes.login, r), events, r) end
  if method == "PrivateKeyRes" then
    local pk = body.PrivateKey
    if type(pk) ~= "string" or #pk < 16 then
      return self:_bind_failed(perr("bad_key", "PrivateKeyRes carries no usable key"), events)
    end
    self.body_key = pk:sub(1, 16)
    self.encrypt_all = true
    self:_to("key_ok")
    self.bind_sent_at = now
    out[#out + 1] = self:_bind_req()
    return
  end
  local speed = body.Speed
  speed = (type(speed) == "string" and int_field(speed)) or (type(speed) == "number" and speed) or nil
  if not speed or speed ~= speed or speed == math.huge or speed < 1 then
    speed = self.opts.default_speed or 1
  end
  self:_to("bind_ok")
  self.speed = min(floor(speed), MAX_SPEED)
  self.pacer = pacer_mod.new(self.speed, { margin = self.pace_margin })
  self.last_tx = self.last_tx or now
  events[#events + 1] = { type = "bound", speed = self.speed, bind_id = text_or_nil(body.BindId),
    begin_time = int_field(body.BeginTime), end_time = int_field(body.EndTime),
    effective_time = int_field(body.EffectiveTime) }
end

function P:_send_res(body, now, events)
  local id, sub = text_field(body.UserMsgId), text_field(body.UserMsgSubId)
  if not id or not sub then
    return note(events, perr("bad_answer", "MsgSendRes with a UserMsgId of " .. quote(body.UserMsgId)
      .. " and a UserMsgSubId of " .. quote(body.UserMsgSubId)), "MsgSendRes", body)
  end
  local key = id .. "\0" .. sub
  local rec = self.inflight[key]
  if not rec then
    return note(events, perr("unknown_message", "MsgSendRes for a message not in flight: " .. quote(id)),
      "MsgSendRes", body)
  end
  self.inflight[key] = nil
  self.n_inflight = self.n_inflight - 1
  local r = int_field(body.Result)
  if (r == 903 or r == 11) and rec.attempts <= self.max_retries then
    local wait = min(self.retry_backoff * 2 ^ (rec.attempts - 1), 30)
    rec.state = "queued"
    self:_push_front(rec)
    if self.pacer then self.pacer:pause(now + wait) end
    events[#events + 1] = { type = "requeued", rec = rec, result = r, retry_at = now + wait }
    return
  end
  self.ids[key] = nil
  rec.state = "done"
  local outcome
  if r == 0 then
    outcome = ok_outcome(0)
  elseif r then
    outcome = codes.error(codes.send, r, { user_msg_id = rec.id, result_message = text_or_nil(body.ResultMessage) })
  else
    -- Answered, but with nothing that says how: it may have been sent.
    outcome = errors.new { category = "protocol", code = "bad_answer", provider = "oneshot", maybe_sent = true,
      user_msg_id = rec.id, message = "the server answered this message without a usable Result ("
        .. quote(body.Result) .. "); it may have been sent" }
  end
  events[#events + 1] = { type = "result", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id,
    result = r, ok = r == 0, outcome = outcome, body = body }
end

function P:_handle(msg, now, events, out)
  local method = msg.Header.Method
  local body, berr = self:_body(msg)
  if method == "PrivateKeyRes" or method == "BindRes" then
    if not STATES[self.state].awaits[method] then
      return note(events, perr("unexpected", method .. " when none is awaited"), method)
    end
    return self:_bind_answer(method, body, berr, now, events, out)
  end
  if UPLOAD_METHODS[method] then return self:_upload_res(method, body, berr, events, out) end
  if not body then return note(events, berr, method) end
  if method == "AliveRes" then
    self.alive_sent_at = nil
    events[#events + 1] = { type = "alive_res" }
  elseif method == "AliveReq" then
    out[#out + 1] = codec.frame("AliveRes")
  elseif method == "MsgSendRes" then
    self:_send_res(body, now, events)
  elseif method == "ReportReq" then
    local f, ferr = push_fields(method, body, REPORT_TEXT)
    local r = int_field(body.Result)
    if f and not r then ferr = perr("bad_push", "ReportReq has no usable Result: " .. quote(body.Result)) end
    if not (f and r) then return note(events, ferr, method, body) end
    local ev = { type = "report", user_msg_id = f.UserMsgId, sub_id = f.UserMsgSubId,
      server_msg_id = f.ServerMsgId, msg_type = int_field(body.MsgType), phone = f.PhoneNo,
      result = r, telecom = f.Telecom, delivery_time = f.DeliveryTime,
      user_data = f.UserData, result_message = text_or_nil(body.ResultMessage),
      ok = r == 0, outcome = r == 0 and ok_outcome(0) or codes.error(codes.send, r), body = body }
    self:_pushed("R\0" .. ev.server_msg_id .. "\0" .. ev.user_msg_id .. "\0" .. ev.sub_id, ev, "ReportRes",
      { UserMsgId = ev.user_msg_id, UserMsgSubId = ev.sub_id, ServerMsgId = ev.server_msg_id, Result = 0 },
      events, out)
  elseif method == "SpamReq" then
    local f, ferr = push_fields(method, body, SPAM_TEXT)
    if not f then return note(events, ferr, method, body) end
    local ev = { type = "spam", spam_id = f.SpamId, phone = f.PhoneNo, deny_no = f.DenyNo, body = body }
    self:_pushed("S\0" .. ev.spam_id .. "\0" .. ev.phone .. "\0" .. ev.deny_no, ev, "SpamRes",
      { SpamId = ev.spam_id, PhoneNo = ev.phone, DenyNo = ev.deny_no, Result = 0 }, events, out)
  elseif method == "ChangePhoneReq" then
    local f, ferr = push_fields(method, body, CHANGE_TEXT)
    if not f then return note(events, ferr, method, body) end
    local ev = { type = "change_phone", server_msg_id = f.ServerMsgId, phone = f.PhoneNo,
      change_phone = f.ChangePhoneNo, body = body }
    self:_pushed("C\0" .. ev.server_msg_id .. "\0" .. ev.phone .. "\0" .. ev.change_phone, ev,
      "ChangePhoneRes", { ServerMsgId = ev.server_msg_id, PhoneNo = ev.phone,
        ChangePhoneNo = ev.change_phone, Result = 0 }, events, out)
  elseif method == "UnBindRes" then
    if not STATES[self.state].awaits[method] then
      return note(events, perr("unexpected", "UnBindRes without an UnBindReq"), method)
    end
    self:_to("unbound")
    events[#events + 1] = { type = "unbound", result = int_field(body.Result) }
  else
    note(events, perr("unexpected_method", "unexpected method " .. quote(method)), method)
  end
end

--- protocol.outcome_of(result_event) -> result | nil, err: the shape a
-- caller's on_result gets, as ksms.client's send returns it.
function _M.outcome_of(ev)
  local o = ev.outcome
  if not o.ok then return nil, o end
  return { ok = true, provider = "oneshot", kind = ev.rec.kind, code = ev.result or 0,
    id = ev.user_msg_id, sub_id = ev.sub_id, raw = ev.body }
end

--- p:ack(event, [now], [result]) -> bytes ("" when there is nothing to write:
-- already acknowledged, or not connected; the server pushes an unanswered
-- request again after a reconnect and it is then answered at once).
function P:ack(ev, now, result)
  if type(ev) ~= "table" or not ev._key then error("ksms.oneshot.protocol: ack needs a report, spam or change_phone event", 2) end
  local seen = self.seen[ev._key]
  if seen then
    if seen.acked then return "" end
    seen.acked = true
  end
  if not STATES[self.state].acks then return "" end
  local body = ev._ack_body
  if result ~= nil then
    body = {}
    for k, v in pairs(ev._ack_body) do body[k] = v end
    body.Result = result
  end
  if now then self.last_tx = now end
  return self:_frame(ev._ack_method, body)
end

-- ---- time ----

local CANCELLED = { category = "cancelled", code = "cancelled", provider = "oneshot", retryable = true,
  maybe_sent = false, message = "not sent: held back just before it was written (on_sending returned false)" }

--- Time passes: returns events and the bytes due now (sends, keepalives).
-- gate(rec) (optional) is asked before each message is framed, after the
-- pacer allowed it: false ends the message as cancelled, never written (a
-- fenced sender checks its lease there; the pacer's slot is left unused);
-- true, t (t: the time the gate's own I/O ended) counts the send from t
-- and ends this poll's sends after it, so its bytes leave at once.
-- @tparam number now
-- @tparam[opt] function gate
-- @return events, bytes to write
function P:poll(now, gate)
  local events, out = {}, {}
  local st = STATES[self.state]
  if st.binding then
    if now - self.bind_sent_at >= self.bind_timeout then
      self:_to("timeout")
      events[#events + 1] = { type = "dead", reason = "bind_timeout" }
    end
    return events, ""
  end
  if not st.sends then return events, "" end
  if self.alive_sent_at and now - self.alive_sent_at >= self.alive_timeout then
    self:_to("timeout")
    events[#events + 1] = { type = "dead", reason = "alive_timeout" }
    return events, ""
  end
  -- an upload in progress goes first; it is not paced
  if not self.cur_upload and #self.uploads > 0 then
    local up = table.remove(self.uploads, 1)
    self.cur_upload = up
    up.state = "active"
    up.step = "name"
    out[#out + 1] = self:_frame("UploadFileNameReq", { FileExtension = up.ext })
  end
  local pacer = self.pacer
  while not self.held and self.qhead <= self.qtail do
    local head = self.q[self.qhead]
    if head.deadline and now >= head.deadline then
      -- Past its expires_at and never written: it ends here, not sent.
      local rec = self:_pop()
      self.ids[rec.key] = nil
      rec.state = "dropped"
      events[#events + 1] = { type = "result", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id, ok = false,
        outcome = errors.new { category = "expired", code = "expired", provider = "oneshot", retryable = false,
          maybe_sent = false, message = "not sent: the message's expires_at passed while it was queued" } }
    elseif not pacer:take(now) then
      break
    else
    local pass, after = true, nil
    if gate then pass, after = gate(head) end
    if not pass then
      local rec = self:_pop()
      self.ids[rec.key] = nil
      rec.state = "dropped"
      events[#events + 1] = { type = "result", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id, ok = false,
        outcome = errors.new(CANCELLED) }
    else
    local rec = self:_pop()
    rec.attempts = rec.attempts + 1
    rec.state = "sent"
    self.seq = self.seq + 1
    rec.sent_seq = self.seq
    rec.sent_at = now
    self.inflight[rec.key] = rec
    self.n_inflight = self.n_inflight + 1
    out[#out + 1] = self:_frame("MsgSendReq", rec.body)
    events[#events + 1] = { type = "sent", rec = rec, user_msg_id = rec.id, sub_id = rec.sub_id,
      attempt = rec.attempts }
    if type(after) == "number" then
      -- The gate did I/O (a durable sending mark) and says when it ended:
      -- the frame leaves after it, so the pacer counts it from then, and
      -- it leaves alone, right away. Frames batched behind slow gates
      -- would otherwise leave together, later than the pacer counted
      -- them, and a 1-second window at the server could hold more than
      -- Speed.
      pacer:restamp(after)
      break
    end
    end
    end
  end
  if #out == 0 and not self.alive_sent_at and now - self.last_tx >= self.keepalive_interval then
    self.alive_sent_at = now
    out[#out + 1] = codec.frame("AliveReq")
  end
  local s = concat(out)
  if s ~= "" then self.last_tx = now end
  return events, s
end

--- When poll next has something to do, nil for never.
-- @treturn ?number
function P:next_deadline()
  local st = STATES[self.state]
  if st.binding then return self.bind_sent_at + self.bind_timeout end
  if not st.sends then return nil end
  local d
  if self.alive_sent_at then d = self.alive_sent_at + self.alive_timeout
  else d = self.last_tx + self.keepalive_interval end
  if not self.held and self.qhead <= self.qtail then
    local t = self.pacer:next_time()
    if t < d then d = t end
  end
  if not self.cur_upload and #self.uploads > 0 then d = -math.huge end
  if d == -math.huge then d = 0 end
  return d
end

return _M
