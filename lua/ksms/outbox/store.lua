--- ksms.outbox.store: the contract every outbox store keeps, the dispatch
-- from a store spec to its module, and the record codec the stores share.
--
-- store.open(spec, { now = fn, busy_timeout, synchronous, namespace }) -> store | nil, err
--   spec "memory" (ksms.outbox.memory), "sqlite:/path" (ksms.outbox.sqlite)
--   or "redis://HOST:PORT/DB" (ksms.outbox.redis, under options.namespace);
--   a table with the methods below is used as it is (a store of your own).
--
-- A record is a table: key, client, state, message (the message table, or
-- nil with message_error when the stored text does not decode), created_at,
-- updated_at, expires_at, provider_id, code, error (a table: category, code,
-- message, provider, retryable, maybe_sent), attempts, owner, seq. Every
-- call returns fresh tables: changing one never changes the store.
--
-- The methods (runtime failures return nil, err with category "store";
-- misuse raises):
--
--   store:insert(rows) -> { record, ... } | nil, err
--       rows: { key, client, message (JSON text), expires_at }, ... stored as
--       state "queued" in ONE transaction (all or none). For a key already
--       stored (or earlier in rows) the existing record comes back with
--       duplicate = true and nothing is written for it.
--   store:get(key) -> record | nil (no such key) | nil, err (the store failed)
--   store:update(key, from_states, to_state, fields [, { owner = id }]) -> true | false | nil, err
--       compare-and-set: true when the record was in one of from_states (a
--       state or a list; and owned by opts.owner when given) and is now in
--       to_state with fields set (provider_id, code, error, attempts,
--       expires_at, owner; false clears a field). Leaving queued/sending
--       clears the owner. A transition states.allowed refuses raises.
--       opts.fence = { key, value } (the Redis store only; others raise):
--       done only while the Redis key `key` holds `value`, in the same
--       atomic step; otherwise false, "fenced" (ksms.oneshot.fleet's lock).
--   store:iterate{ state, client, since, limit } -> iterator of records
--       in seq order, seq > since, fetched a page at a time (flat memory).
--       A store failure ends the iteration: that call returns nil, err.
--   store:counts() -> { state = n } (every state, 0 included)
--   store:meta_get(name) -> string | nil | nil, err;  store:meta_set(name, value) -> true | nil, err
--   store:find_ref(client, provider_id) -> record | nil | nil, err (by the provider's id)
--   store:claim(client, owner, limit, now) -> records, expired_count | nil, err
--       one transaction over the window of the client's limit oldest
--       unowned queued records: those past expires_at (<= now) become
--       expired (counted), the others get owner and come back, still
--       queued. So fewer than limit may come back while more are queued;
--       the worker checks expires_at again before each send.
--   store:release(owner) -> n: owner's queued records lose their owner.
--   store:owners() -> { owner, ... }: owners of queued/sending records.
--   store:recover(owner) -> { maybe_sent = n, released = n } | nil, err:
--       owner's sending records become maybe_sent, its queued ones unowned.
--   store:close()
--   Optional, for a store that recovers workers of any machine (Redis):
--   store:renew(owner, ttl) -> true | nil, err: owner's lease lives ttl s more.
--   store:is_dead(owner) -> true (its lease lapsed) | false | nil (no lease).
-- @module ksms.outbox.store
-- @alias _M

local errors = require "ksms.errors"
local states = require "ksms.outbox.states"
local cjson = require "cjson"

local type, pcall, setmetatable, tostring, pairs, ipairs = type, pcall, setmetatable, tostring, pairs, ipairs
local sub, find = string.sub, string.find
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

-- Messages are stored as JSON text written by lua-cjson, not by the core's
-- writer (csrc/json.c): that one writes the OneShot bodies in a key order a
-- compiled schema fixes, while a message here is any table a client takes.
-- A private cjson instance: the caller's settings never change ours.
local json = cjson.new()
json.decode_max_depth(32)
json.encode_max_depth(32)
json.decode_invalid_numbers(false)
json.encode_invalid_numbers(false)
json.encode_number_precision(14) -- the most lua-cjson 2.1.0 takes: epochs keep every digit

--- A store error: code names it ("busy", "full", "not_an_outbox", ...).
-- @tparam string code
-- @tparam string message
-- @tparam[opt] boolean retryable
-- @return an error object
function _M.error(code, message, retryable)
  return errors.new { category = "store", code = code, message = message, retryable = retryable }
end

--- The message as stored: JSON text. Raises (misuse) for what JSON cannot
-- hold (a function, a sparse list).
-- @tparam table msg
-- @treturn string
function _M.encode_message(msg)
  local ok, text = pcall(json.encode, msg)
  if not ok then misuse("ksms.outbox: the message cannot be stored as JSON: " .. tostring(text)) end
  return text
end

--- The message decoded from its stored text, or nil, why (runtime input:
-- never raises).
-- @tparam string text
-- @return table or nil, string
function _M.decode_message(text)
  if type(text) ~= "string" then return nil, "no message text" end
  local ok, msg = pcall(json.decode, text)
  if not ok then return nil, "stored message is not JSON: " .. errors.bound(tostring(msg), 200) end
  if type(msg) ~= "table" then return nil, "stored message is not an object" end
  return msg
end

local ERROR_FIELDS = { "category", "code", "message", "provider", "retryable", "maybe_sent" }

--- An outcome's error as stored (JSON text of its plain fields), or nil.
-- @param err an error object or nil
-- @return string or nil
function _M.encode_error(err)
  if type(err) ~= "table" then return nil end
  local t = {}
  for _, k in ipairs(ERROR_FIELDS) do
    local v = err[k]
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" then t[k] = v end
  end
  local ok, text = pcall(json.encode, t)
  return ok and text or nil
end

--- The stored error text as an error object (the errors' metatable, so
-- tostring and err:is work), or nil. Never raises.
-- @param text
-- @return table or nil
function _M.decode_error(text)
  if type(text) ~= "string" then return nil end
  local ok, t = pcall(json.decode, text)
  if not ok or type(t) ~= "table" then return nil end
  local out = {}
  for _, k in ipairs(ERROR_FIELDS) do
    local v = t[k]
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" then out[k] = v end
  end
  if type(out.category) ~= "string" then out.category = "unknown" end
  if type(out.message) ~= "string" then out.message = out.category end
  return setmetatable(out, errors.mt)
end

--- Raises (misuse) for a fenced update on a store without fences (memory,
-- SQLite): ignoring the fence would drop the guarantee its caller asked for.
-- @param opts update's options
function _M.refuse_fence(opts)
  if opts and opts.fence ~= nil then misuse("ksms.outbox: a fenced update needs the Redis store") end
end

--- from_states as a set, checked: every name a state, and to_state
-- reachable from at least one of them (else misuse: a worker or a resolve
-- asked for a path the table does not have).
-- @param from a state or a list of states
-- @tparam string to
-- @treturn table set
function _M.check_update(from, to)
  if not states.is_state(to) then misuse("ksms.outbox: unknown state '" .. tostring(to) .. "'") end
  if type(from) == "string" then from = { from } end
  if type(from) ~= "table" or #from == 0 then misuse("ksms.outbox: update needs the states it may come from") end
  local set, any = {}, false
  for _, s in ipairs(from) do
    if not states.is_state(s) then misuse("ksms.outbox: unknown state '" .. tostring(s) .. "'") end
    if states.allowed(s, to) then set[s] = true; any = true end
  end
  if not any then misuse("ksms.outbox: no transition to " .. to .. " from " .. table.concat(from, ", ")) end
  return set
end

-- What recover() records on a record its dead worker left in sending.
_M.RECOVERED_CODE = "worker_died"
_M.RECOVERED_ERROR = json.encode {
  category = "unknown", code = "worker_died", provider = "ksms", retryable = false, maybe_sent = true,
  message = "the worker died while sending it: the provider may have it; ksms will not resend it",
}

-- What claim() and the worker record on a record past its expires_at.
_M.EXPIRED_ERROR = json.encode {
  category = "expired", code = "expired", provider = "ksms", retryable = false, maybe_sent = false,
  message = "not handed to a transport before its expires_at: not sent",
}

-- The fields update() may set, with their types.
_M.update_fields = {
  provider_id = "string", code = "string|number", error = "table", attempts = "number",
  expires_at = "number", owner = "string",
}

--- Checks update()'s fields (misuse raises for an unknown field or type).
-- @tparam table fields
function _M.check_fields(fields)
  if fields == nil then return end
  if type(fields) ~= "table" then misuse("ksms.outbox: update fields must be a table") end
  for k, v in pairs(fields) do
    local want = _M.update_fields[k]
    if not want then misuse("ksms.outbox: update cannot set '" .. tostring(k) .. "'") end
    if v ~= false and not find(want, type(v), 1, true) then
      misuse("ksms.outbox: update field " .. k .. " must be a " .. want)
    end
  end
end

local MODULES = { memory = "ksms.outbox.memory", sqlite = "ksms.outbox.sqlite", redis = "ksms.outbox.redis" }
_M.modules = MODULES

--- store.open(spec, options) -> store | nil, err (see above).
-- @param spec "memory", "sqlite:/path", "redis://HOST:PORT/DB", or a store object
-- @tparam table options now, the SQLite store's busy_timeout and synchronous,
-- the Redis store's namespace
function _M.open(spec, options)
  if type(spec) == "table" then return spec end
  if type(spec) ~= "string" then misuse("ksms.outbox: store must be \"memory\", \"sqlite:/path\", \"redis://HOST:PORT/DB\" or a store object") end
  local kind, rest = spec, nil
  local colon = find(spec, ":", 1, true)
  if colon then kind, rest = sub(spec, 1, colon - 1), sub(spec, colon + 1) end
  local modname = MODULES[kind]
  if not modname then misuse("ksms.outbox: unknown store '" .. spec .. "' (memory, sqlite:/path, redis://HOST:PORT/DB)") end
  return require(modname).open(rest, options or {})
end

return _M
