--- ksms.oneshot.client: ksms.client("oneshot", options) — the OneShot session
-- behind the same send / send_many shape as the HTTP providers. The session
-- connects and binds on first use; options are the session's (see
-- ksms.oneshot.session), and the client's own: ad = { name, opt_out } and
-- now (the clock of the ad night rule) for messages with ad = true
-- (ksms.rules.ad, docs/ads.md).
-- @module ksms.oneshot.client
-- @alias _M

local session = require "ksms.oneshot.session"
local protocol = require "ksms.oneshot.protocol"
local message = require "ksms.oneshot.message"
local ad_message = require "ksms.message" -- the ad fields and their checks, shared with the HTTP providers
local errors = require "ksms.errors"

local type, ipairs, pairs, setmetatable, error = type, ipairs, pairs, setmetatable, error
local misuse = errors.misuse

local build = message.build

local _M = { _VERSION = "0.2.0" }

local Client = {}
Client.__index = Client

-- What the client can do, in the keys the HTTP adapters use (see
-- ksms.client): reports are pushed over the session (reports = "push":
-- on_report, `ksms listen`), never asked for by id.
_M.capabilities = {
  sms = true, lms = true, mms = true, alimtalk = true, friendtalk = true, rcs = true,
  reservation = false, balance = false, report = false, sender_numbers = false,
  register_sender = false, history = false, image = "file",
  reports = "push", pushed_reports = true,
  session = true, -- a bound TCP session: MsgSendReq frames, not HTTP requests
  max_recipients_per_request = 1, -- one MsgSendReq per recipient
}

-- The defaults: ksms.oneshot.message's (sms_max, lms_max), and at most 3
-- images, 1 MB in all. A client's own limits follow its sms_max and
-- lms_max options.
local function limits_of(options)
  local limits = message.limits_of(options)
  limits.images, limits.images_bytes = 3, 1024 * 1024
  return limits
end
_M.limits = limits_of(nil)

-- The options ksms.client("oneshot", ...) takes, with their types: the
-- session's own and the protocol's (the CLI reads them from here), and
-- require_tls, which ksms.client answers (OneShot has no TLS).
_M.options = { require_tls = "boolean",
  ad = "table", -- { name, opt_out, night }: advertising messages (ad = true), docs/ads.md
  now = "function", -- epoch seconds: the clock of the ad night rule (default os.time)
}
for _, schema in ipairs { session.options, protocol.options } do
  for k, v in pairs(schema) do _M.options[k] = v end
end

-- The options without which no session binds.
_M.required = { "host", "port", "id", "password", "key", "iv" }

--- `ksms.client("oneshot", options)`: a session behind the HTTP providers' send/send_many shape.
-- @tparam table options the session's (host, port, id, password, key, iv, ...)
-- @return a client
function _M.new(options)
  if type(options) ~= "table" then misuse("ksms.client(\"oneshot\"): options table expected") end
  local ad, now = options.ad, options.now
  if ad ~= nil or now ~= nil then
    -- The client's own options; the session refuses what it does not know.
    if now ~= nil and type(now) ~= "function" then misuse("ksms.client(\"oneshot\"): now must be a function") end
    local rest = {}
    for k, v in pairs(options) do if k ~= "ad" and k ~= "now" then rest[k] = v end end
    options = rest
  end
  local s = session.new(options)
  return setmetatable({ provider = "oneshot", session = s,
    ctx = { now = now or os.time, ad = ad_message.check_ad_option(ad, "ksms.client(\"oneshot\")") },
    capabilities = _M.capabilities, limits = limits_of(options) }, Client)
end

--- An advertising message as the protocol takes it (or msg as it is when
-- it is no ad); the CLI's dry run uses it as send does.
-- @tparam table ctx { now = function, ad = the client's ad option }
-- @tparam table msg
-- @return the message to submit, or nil, err (code ad_rules or ad_night)
function _M.ad_message(ctx, msg)
  return Client._ad({ ctx = ctx }, msg)
end

-- An ad (msg.ad = true) as the protocol takes it: the text composed by
-- ksms.rules.ad, the night rule applied by the client's now (OneShot has
-- no reservations: night = "hold" is refused), KakaoAdFlag "Y" for
-- FriendTalk, and the ad fields left out. Any other message as it is.
function Client:_ad(msg)
  if type(msg) ~= "table" then return msg end
  local is_ad = false
  for k in pairs(ad_message.ad_fields) do if msg[k] ~= nil then is_ad = true; break end end
  if not is_ad then return msg end
  local kind = msg.kind or "auto"
  local text, err = ad_message.ad_text(msg, self.ctx, kind)
  if not text then err.provider = "oneshot"; return nil, err end
  if msg.ad == true then
    local _, nerr = ad_message.ad_night(msg, self.ctx, nil, false)
    if nerr then nerr.provider = "oneshot"; return nil, nerr end
  end
  local m = {}
  for k, v in pairs(msg) do if not ad_message.ad_fields[k] then m[k] = v end end
  m.text = text
  if msg.ad == true then
    local subject, serr = ad_message.ad_subject(msg)
    if serr then serr.provider = "oneshot"; return nil, serr end
    m.subject = subject
  end
  if msg.ad == true and kind == "friendtalk" then
    local kakao = {}
    for k, v in pairs(type(msg.kakao) == "table" and msg.kakao or {}) do kakao[k] = v end
    kakao.ad_flag = "Y"
    m.kakao = kakao
  end
  return m
end

function Client:_ready()
  if self.session.bound then return true end
  return self.session:connect()
end

-- Every outcome the client returns names the provider, stamped here: the
-- protocol passes on what the shared rules refuse, which know no provider.
local function stamped(res, err)
  if res then res.provider = "oneshot" end
  if err then err.provider = "oneshot" end
  return res, err
end

local function copy_with(msg, to, kind)
  local m = {}
  for k, v in pairs(msg) do m[k] = v end
  m.to = to
  if kind then m.kind = m.kind or kind end
  return m
end

-- Raises (at the caller's line) for the first message in list that is
-- misuse, before any of them is queued: otherwise misuse in message k
-- would leave 1..k-1 queued with their outcomes unread. The checks are
-- the protocol's own (ksms.oneshot.message builds what submit sends).
function Client:_check(list)
  local limits = self.limits
  for _, msg in ipairs(list) do build(msg, limits) end
end

-- Submits every message (one per recipient) and waits for all outcomes.
-- The list was checked (_check) and the session is ready. hooks (optional):
-- on_sending(i) just before message i's frame is built and written (false
-- holds it back: its outcome is category "cancelled"), on_outcome(i, out)
-- as soon as its outcome is known. The first raise of either is raised once every
-- message has its outcome (or the wait ends).
function Client:_run(list, timeout, hooks)
  local outcomes, pending = {}, 0
  local session = self.session
  local on_sending, on_outcome = hooks and hooks.on_sending, hooks and hooks.on_outcome
  local failure
  local function guarded(fn, ...)
    if failure then return end
    local ok, e = pcall(fn, ...)
    if not ok then failure = e end
  end
  for i, msg in ipairs(list) do
    local function on_result(r, e)
      outcomes[i] = stamped(r, e) or e
      pending = pending - 1
      if on_outcome then guarded(on_outcome, i, outcomes[i]) end
    end
    -- false from on_sending holds the message back (cancelled, not written)
    local sending = on_sending and function(rec)
      if rec.attempts > 0 then return not failure end -- a requeued one: asked once, at its first attempt
      if failure then return false end
      local ok, verdict = pcall(on_sending, i)
      if not ok then failure = verdict return false end
      return verdict
    end
    local ok, err = session:submit(msg, on_result, sending)
    if ok then
      pending = pending + 1
    else
      stamped(nil, err)
      outcomes[i] = err
      if on_outcome then guarded(on_outcome, i, outcomes[i]) end
    end
  end
  if pending > 0 then self.session:flush(timeout or 120) end
  for i = 1, #list do
    -- Still queued or in flight: the session may yet send it, so a caller
    -- must not resend it blindly.
    if not outcomes[i] then
      outcomes[i] = select(2, stamped(nil, errors.new { category = "unknown", code = "no_outcome", maybe_sent = true,
        message = "no outcome in time; it may still be sent, and its outcome arrives through the session's poll" }))
      if on_outcome then guarded(on_outcome, i, outcomes[i]) end
    end
  end
  if failure then error(failure, 0) end
  return outcomes
end

--- client:send{ to (one number or a list), from, text, subject, kind, ... }
function Client:send(msg)
  if type(msg) ~= "table" then misuse("ksms: send needs a message table") end
  if msg.at ~= nil then misuse("ksms: OneShot has no reservations (client.capabilities.reservation)") end
  local aerr
  msg, aerr = self:_ad(msg)
  if not msg then return nil, aerr end
  local list
  if type(msg.to) == "table" then
    list = {}
    for i, to in ipairs(msg.to) do list[i] = copy_with(msg, to) end
    self:_check(list)
  end
  local ok, err = self:_ready()
  if not ok then return stamped(nil, err) end
  if not list then
    return stamped(self.session:send(msg))
  end
  local outs = self:_run(list)
  local failed = {}
  for i, o in ipairs(outs) do if not o.ok then failed[#failed + 1] = i end end
  if #failed == 0 then
    return { ok = true, provider = "oneshot", kind = outs[1].kind, code = 0, recipients = #outs, parts = outs }
  end
  local first = outs[failed[1]]
  return nil, errors.new { category = first.category, code = first.code, provider = "oneshot",
    maybe_sent = first.maybe_sent, partial = #failed < #outs, parts = outs,
    message = ("%d of %d recipients failed: %s"):format(#failed, #outs, first.message) }
end

local SEND_MANY_OPTIONS = { timeout = "number", concurrency = "number", on_sending = "function", on_outcome = "function" }

--- client:send_many(messages [, { timeout, on_sending, on_outcome }]) -> { outcome, ... } in order.
-- Misuse in any message raises before any is queued (as ksms.client).
-- on_sending(i) is called just before message i's frame is written and
-- on_outcome(i, outcome) as soon as its outcome is known, as for the HTTP
-- clients (on_sending returning false holds message i back: "cancelled"),
-- and concurrency is accepted for the same shape but the session's pacing
-- (the granted Speed) decides.
-- msg.expires_at is honoured in the session's queue.
function Client:send_many(messages, opts)
  if type(messages) ~= "table" then misuse("ksms: send_many needs a list of messages") end
  if opts ~= nil then
    if type(opts) ~= "table" then misuse("ksms: send_many options must be a table") end
    errors.check_options("ksms: send_many", opts, SEND_MANY_OPTIONS)
    for _, name in ipairs { "on_sending", "on_outcome" } do
      if opts[name] ~= nil and type(opts[name]) ~= "function" then
        misuse("ksms: send_many's " .. name .. " must be a function")
      end
    end
  end
  for i, msg in ipairs(messages) do
    if type(msg) ~= "table" then misuse(("ksms: send_many: message %d is not a table"):format(i)) end
    if msg.at ~= nil then misuse("ksms: OneShot has no reservations (client.capabilities.reservation)") end
  end
  -- Ads composed (and refused) first; a refused one keeps its place.
  local refused, list, where = nil, {}, {}
  for i, msg in ipairs(messages) do
    local m, e = self:_ad(msg)
    if m then list[#list + 1] = m; where[#list] = i
    else refused = refused or {}; refused[i] = e end
  end
  if refused then return self:_send_many_some(messages, list, where, refused, opts) end
  messages = list
  self:_check(messages)
  local ok, err = self:_ready()
  if not ok then
    local outs = {}
    stamped(nil, err)
    for i = 1, #messages do outs[i] = err end
    if opts and opts.on_outcome then for i = 1, #messages do opts.on_outcome(i, err) end end
    return outs
  end
  return self:_run(messages, opts and opts.timeout, opts)
end

-- send_many where some messages were refused by the ad rules: the others
-- go through send_many, their hooks and outcomes mapped back to the
-- caller's indexes; the refused ones get their error (and on_outcome).
function Client:_send_many_some(messages, list, where, refused, opts)
  local on_sending, on_outcome = opts and opts.on_sending, opts and opts.on_outcome
  local sub = {}
  for k, v in pairs(opts or {}) do sub[k] = v end
  if on_sending then sub.on_sending = function(k) return on_sending(where[k]) end end
  if on_outcome then sub.on_outcome = function(k, out) return on_outcome(where[k], out) end end
  local outs = {}
  for i, e in pairs(refused) do
    outs[i] = e
    if on_outcome then on_outcome(i, e) end
  end
  if #list > 0 then
    local got = self:send_many(list, sub)
    for k, o in ipairs(got) do outs[where[k]] = o end
  end
  return outs
end

--- client:check(msg) -> true, { kind, bytes, text } | nil, err: the checks send makes (misuse raises),
-- sending nothing; text is as it would be sent (an ad composed, ksms.rules.ad).
function Client:check(msg)
  if type(msg) ~= "table" then misuse("ksms: check needs a message table") end
  if msg.at ~= nil then misuse("ksms: OneShot has no reservations (client.capabilities.reservation)") end
  local aerr
  msg, aerr = self:_ad(msg)
  if not msg then return nil, aerr end
  local list = { msg }
  if type(msg.to) == "table" then
    list = {}
    for i, to in ipairs(msg.to) do list[i] = copy_with(msg, to) end
  end
  local kind
  for _, m in ipairs(list) do
    local body, e = build(m, self.limits)
    if not body then return stamped(nil, e) end
    kind = e
  end
  return true, { kind = kind, bytes = require("ksms.core").cp949_len(msg.text), text = msg.text }
end

-- AlimTalk / FriendTalk in the HTTP providers' fields, mapped onto the
-- protocol's kakao table (msg.kakao, given as well, is merged: sender_key,
-- template_code, button, ... see ksms.oneshot.protocol):
--   alimtalk{ to, from, template, text, sender_key, button, ... }
--     template -> kakao.template_code; OneShot sends the whole text, so
--     'text' is the template filled in ('variables' raises).
--   friendtalk{ to, from, channel, text, button, image_link, ... }
--     channel -> kakao.sender_key (the channel's sender profile key).
--   button is the KakaoButton JSON as the provider documents it (a string).
local function kakao_msg(msg, kind, map)
  if type(msg) ~= "table" then misuse("ksms: " .. kind .. " needs a message table") end
  if msg.kakao ~= nil and type(msg.kakao) ~= "table" then misuse("ksms: 'kakao' must be a table") end
  if msg.variables ~= nil then
    misuse("ksms: OneShot " .. kind .. " sends the whole text: give 'text' (the template filled in), not 'variables'")
  end
  if msg.fallback ~= nil then misuse("ksms: OneShot has no SMS fallback for " .. kind .. " ('fallback')") end
  if msg.image ~= nil then misuse("ksms: OneShot " .. kind .. " takes no 'image' URL; give kakao fields instead") end
  local m, kakao = {}, {}
  for k, v in pairs(msg.kakao or {}) do kakao[k] = v end
  for k, v in pairs(msg) do
    local field = map[k]
    if field then
      if field == "button" and type(v) ~= "string" then
        misuse("ksms: OneShot 'button' is the KakaoButton JSON (a string)")
      end
      if kakao[field] ~= nil and kakao[field] ~= v then
        misuse(("ksms: '%s' and kakao.%s disagree; give one"):format(k, field))
      end
      kakao[field] = v
    elseif k ~= "kakao" then
      m[k] = v
    end
  end
  m.kind = m.kind or kind
  m.kakao = kakao
  return m
end

local ALIMTALK = { template = "template_code", sender_key = "sender_key", button = "button" }
local FRIENDTALK = { channel = "sender_key", sender_key = "sender_key", button = "button", image_link = "image_link" }

--- Sends an AlimTalk message over OneShot.
-- @tparam table msg template, variables, to, from, ...
-- @return a result, or nil, err
function Client:alimtalk(msg)
  return self:send(kakao_msg(msg, "alimtalk", ALIMTALK))
end

--- Sends a FriendTalk message over OneShot.
-- @tparam table msg channel (or sender_key), text, to, from, ...
-- @return a result, or nil, err
function Client:friendtalk(msg)
  if type(msg) == "table" and msg.channel ~= nil and msg.sender_key ~= nil then
    misuse("ksms: friendtalk takes 'channel' (its sender key) or 'sender_key', not both")
  end
  return self:send(kakao_msg(msg, "friendtalk", FRIENDTALK))
end

--- client:add_report_handler(fn) -> remove(): fn(report_event) is called
-- for every pushed report, after the session's own on_report (the
-- ksms.oneshot.protocol report event: user_msg_id, result, ok, ...). A
-- report is acknowledged once every handler has returned; one that raises
-- leaves it unacknowledged, so the server pushes it again after a
-- reconnect. The outbox uses it to record delivery (ksms.outbox.track).
-- @tparam function fn
-- @treturn function remove (idempotent)
function Client:add_report_handler(fn)
  if type(fn) ~= "function" then misuse("ksms: add_report_handler needs a function") end
  local handlers = self.report_handlers
  if not handlers then
    handlers = {}
    self.report_handlers = handlers
    -- The driver reads opts.on_report at each report, so chaining here
    -- reaches reports pushed from now on. A copy: the caller's options
    -- table may make other clients.
    local opts = {}
    for k, v in pairs(self.session.opts) do opts[k] = v end
    self.session.opts = opts
    local own = opts.on_report
    opts.on_report = function(ev)
      if own then own(ev) end
      local list = {}
      for i = 1, #handlers do list[i] = handlers[i] end -- a handler may remove itself
      for i = 1, #list do list[i](ev) end
    end
  end
  handlers[#handlers + 1] = fn
  return function()
    for i = #handlers, 1, -1 do
      if handlers[i] == fn then table.remove(handlers, i); return end
    end
  end
end

--- Unbinds and closes the session; queued messages end as not sent.
function Client:close() self.session:close() end
Client.__close = Client.close

function Client:__tostring() return "ksms.client(oneshot, " .. tostring(self.session) .. ")" end

return _M
