--- ksms.outbox.sqlite: the outbox store in one SQLite file, through LuaDBI
-- (Debian's lua-dbi-sqlite3). For one machine: several processes may share
-- the file (WAL mode, busy_timeout), but worker recovery tells a dead
-- worker by its pid, which only means something on the host that ran it.
--
-- Every value goes through a bound parameter of a prepared statement; the
-- SQL texts are constants of this file (a variable list of "?" is the only
-- thing ever assembled). The one exception is the PRAGMA values, which
-- SQLite does not let us bind: they come from a fixed table (synchronous)
-- or an integer checked in open (busy_timeout).
--
-- LuaDBI quirks this file works around (measured with LuaDBI 0.7):
-- * a statement whose execute failed fails its NEXT execute with the same
--   error (LuaDBI calls sqlite3_reset first and reports its stale code):
--   a failed statement is finalized and prepared again;
-- * integers are read back through a 32-bit int: every number lives in a
--   REAL column (or one without a type), seq is read as CAST(seq AS REAL);
-- * text is read back up to its first NUL: the message is JSON text (no raw
--   NUL) and keys with a NUL are refused by ksms.outbox.
--
-- Durability: synchronous = "normal" (the default) with WAL: a commit is
-- in the operating system's hands when enqueue returns, so it survives the
-- process (kill -9, a crash) but the last commits may be lost if the
-- machine loses power. "full" syncs the log at every commit: it survives
-- power loss too, at the cost of one fsync per enqueue call (and per
-- state change of the worker).
-- @module ksms.outbox.sqlite
-- @alias _M

local store = require "ksms.outbox.store"
local states = require "ksms.outbox.states"
local misuse = require("ksms.errors").misuse

local type, pairs, ipairs, pcall, tostring, error = type, pairs, ipairs, pcall, tostring, error
local setmetatable, floor, concat = setmetatable, math.floor, table.concat
local byte, sub, find, lower, format, rep = string.byte, string.sub, string.find, string.lower, string.format, string.rep
local io_open, os_time = io.open, os.time

local _M = { _VERSION = "0.2.0", SCHEMA = "1", APPLICATION = "ksms.outbox" }

local Store = {}
Store.__index = Store

local SYNCHRONOUS = { normal = "PRAGMA synchronous = NORMAL", full = "PRAGMA synchronous = FULL" }
local PAGE = 256 -- rows per page of iterate

local SCHEMA = {
  [[CREATE TABLE IF NOT EXISTS ksms_outbox_meta (name TEXT PRIMARY KEY, value TEXT)]],
  -- Numbers in REAL columns (or untyped: code is a string or a number):
  -- LuaDBI reads INTEGER values through a 32-bit int.
  [[CREATE TABLE IF NOT EXISTS ksms_outbox (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    client TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT,
    message TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL,
    provider_id TEXT,
    code,
    error TEXT,
    attempts REAL NOT NULL DEFAULT 0
  )]],
  -- The queue: queued records only (a partial index), so a record leaving
  -- queued is one index entry deleted and its later changes touch none.
  -- 'queued' is written here and in WINDOW (not bound): SQLite uses a
  -- partial index only for a query whose own text implies its WHERE.
  [[CREATE INDEX IF NOT EXISTS ksms_outbox_queued ON ksms_outbox (client, seq) WHERE state = 'queued']],
  [[CREATE INDEX IF NOT EXISTS ksms_outbox_state ON ksms_outbox (state, seq)]],
  [[CREATE INDEX IF NOT EXISTS ksms_outbox_owner ON ksms_outbox (owner) WHERE owner IS NOT NULL]],
  [[CREATE INDEX IF NOT EXISTS ksms_outbox_ref ON ksms_outbox (provider_id) WHERE provider_id IS NOT NULL]],
}

local COLS = "CAST(seq AS REAL) AS seq, key, client, state, owner, message, created_at, updated_at, "
  .. "expires_at, provider_id, code, error, attempts"

-- An error from SQLite's message: the code says what a caller can do.
local function sql_error(msg, what)
  msg = tostring(msg)
  local l = lower(msg)
  local code, retry = "io", false
  if find(l, "locked", 1, true) or find(l, "busy", 1, true) then code, retry = "busy", true
  elseif find(l, "full", 1, true) then code, retry = "full", true
  elseif find(l, "readonly", 1, true) or find(l, "read-only", 1, true) then code = "read_only"
  elseif find(l, "malformed", 1, true) or find(l, "not a database", 1, true) then code = "corrupt"
  elseif find(l, "unable to open", 1, true) then code = "open_failed" end
  return store.error(code, (what and (what .. ": ") or "") .. msg, retry)
end

-- Integral numbers as integers (Lua 5.3+): REAL columns give 5.0 for 5.
local function num(v)
  if type(v) == "number" and v == floor(v) and v > -9007199254740992 and v < 9007199254740992 then
    return floor(v)
  end
  return v
end

local function record_of(row)
  local msg, why = store.decode_message(row.message)
  return {
    seq = num(row.seq), key = row.key, client = row.client, state = row.state, owner = row.owner,
    message = msg, message_error = why, created_at = num(row.created_at), updated_at = num(row.updated_at),
    expires_at = num(row.expires_at), provider_id = row.provider_id, code = num(row.code),
    error = store.decode_error(row.error), attempts = num(row.attempts) or 0,
  }
end

-- ---- statements ----

local function forget(self, sql)
  local st = self.st[sql]
  if st then pcall(st.close, st) end
  self.st[sql] = nil
end

-- Executes sql (prepared once, cached) with the values bound: the
-- statement, or nil, err.
local function exec(self, sql, ...)
  if not self.db then return nil, store.error("closed", "the outbox store is closed") end
  local st = self.st[sql]
  if not st then
    local err
    st, err = self.db:prepare(sql)
    if not st then return nil, sql_error(err) end
    self.st[sql] = st
  end
  local ok, err = st:execute(...)
  if not ok then
    forget(self, sql) -- its next execute would report this failure again
    return nil, sql_error(err)
  end
  return st
end

-- Every row of a query, named, read to the end (a statement left mid-way
-- would hold its read transaction open).
local function all(self, sql, ...)
  local st, err = exec(self, sql, ...)
  if not st then return nil, err end
  local out = {}
  local ok, ferr = pcall(function()
    for r in st:rows(true) do out[#out + 1] = r end
  end)
  if not ok then
    forget(self, sql)
    return nil, sql_error(ferr)
  end
  return out
end

local function affected(self, sql, ...)
  local st, err = exec(self, sql, ...)
  if not st then return nil, err end
  return st:affected()
end

-- fn(self, ...) inside BEGIN IMMEDIATE ... COMMIT: its results, or nil,
-- err with everything rolled back. A raise inside rolls back and goes on.
local function tx(self, fn, ...)
  local ok, err = exec(self, "BEGIN IMMEDIATE")
  if not ok then return nil, err end
  local pok, a, b = pcall(fn, self, ...)
  if not pok or a == nil then
    exec(self, "ROLLBACK") -- fails when SQLite rolled back itself (a full disk): nothing to undo
    if not pok then error(a, 0) end
    return nil, b
  end
  local cok, cerr = exec(self, "COMMIT")
  if not cok then
    exec(self, "ROLLBACK")
    return nil, cerr
  end
  return a, b
end

-- ---- open ----

-- The size of a file, or nil when there is none.
local function file_size(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

-- What the first 100 bytes say: nil when it may be an SQLite file (or is
-- empty: a new one), else an error. A file shorter than its header's page
-- count was cut, but only when that count is valid (its version-valid-for
-- number equals the change counter) and no write-ahead log holds pages
-- still to be copied in: a checkpoint killed midway writes page 1 (the
-- new count) before the pages that make the file that long, and SQLite
-- finishes it from the log.
local function check_header(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local head = f:read(100)
  local size = f:seek("end")
  f:close()
  if head == nil or #head == 0 then return nil end
  if #head < 100 or sub(head, 1, 16) ~= "SQLite format 3\0" then
    return store.error("not_an_outbox", path .. " is not an SQLite database, so not a ksms outbox")
  end
  local b1, b2 = byte(head, 17, 18)
  local page = b1 * 256 + b2
  if page == 1 then page = 65536 end
  local function u32(at)
    local c1, c2, c3, c4 = byte(head, at, at + 3)
    return ((c1 * 256 + c2) * 256 + c3) * 256 + c4
  end
  local pages = u32(29)
  local counted = u32(93) == u32(25)
  local wal = file_size(path .. "-wal")
  if page < 512 or counted and (wal == nil or wal == 0) and pages > 0 and size and size < page * pages then
    return store.error("corrupt", format("%s is damaged: %d bytes where its header says %d pages of %d",
      path, size or 0, pages, page))
  end
  return nil
end

local function create(self, now)
  for _, sql in ipairs(SCHEMA) do
    local ok, err = exec(self, sql)
    if not ok then return nil, err end
  end
  local meta = "INSERT OR IGNORE INTO ksms_outbox_meta (name, value) VALUES (?, ?)"
  local ok, err = exec(self, meta, "application", _M.APPLICATION)
  if ok then ok, err = exec(self, meta, "schema", _M.SCHEMA) end
  if ok then ok, err = exec(self, meta, "created_at", tostring(now)) end
  if not ok then return nil, err end
  return true
end

-- What the file holds, read before anything is written (a foreign
-- database is left exactly as it was): "new" (no table yet), "outbox", or
-- nil, err naming what it is instead.
local function inspect(self, path)
  local tables, err = all(self, "SELECT name FROM sqlite_master WHERE type = ?", "table")
  if not tables then
    err.message = path .. " cannot be read as an outbox: " .. err.message
    if err.code == "corrupt" then err.code = "not_an_outbox" end
    return nil, err
  end
  if #tables == 0 then return "new" end
  local names = {}
  for _, t in ipairs(tables) do names[t.name] = true end
  if not names.ksms_outbox_meta or not names.ksms_outbox then
    return nil, store.error("not_an_outbox", path .. " is an SQLite database of something else, not a ksms outbox")
  end
  local rows, merr = all(self, "SELECT name, value FROM ksms_outbox_meta WHERE name IN (?, ?)", "application", "schema")
  if not rows then return nil, merr end
  local meta = {}
  for _, r in ipairs(rows) do meta[r.name] = r.value end
  if meta.application ~= _M.APPLICATION then
    return nil, store.error("not_an_outbox", path .. " is an SQLite database of something else, not a ksms outbox")
  end
  if meta.schema ~= _M.SCHEMA then
    return nil, store.error("schema_version", format("%s has outbox schema %s; this ksms reads schema %s",
      path, tostring(meta.schema), _M.SCHEMA))
  end
  return "outbox"
end

--- Opens (creating when new or empty) the outbox file at path.
-- @tparam string path
-- @tparam table options now (epoch seconds function), busy_timeout
-- (milliseconds a writer waits for another, default 5000), synchronous
-- ("normal" default, or "full": see the module comment)
-- @return a store, or nil, err (category "store": not_an_outbox, corrupt,
-- schema_version, open_failed, read_only, no_driver)
function _M.open(path, options)
  if type(path) ~= "string" or path == "" then
    misuse("ksms.outbox: the sqlite store needs a path: \"sqlite:/path/to/outbox.db\"")
  end
  if find(path, "\0", 1, true) then misuse("ksms.outbox: the store path contains a NUL byte") end
  local busy = options.busy_timeout or 5000
  if type(busy) ~= "number" or busy < 0 or busy ~= floor(busy) or busy > 3600000 then
    misuse("ksms.outbox: busy_timeout must be whole milliseconds, 0 to 3600000")
  end
  local sync = options.synchronous or "normal"
  if not SYNCHRONOUS[sync] then misuse("ksms.outbox: synchronous must be \"normal\" or \"full\"") end
  local found, DBI = pcall(require, "DBI")
  if not found then
    return nil, store.error("no_driver", "LuaDBI is not installed (Debian: lua-dbi-sqlite3): " .. tostring(DBI))
  end
  local herr = check_header(path)
  if herr then return nil, herr end
  local cok, db, err = pcall(DBI.Connect, "SQLite3", path)
  if not cok then return nil, store.error("no_driver", "LuaDBI has no SQLite3 driver: " .. tostring(db)) end
  if not db then return nil, sql_error(err, path) end
  db:autocommit(true) -- returns false (it rolls back a transaction there is not) but takes effect
  local self = setmetatable({ db = db, st = {}, path = path, now = options.now or os_time }, Store)
  local function fail(e)
    self:close()
    e.message = e.message:find(path, 1, true) and e.message or (path .. ": " .. e.message)
    return nil, e
  end
  -- PRAGMA values cannot be bound: busy is an integer checked above.
  local ok, perr = exec(self, format("PRAGMA busy_timeout = %d", busy))
  if not ok then return fail(perr) end
  local what
  what, perr = inspect(self, path)
  if not what then return fail(perr) end
  if what == "new" then
    -- Small pages for a new file (only possible before its first table, and
    -- before WAL): a state change rewrites a page of the table and of each
    -- index it touches, and 1 KiB pages make that commit about a third
    -- cheaper than 4 KiB ones (measured: 24 vs 38 microseconds).
    ok, perr = exec(self, "PRAGMA page_size = 1024")
    if not ok then return fail(perr) end
  end
  local mode
  mode, perr = all(self, "PRAGMA journal_mode = WAL")
  if not mode then return fail(perr) end
  if not mode[1] or mode[1].journal_mode ~= "wal" then
    return fail(store.error("open_failed", "SQLite would not use WAL mode (journal_mode "
      .. tostring(mode[1] and mode[1].journal_mode) .. ")"))
  end
  ok, perr = exec(self, SYNCHRONOUS[sync])
  if not ok then return fail(perr) end
  -- Every time, not only for a new file: IF NOT EXISTS and OR IGNORE make
  -- it a no-op on a complete outbox, two processes creating one at once
  -- agree, and a file from before an index was added gets it.
  ok, perr = tx(self, create, self.now())
  if not ok then return fail(perr) end
  if what == "new" then
    what, perr = inspect(self, path)
    if not what then return fail(perr) end
  end
  -- Writable? A write now, not at the first enqueue.
  ok, perr = exec(self, "INSERT OR REPLACE INTO ksms_outbox_meta (name, value) VALUES (?, ?)",
    "opened_at", tostring(self.now()))
  if not ok then return fail(perr) end
  return self
end

-- ---- the contract (see ksms.outbox.store) ----

local function insert_all(self, rows, now)
  local out = {}
  local ins = "INSERT OR IGNORE INTO ksms_outbox (key, client, state, message, created_at, updated_at, "
    .. "expires_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
  for i, r in ipairs(rows) do
    local n, err = affected(self, ins, r.key, r.client, "queued", r.message, now, now, r.expires_at, 0)
    if not n then return nil, err end
    if n == 1 then
      local msg, why = store.decode_message(r.message)
      out[i] = { seq = self.db:last_id(), key = r.key, client = r.client, state = "queued", message = msg,
        message_error = why, created_at = num(now), updated_at = num(now), expires_at = r.expires_at,
        attempts = 0, duplicate = false }
    else
      local got, gerr = all(self, "SELECT " .. COLS .. " FROM ksms_outbox WHERE key = ?", r.key)
      if not got then return nil, gerr end
      if not got[1] then return nil, store.error("io", "a key neither inserted nor found: " .. r.key) end
      out[i] = record_of(got[1])
      out[i].duplicate = true
    end
  end
  return out
end

--- See ksms.outbox.store.
function Store:insert(rows)
  return tx(self, insert_all, rows, self.now())
end

--- See ksms.outbox.store.
function Store:get(key)
  local rows, err = all(self, "SELECT " .. COLS .. " FROM ksms_outbox WHERE key = ?", key)
  if not rows then return nil, err end
  return rows[1] and record_of(rows[1]) or nil
end

-- The fields update() sets, by column, in a fixed order (the SQL text of
-- one combination is cached like any other).
local FIELD_ORDER = { "provider_id", "code", "error", "attempts", "expires_at", "owner" }

--- See ksms.outbox.store.
function Store:update(key, from, to, fields, opts)
  local set = store.check_update(from, to)
  store.check_fields(fields)
  store.refuse_fence(opts)
  local sets, args = { "state = ?", "updated_at = ?" }, { to, self.now() }
  for _, k in ipairs(FIELD_ORDER) do
    local v = fields and fields[k]
    if v ~= nil and not (k == "owner" and not states.is_active(to)) then
      if v == false then
        sets[#sets + 1] = k .. " = NULL"
      else
        sets[#sets + 1] = k .. " = ?"
        args[#args + 1] = (k == "error") and store.encode_error(v) or v
      end
    end
  end
  if not states.is_active(to) then sets[#sets + 1] = "owner = NULL" end
  local from_list = {}
  for s in pairs(set) do from_list[#from_list + 1] = s end
  table.sort(from_list)
  local where = "key = ? AND state IN (" .. sub(rep(", ?", #from_list), 3) .. ")"
  args[#args + 1] = key
  for _, s in ipairs(from_list) do args[#args + 1] = s end
  if opts and opts.owner ~= nil then
    where = where .. " AND owner = ?"
    args[#args + 1] = opts.owner
  end
  local n, err = affected(self, "UPDATE ksms_outbox SET " .. concat(sets, ", ") .. " WHERE " .. where,
    (table.unpack or unpack)(args, 1, #args))
  if not n then return nil, err end
  return n == 1
end

--- See ksms.outbox.store.
function Store:iterate(q)
  q = q or {}
  local since, left = q.since or 0, q.limit
  local sql, extra = "SELECT " .. COLS .. " FROM ksms_outbox WHERE seq > ?", {}
  if q.state ~= nil then sql = sql .. " AND state = ?"; extra[#extra + 1] = q.state end
  if q.client ~= nil then sql = sql .. " AND client = ?"; extra[#extra + 1] = q.client end
  -- The column, not COLS's REAL alias: ORDER BY the alias sorted every match for each page.
  sql = sql .. " ORDER BY ksms_outbox.seq LIMIT ?"
  local page, i, count, done = {}, 1, 0, false
  return function()
    if left and left <= 0 then return nil end
    if i > count then
      if done then return nil end
      local n = PAGE
      if left and left < n then n = left end
      local rows
      local err
      if #extra == 2 then rows, err = all(self, sql, since, extra[1], extra[2], n)
      elseif #extra == 1 then rows, err = all(self, sql, since, extra[1], n)
      else rows, err = all(self, sql, since, n) end
      if not rows then
        done, count = true, 0
        return nil, err -- ends a for loop; a caller calling it by hand sees why
      end
      page, i = rows, 1
      count = #page
      if count < n then done = true end
      if count == 0 then return nil end
      since = page[count].seq
    end
    local row = page[i]
    page[i] = nil -- handed over: the page does not keep it
    i = i + 1
    if left then left = left - 1 end
    return record_of(row)
  end
end

--- See ksms.outbox.store.
function Store:counts()
  local n = {}
  for _, s in ipairs(states.names) do n[s] = 0 end
  local rows, err = all(self, "SELECT state, count(*) AS n FROM ksms_outbox GROUP BY state")
  if not rows then return nil, err end
  for _, r in ipairs(rows) do
    if n[r.state] then n[r.state] = num(r.n) end
  end
  return n
end

--- See ksms.outbox.store.
function Store:meta_get(name)
  local rows, err = all(self, "SELECT value FROM ksms_outbox_meta WHERE name = ?", name)
  if not rows then return nil, err end
  return rows[1] and rows[1].value or nil
end

--- See ksms.outbox.store.
function Store:meta_set(name, value)
  if type(name) ~= "string" or type(value) ~= "string" then misuse("ksms.outbox: meta_set(name, value) takes two strings") end
  local ok, err = exec(self, "INSERT OR REPLACE INTO ksms_outbox_meta (name, value) VALUES (?, ?)", name, value)
  if not ok then return nil, err end
  return true
end

--- See ksms.outbox.store.
function Store:find_ref(client, provider_id)
  local rows, err = all(self, "SELECT " .. COLS .. " FROM ksms_outbox WHERE provider_id = ? AND client = ? "
    .. "ORDER BY ksms_outbox.seq DESC LIMIT 1", tostring(provider_id), client)
  if not rows then return nil, err end
  return rows[1] and record_of(rows[1]) or nil
end

-- INDEXED BY: without statistics the planner would walk every queued
-- record of every client through the state index.
local WINDOW = "SELECT seq FROM ksms_outbox INDEXED BY ksms_outbox_queued "
  .. "WHERE client = ? AND state = 'queued' AND owner IS NULL ORDER BY seq LIMIT ?"

local function claim_tx(self, client, owner, limit, now)
  local expired, err = affected(self, "UPDATE ksms_outbox SET state = ?, code = ?, error = ?, updated_at = ? "
    .. "WHERE seq IN (" .. WINDOW .. ") AND expires_at <= ?",
    "expired", "expired", store.EXPIRED_ERROR, now, client, limit, now)
  if not expired then return nil, err end
  local left = limit - expired
  if left > 0 then
    local ok, cerr = exec(self, "UPDATE ksms_outbox SET owner = ?, updated_at = ? WHERE seq IN (" .. WINDOW .. ")",
      owner, now, client, left)
    if not ok then return nil, cerr end
  end
  -- +client, +state: the owner index, not a walk of every queued record of the client.
  local rows, rerr = all(self, "SELECT " .. COLS .. " FROM ksms_outbox WHERE owner = ? AND +client = ? AND +state = ? "
    .. "ORDER BY seq", owner, client, "queued")
  if not rows then return nil, rerr end
  for i, r in ipairs(rows) do rows[i] = record_of(r) end
  return rows, expired
end

--- See ksms.outbox.store.
function Store:claim(client, owner, limit, now)
  return tx(self, claim_tx, client, owner, limit, now)
end

--- See ksms.outbox.store.
function Store:release(owner)
  return affected(self, "UPDATE ksms_outbox SET owner = NULL WHERE owner = ? AND state = ?", owner, "queued")
end

--- See ksms.outbox.store.
function Store:owners()
  local rows, err = all(self, "SELECT DISTINCT owner FROM ksms_outbox WHERE owner IS NOT NULL ORDER BY owner")
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.owner end
  return out
end

local function recover_tx(self, owner, now)
  local m, err = affected(self, "UPDATE ksms_outbox SET state = ?, owner = NULL, code = ?, error = ?, updated_at = ? "
    .. "WHERE owner = ? AND state = ?", "maybe_sent", store.RECOVERED_CODE, store.RECOVERED_ERROR, now, owner, "sending")
  if not m then return nil, err end
  local r, rerr = affected(self, "UPDATE ksms_outbox SET owner = NULL WHERE owner = ? AND state = ?", owner, "queued")
  if not r then return nil, rerr end
  return { maybe_sent = m, released = r }
end

--- See ksms.outbox.store.
function Store:recover(owner)
  return tx(self, recover_tx, owner, self.now())
end

--- Finalizes the statements and closes the file. Idempotent.
function Store:close()
  for sql in pairs(self.st) do forget(self, sql) end
  if self.db then pcall(self.db.close, self.db) end
  self.db = nil
  return true
end

return _M
