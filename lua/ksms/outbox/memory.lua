--- ksms.outbox.memory: the outbox store in a Lua table, for tests and
-- short-lived scripts. Nothing survives the process. It keeps the store
-- contract of ksms.outbox.store exactly (the same copies, the same
-- compare-and-set, the same transitions), so every outbox spec runs on it
-- and on SQLite alike.
-- @module ksms.outbox.memory
-- @alias _M

local store = require "ksms.outbox.store"
local states = require "ksms.outbox.states"

local pairs, ipairs, setmetatable = pairs, ipairs, setmetatable
local os_time = os.time

local _M = { _VERSION = "0.2.0" }

local Store = {}
Store.__index = Store

local COLUMNS = { "key", "client", "state", "owner", "message", "created_at", "updated_at",
  "expires_at", "provider_id", "code", "error", "attempts", "seq" }

-- A fresh record from a stored row: the message and error decoded.
local function record_of(row)
  local r = {}
  for _, k in ipairs(COLUMNS) do r[k] = row[k] end
  local msg, why = store.decode_message(row.message)
  r.message, r.message_error = msg, why
  r.error = store.decode_error(row.error)
  return r
end

local function closed()
  return nil, store.error("closed", "the outbox store is closed")
end

--- Opens an empty memory store.
-- @param _ (no path)
-- @tparam table options now
-- @return a store
function _M.open(_, options)
  return setmetatable({
    rows = {},        -- seq -> row
    by_key = {},      -- key -> row
    seq = 0,
    low = 1,          -- no unowned queued row below this seq
    meta = { schema = "1", application = "ksms.outbox" },
    now = options.now or os_time,
  }, Store)
end

--- See ksms.outbox.store.
function Store:insert(rows)
  if self.closed then return closed() end
  local out, now = {}, self.now()
  for i, r in ipairs(rows) do
    local existing = self.by_key[r.key]
    if existing then
      out[i] = record_of(existing)
      out[i].duplicate = true
    else
      self.seq = self.seq + 1
      local row = { key = r.key, client = r.client, state = "queued", message = r.message,
        created_at = now, updated_at = now, expires_at = r.expires_at, attempts = 0, seq = self.seq }
      self.rows[self.seq] = row
      self.by_key[r.key] = row
      out[i] = record_of(row)
      out[i].duplicate = false
    end
  end
  return out
end

--- See ksms.outbox.store.
function Store:get(key)
  if self.closed then return closed() end
  local row = self.by_key[key]
  return row and record_of(row) or nil
end

local function requeued(self, row)
  if row.state == "queued" and row.owner == nil and row.seq < self.low then self.low = row.seq end
end

--- See ksms.outbox.store.
function Store:update(key, from, to, fields, opts)
  if self.closed then return closed() end
  local set = store.check_update(from, to)
  store.check_fields(fields)
  store.refuse_fence(opts)
  local row = self.by_key[key]
  if not row or not set[row.state] then return false end
  if opts and opts.owner ~= nil and row.owner ~= opts.owner then return false end
  for k, v in pairs(fields or {}) do
    if v == false then row[k] = nil
    elseif k == "error" then row.error = store.encode_error(v)
    else row[k] = v end
  end
  row.state = to
  row.updated_at = self.now()
  if not states.is_active(to) then row.owner = nil end
  requeued(self, row)
  return true
end

--- See ksms.outbox.store.
function Store:iterate(q)
  if self.closed then return closed end -- an iterator whose first call says why
  q = q or {}
  local seq, left = q.since or 0, q.limit
  return function()
    if left and left <= 0 then return nil end
    while seq < self.seq do
      seq = seq + 1
      local row = self.rows[seq]
      if row and (q.state == nil or row.state == q.state) and (q.client == nil or row.client == q.client) then
        if left then left = left - 1 end
        return record_of(row)
      end
    end
    return nil
  end
end

--- See ksms.outbox.store.
function Store:counts()
  if self.closed then return closed() end
  local n = {}
  for _, s in ipairs(states.names) do n[s] = 0 end
  for _, row in pairs(self.rows) do n[row.state] = n[row.state] + 1 end
  return n
end

--- See ksms.outbox.store.
function Store:meta_get(name)
  if self.closed then return closed() end
  return self.meta[name]
end

--- See ksms.outbox.store.
function Store:meta_set(name, value)
  if self.closed then return closed() end
  self.meta[name] = value
  return true
end

--- See ksms.outbox.store.
function Store:find_ref(client, provider_id)
  if self.closed then return closed() end
  for _, row in pairs(self.rows) do
    if row.client == client and row.provider_id == provider_id then return record_of(row) end
  end
  return nil
end

--- See ksms.outbox.store.
function Store:claim(client, owner, limit, now)
  if self.closed then return closed() end
  local got, expired, first = {}, 0, nil
  local seq = self.low
  while seq <= self.seq and #got + expired < limit do
    local row = self.rows[seq]
    if row and row.state == "queued" and row.owner == nil then
      if not first then first = seq end
      if row.client == client then
        if row.expires_at and row.expires_at <= now then
          row.state, row.code, row.error, row.updated_at = "expired", "expired", store.EXPIRED_ERROR, now
          expired = expired + 1
        else
          row.owner, row.updated_at = owner, now
          got[#got + 1] = record_of(row)
        end
      end
    end
    seq = seq + 1
  end
  -- Below the first unowned queued row seen, every row is owned or final.
  if first then self.low = first elseif seq > self.seq then self.low = self.seq + 1 end
  return got, expired
end

--- See ksms.outbox.store.
function Store:release(owner)
  if self.closed then return closed() end
  local n = 0
  for _, row in pairs(self.rows) do
    if row.owner == owner and row.state == "queued" then
      row.owner = nil
      n = n + 1
      requeued(self, row)
    end
  end
  return n
end

--- See ksms.outbox.store.
function Store:owners()
  if self.closed then return closed() end
  local seen, out = {}, {}
  for _, row in pairs(self.rows) do
    if row.owner and not seen[row.owner] then seen[row.owner] = true; out[#out + 1] = row.owner end
  end
  table.sort(out)
  return out
end

--- See ksms.outbox.store.
function Store:recover(owner)
  if self.closed then return closed() end
  local r = { maybe_sent = 0, released = 0 }
  local now = self.now()
  for _, row in pairs(self.rows) do
    if row.owner == owner then
      if row.state == "sending" then
        row.state, row.owner, row.updated_at = "maybe_sent", nil, now
        row.code, row.error = store.RECOVERED_CODE, store.RECOVERED_ERROR
        r.maybe_sent = r.maybe_sent + 1
      elseif row.state == "queued" then
        row.owner = nil
        r.released = r.released + 1
        requeued(self, row)
      end
    end
  end
  return r
end

--- Closes the store: every call after returns nil, err (code "closed"),
-- as the SQLite store's do. The records go with the object.
function Store:close()
  self.closed = true
  return true
end

return _M
