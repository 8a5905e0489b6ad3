-- ksms.oneshot.client: ksms.client("oneshot", options) — the OneShot session
-- behind the same send / send_many shape as the HTTP providers. The session
-- connects and binds on first use; options are the session's (see
-- ksms.oneshot.session).

local session = require "ksms.oneshot.session"
local errors = require "ksms.errors"

local type, ipairs, pairs, setmetatable, error = type, ipairs, pairs, setmetatable, error
local misuse, guard = errors.misuse, errors.guard

local _M = { _VERSION = "0.1.0" }

local Client = {}
Client.__index = Client

_M.capabilities = {
  sms = true, lms = true, mms = true, alimtalk = true, friendtalk = true, rcs = true,
  -- report: reports are pushed (pushed_reports, on_report); no report(id) call.
  reservation = false, balance = false, report = false, sender_numbers = false,
  register_sender = false, history = false, pushed_reports = true,
}

function _M.new(options)
  if type(options) ~= "table" then misuse("ksms.client(\"oneshot\"): options table expected") end
  return setmetatable({ provider = "oneshot", session = session.new(options),
    capabilities = _M.capabilities }, Client)
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

-- Submits every message (one per recipient) and waits for all outcomes.
function Client:_run(list, timeout)
  local outcomes, pending = {}, 0
  local session = self.session
  for i, msg in ipairs(list) do
    local function on_result(r, e) outcomes[i] = r or e; pending = pending - 1 end
    -- guard: the protocol's checks raise at a fixed level inside ksms.
    local ok, err = guard(function() return session:submit(msg, on_result) end)
    if ok then pending = pending + 1 else outcomes[i] = err end
  end
  if pending > 0 then self.session:flush(timeout or 120) end
  for i = 1, #list do
    -- Still queued or in flight: the session may yet send it, so a caller
    -- must not resend it blindly.
    outcomes[i] = stamped(outcomes[i] or errors.new { category = "unknown", code = "no_outcome", maybe_sent = true,
      message = "no outcome in time; it may still be sent, and its outcome arrives through the session's poll" })
  end
  return outcomes
end

-- client:send{ to (one number or a list), from, text, subject, kind, ... }
function Client:send(msg)
  if type(msg) ~= "table" then misuse("ksms: send needs a message table") end
  if msg.at ~= nil then misuse("ksms: OneShot has no reservations (client.capabilities.reservation)") end
  local ok, err = self:_ready()
  if not ok then return stamped(nil, err) end
  if type(msg.to) ~= "table" then
    local session = self.session
    return stamped(guard(function() return session:send(msg) end))
  end
  local list = {}
  for i, to in ipairs(msg.to) do list[i] = copy_with(msg, to) end
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

-- client:send_many(messages [, { timeout }]) -> { outcome, ... } in order
function Client:send_many(messages, opts)
  if type(messages) ~= "table" then misuse("ksms: send_many needs a list of messages") end
  local ok, err = self:_ready()
  if not ok then
    local outs = {}
    stamped(nil, err)
    for i = 1, #messages do outs[i] = err end
    return outs
  end
  return self:_run(messages, opts and opts.timeout)
end

-- AlimTalk / FriendTalk: send with the kind set; msg.kakao carries
-- sender_key, template_code, ... (see ksms.oneshot.protocol).
function Client:alimtalk(msg)
  if type(msg) ~= "table" then misuse("ksms: alimtalk needs a message table") end
  return self:send(copy_with(msg, msg.to, "alimtalk"))
end

function Client:friendtalk(msg)
  if type(msg) ~= "table" then misuse("ksms: friendtalk needs a message table") end
  return self:send(copy_with(msg, msg.to, "friendtalk"))
end

function Client:close() self.session:close() end
Client.__close = Client.close

function Client:__tostring() return "ksms.client(oneshot, " .. tostring(self.session) .. ")" end

return _M
