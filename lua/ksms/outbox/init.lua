--- ksms.outbox: a durable outbox. Every message has one key, one record
-- and one outcome, across crashes and restarts.
--
--   local outbox = require "ksms.outbox"
--   local ob = assert(outbox.open{ store = "sqlite:/var/lib/app/outbox.db",
--                                  clients = { senders = client } })
--   local rec = assert(ob:enqueue(msg, { key = "order-42" }))   -- stored before it returns
--   ob:run{ until_idle = true }      -- the worker: claims, sends, records each outcome
--   ob:status("order-42").state      -- "sent", "failed", "maybe_sent", ...
--
-- The states and their transitions are in ksms.outbox.states, the store
-- contract in ksms.outbox.store, the worker in ksms.outbox.worker, the
-- guarantees in docs/outbox.md. Misuse raises at the caller's line; a
-- store that fails returns nil, err (category "store"; a Redis server that
-- cannot be reached: category "server", code "unavailable").
-- @module ksms.outbox
-- @alias _M

local errors = require "ksms.errors"
local store_mod = require "ksms.outbox.store"
local states = require "ksms.outbox.states"
local core = require "ksms.core"

local type, pairs, ipairs, setmetatable, tostring, pcall = type, pairs, ipairs, setmetatable, tostring, pcall
local format, find = string.format, string.find
local misuse, check_options = errors.misuse, errors.check_options
local os_time = os.time

local _M = { _VERSION = "0.2.0", states = states, KEY_MAX = 256 }

local Outbox = {}
Outbox.__index = Outbox
_M.Outbox = Outbox

local OPEN_OPTIONS = { store = "string|table", clients = "table", now = "function",
  busy_timeout = "number", synchronous = "string", recover = "boolean", namespace = "string",
  lease_ttl = "number", socket = "string", keep_connection = "boolean" }
local ENQUEUE_OPTIONS = { key = "string", client = "string", expires_at = "number" }

local function check_clients(what, clients)
  if clients == nil then return {} end
  if type(clients) ~= "table" then misuse(what .. ": clients must be a table { name = client, ... }") end
  for name, c in pairs(clients) do
    if type(name) ~= "string" or find(name, "\0", 1, true) then misuse(what .. ": client names must be strings") end
    if type(c) ~= "table" or type(c.send_many) ~= "function" then
      misuse(what .. ": clients." .. name .. " is not a ksms client (no send_many)")
    end
  end
  return clients
end

-- "<pid>@<hostname>:<random>": which process holds a claim, so another
-- process on the same host can tell a dead worker (ksms.outbox.worker).
local function owner_id()
  return format("%d@%s:%08x%08x", core.getpid(), core.hostname(), core.random(0, 0x7fffffff), core.random(0, 0x7fffffff))
end
_M.owner_id = owner_id

--- ksms.outbox.open{ store, clients, now, busy_timeout, synchronous, namespace, lease_ttl } -> ob | nil, err
-- store: "sqlite:/path" (the default embedded store), "memory", or a store
-- object (ksms.outbox.store's contract). clients: { name = client, ... },
-- the clients enqueue checks messages with and run sends through (run
-- may add more). now: epoch seconds (default os.time). busy_timeout and
-- synchronous: the SQLite store's (ksms.outbox.sqlite); namespace: the
-- Redis store's key prefix, socket its client's ("core", "luasocket",
-- "cosocket"; default: cosocket inside nginx; over cosockets each store
-- call has its own connection unless keep_connection = true, for an outbox
-- used by one long-lived timer only); lease_ttl: seconds a worker's lease lives
-- without renewal, on a store with leases (default 30). Records a dead
-- worker left behind are recovered here (recover = false skips that).
-- @tparam table opts
-- @return an Outbox, or nil, err
function _M.open(opts)
  if type(opts) ~= "table" then misuse("ksms.outbox.open needs a table { store = ..., clients = ... }") end
  check_options("ksms.outbox.open", opts, OPEN_OPTIONS)
  if opts.store == nil then misuse("ksms.outbox.open: store is required (\"sqlite:/path\" or \"memory\")") end
  local clients = check_clients("ksms.outbox.open", opts.clients)
  local now = opts.now or os_time
  local st, err = store_mod.open(opts.store, { now = now, busy_timeout = opts.busy_timeout,
    synchronous = opts.synchronous, namespace = opts.namespace, socket = opts.socket,
    keep_connection = opts.keep_connection })
  if not st then return nil, err end
  if opts.lease_ttl ~= nil and not (opts.lease_ttl > 0) then misuse("ksms.outbox.open: lease_ttl must be seconds > 0") end
  local self = setmetatable({ store = st, clients = clients, now = now, owner = owner_id(),
    lease_ttl = opts.lease_ttl }, Outbox)
  if opts.recover ~= false then
    local ok, rerr = require("ksms.outbox.worker").recover(self)
    if not ok then st:close(); return nil, rerr end
  end
  return self
end

-- The one client a message goes through: the named one, or the only one.
local function client_of(self, name, what)
  if name ~= nil then
    local c = self.clients[name]
    if not c then misuse(format("%s: no client named '%s' (give it to ksms.outbox.open's clients)", what, name)) end
    return name, c
  end
  local only, count = nil, 0
  for n in pairs(self.clients) do only, count = n, count + 1 end
  if count ~= 1 then
    misuse(what .. ": opts.client names the client (open got " .. count .. " clients)")
  end
  return only, self.clients[only]
end

local function new_key()
  return format("ob-%08x%08x%08x", core.random(0, 0x7fffffff), core.random(0, 0x7fffffff), core.random(0, 0x7fffffff))
end

-- One message checked and made a row to insert, or nil, err (refused).
local function row_of(self, msg, opts, what)
  if type(msg) ~= "table" then misuse(what .. " needs a message table") end
  if opts ~= nil and type(opts) ~= "table" then misuse(what .. ": options must be a table") end
  opts = opts or {}
  check_options(what, opts, ENQUEUE_OPTIONS)
  local key = opts.key
  if key == nil then key = new_key()
  elseif type(key) ~= "string" or key == "" or #key > _M.KEY_MAX or find(key, "\0", 1, true) then
    misuse(format("%s: key must be a non-empty string of at most %d bytes without NUL", what, _M.KEY_MAX))
  end
  -- The message's own expires_at (the field every client takes) counts too.
  local exp = opts.expires_at
  if exp == nil then exp = msg.expires_at
  elseif msg.expires_at ~= nil and msg.expires_at ~= exp then
    misuse(what .. ": the message's expires_at and the option's differ")
  end
  if exp ~= nil and (type(exp) ~= "number" or exp ~= exp) then misuse(what .. ": expires_at must be epoch seconds") end
  local name, client = client_of(self, opts.client, what)
  if type(client.check) ~= "function" then
    misuse(what .. ": clients." .. name .. " has no check(msg): this ksms client cannot be used with the outbox")
  end
  local ok, err = client:check(msg)
  if not ok then return nil, err end
  return { key = key, client = name, message = store_mod.encode_message(msg), expires_at = exp }
end

--- ob:enqueue(msg, { key, client, expires_at }) -> record | nil, err
-- Checks msg exactly as client:send would (refused: nil, err, nothing
-- stored; misuse raises), then stores it durably as queued before it
-- returns. key (the caller's idempotency key, generated when absent): a
-- key already stored returns that record with duplicate = true and
-- stores nothing. client: the name of one of open's clients (omit it when
-- there is one). expires_at: epoch seconds after which it is never sent.
-- @tparam table msg
-- @tparam[opt] table opts
-- @return the record (key, state, duplicate, ...), or nil, err
function Outbox:enqueue(msg, opts)
  local row, err = row_of(self, msg, opts, "ksms.outbox: enqueue")
  if not row then return nil, err end
  local out, serr = self.store:insert({ row })
  if not out then return nil, serr end
  return out[1]
end

--- ob:enqueue_many(list, opts) -> { record or err, ... } | nil, err
-- list holds messages, or { msg, opts } pairs (opts as enqueue's; the
-- shared opts give client and expires_at to entries without their own).
-- Every accepted message is stored in ONE transaction: when the store
-- fails, nothing is stored and nil, err comes back. A message its client
-- refuses gets its error in the list; the others are stored.
-- @tparam table list
-- @tparam[opt] table opts
-- @return a list, or nil, err
function Outbox:enqueue_many(list, opts)
  if type(list) ~= "table" then misuse("ksms.outbox: enqueue_many needs a list") end
  if opts ~= nil and type(opts) ~= "table" then misuse("ksms.outbox: enqueue_many: options must be a table") end
  if opts and opts.key ~= nil then misuse("ksms.outbox: enqueue_many: key goes with each message, not in the shared options") end
  local out, rows, where = {}, {}, {}
  for i, entry in ipairs(list) do
    if type(entry) ~= "table" then misuse("ksms.outbox: enqueue_many: entry " .. i .. " is not a table") end
    local msg, eopts = entry, opts
    if type(entry[1]) == "table" and entry.to == nil then
      msg = entry[1]
      eopts = entry[2]
      if opts then
        local merged = {}
        for k, v in pairs(opts) do merged[k] = v end
        for k, v in pairs(eopts or {}) do merged[k] = v end
        eopts = merged
      end
    end
    local row, err = row_of(self, msg, eopts, "ksms.outbox: enqueue_many")
    if row then
      rows[#rows + 1] = row
      where[#rows] = i
    else
      out[i] = err
    end
  end
  if #rows > 0 then
    local recs, err = self.store:insert(rows)
    if not recs then return nil, err end
    for k, rec in ipairs(recs) do out[where[k]] = rec end
  end
  return out
end

--- ob:status(key) -> record | nil | nil, err
-- @tparam string key
-- @return the record, or nil when no record has that key (nil, err when
-- the store failed)
function Outbox:status(key)
  if type(key) ~= "string" then misuse("ksms.outbox: status needs a key (a string)") end
  return self.store:get(key)
end

--- ob:list{ state, client, since, limit } -> iterator over records
-- In the order they were stored (seq), after seq `since`, at most limit;
-- read from the store a page at a time, so memory stays flat. Resume a
-- listing with since = the last record's seq. A store failure ends the
-- loop (the iterator's call returns nil, err).
-- @tparam[opt] table q
-- @return an iterator
function Outbox:list(q)
  if q ~= nil and type(q) ~= "table" then misuse("ksms.outbox: list takes a table { state, client, since, limit }") end
  q = q or {}
  check_options("ksms.outbox: list", q, { state = "string", client = "string", since = "number", limit = "number" })
  if q.state ~= nil and not states.is_state(q.state) then
    misuse("ksms.outbox: list: unknown state '" .. tostring(q.state) .. "' (" .. table.concat(states.names, ", ") .. ")")
  end
  if q.since ~= nil and type(q.since) ~= "number" then misuse("ksms.outbox: list: since must be a seq number") end
  if q.limit ~= nil and (type(q.limit) ~= "number" or q.limit < 0) then misuse("ksms.outbox: list: limit must be a number >= 0") end
  return self.store:iterate{ state = q.state, client = q.client, since = q.since, limit = q.limit }
end

--- ob:counts() -> { state = n, ... } (every state, 0 included) | nil, err
function Outbox:counts()
  return self.store:counts()
end

-- resolve's actions: the states a record may be in, where it goes, how.
local RESOLVE = {
  resend = { from = { "maybe_sent", "failed", "expired" }, to = "queued" },
  sent = { from = { "maybe_sent" }, to = "sent" },
  drop = { from = { "maybe_sent", "failed", "expired", "queued" }, to = "failed" },
}

--- ob:resolve(key, action) -> record | nil, err: the operator's decision
-- on a record ksms will not settle by itself.
-- "resend": maybe_sent, failed or expired -> queued (attempts + 1; an
-- expires_at already past is lifted; the worker sends it again); "sent": maybe_sent -> sent
-- (you know the provider has it); "drop": maybe_sent, failed, expired or
-- queued (unclaimed) -> failed with code "dropped". A record in another
-- state: nil, err (category "invalid_input", code "wrong_state").
-- @tparam string key
-- @tparam string action "resend", "sent" or "drop"
-- @return the record after, or nil, err
function Outbox:resolve(key, action)
  if type(key) ~= "string" then misuse("ksms.outbox: resolve needs a key (a string)") end
  local how = RESOLVE[action]
  if not how then misuse("ksms.outbox: resolve: action must be \"resend\", \"sent\" or \"drop\"") end
  local rec = self.store:get(key)
  if not rec then
    return nil, errors.new { category = "invalid_input", code = "not_found", message = "no record with key " .. key }
  end
  local fields = {}
  if action == "resend" then
    fields = { attempts = (rec.attempts or 0) + 1, error = false, code = false }
    if rec.expires_at and rec.expires_at <= self.now() then fields.expires_at = false end
  elseif action == "drop" then
    fields = { code = "dropped" }
  end
  local allowed = false
  for _, s in ipairs(how.from) do if s == rec.state then allowed = true end end
  -- A queued record is dropped only while no worker holds it; one claimed
  -- after this check finds it failed when it would send it, and skips it.
  if rec.state == "queued" and rec.owner then allowed = false end
  local ok, err = false, nil
  if allowed then
    ok, err = self.store:update(key, { rec.state }, how.to, fields)
    if ok == nil then return nil, err end
  end
  if not ok then
    local now = self.store:get(key) or rec
    return nil, errors.new { category = "invalid_input", code = "wrong_state",
      message = format("record %s is %s%s: resolve %s takes %s", key, now.state, now.owner and " (held by a worker)" or "",
        action, table.concat(how.from, ", ")) }
  end
  return self.store:get(key)
end

--- ob:run{ clients, concurrency, until_idle, deadline, batch, poll_interval } -> summary | nil, err
-- The worker (ksms.outbox.worker): sends queued records, records each
-- outcome. Plain Lua processes only (SQLite blocks: not inside nginx).
-- @tparam[opt] table opts
-- @return { sent, failed, maybe_sent, expired }, or nil, err
function Outbox:run(opts)
  return require("ksms.outbox.worker").run(self, opts)
end

--- ob:stop(): asks a running worker to return: it hands nothing more to
-- the transport, lets what is in flight finish and returns its summary.
function Outbox:stop()
  self.stopping = true
end

--- ob:close(): closes the store. Idempotent.
function Outbox:close()
  if self.store then self.store:close() end
end

-- Delivery tracking (ob:track, ob:reconcile) lives in ksms.outbox.track
-- when it is installed.
local has_track, track = pcall(require, "ksms.outbox.track")
if has_track then
  if type(track) == "table" and type(track.attach) == "function" then track.attach(Outbox) end
elseif not find(tostring(track), "module 'ksms.outbox.track' not found", 1, true) then
  error(track, 0) -- it is there and broken: say so
end

return _M
