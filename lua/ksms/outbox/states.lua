--- ksms.outbox.states: the states of an outbox record and the one table of
-- the transitions allowed between them. Every store (memory, SQLite, the
-- Redis store to come) checks its updates through allowed(), so a record
-- never takes a path this table does not name.
--
--   queued       stored, not yet handed to a transport (claimed or not: a
--                claim is an owner on a queued record, not a state)
--   sending      handed to the transport by a live worker; its fate is
--                known only when the outcome comes back
--   sent         accepted by the provider (provider_id, code)
--   failed       refused, nothing sent (or dropped by the operator)
--   maybe_sent   may have reached the provider: a transport failure after
--                the request left, or a worker that died while sending.
--                ksms never resends it by itself (ob:resolve decides)
--   expired      not handed to a transport before expires_at: never sent
--   delivered    the provider reported delivery to the handset
--   undelivered  the provider reported that delivery failed
-- @module ksms.outbox.states
-- @alias _M

local type, pairs = type, pairs

local _M = { _VERSION = "0.2.0" }

-- In the order tools list them.
_M.names = { "queued", "sending", "sent", "failed", "maybe_sent", "expired", "delivered", "undelivered" }

-- from -> { to = why }. A record may also be updated without changing its
-- state (from == to: a claim, a released claim, a drop of a failed record).
_M.transitions = {
  queued = {
    sending = "the worker hands it to the transport",
    expired = "expires_at passed before it was handed over",
    failed = "refused before sending, or dropped",
    sent = "a client that sends without on_sending (its outcome is still the truth)",
    maybe_sent = "a client that sends without on_sending failed after the request left",
  },
  sending = {
    sent = "the provider accepted it",
    failed = "the provider refused it: nothing sent",
    maybe_sent = "the outcome is unknown, or its worker died",
    expired = "the transport saw expires_at pass before writing it (OneShot)",
    queued = "cancelled before it was written: not sent",
  },
  maybe_sent = {
    sent = "resolve(key, 'sent'), or a reconcile that found it",
    queued = "resolve(key, 'resend')",
    failed = "resolve(key, 'drop')",
    delivered = "a delivery report settles it",
    undelivered = "a delivery report settles it",
  },
  failed = {
    queued = "resolve(key, 'resend')",
  },
  expired = {
    queued = "resolve(key, 'resend')",
    failed = "resolve(key, 'drop')",
    sent = "a OneShot frame written before its expiry was seen",
  },
  sent = {
    delivered = "a delivery report",
    undelivered = "a delivery report",
  },
  delivered = {},
  undelivered = {},
}

local known = {}
for _, name in pairs(_M.names) do known[name] = true end

--- Whether name is a state.
-- @tparam string name
-- @treturn boolean
function _M.is_state(name)
  return type(name) == "string" and known[name] == true
end

--- Whether a record in state `from` may go to state `to` (the same state
-- counts: an update of fields).
-- @tparam string from
-- @tparam string to
-- @treturn boolean
function _M.allowed(from, to)
  if from == to then return known[from] == true end
  local t = _M.transitions[from]
  return t ~= nil and t[to] ~= nil
end

--- The states a worker holds a record in (an owner is kept only there).
-- @tparam string name
-- @treturn boolean
function _M.is_active(name)
  return name == "queued" or name == "sending"
end

return _M
