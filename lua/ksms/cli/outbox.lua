--- ksms.cli.outbox: the outbox file the command works on (ksms.outbox over
-- SQLite): opening it with a clear usage error, and its records shown as
-- text lines or JSON fields. `ksms bulk --journal FILE` and `ksms outbox
-- ... --outbox FILE` name the same kind of file.
--
--   local ob = cli_outbox.open(path [, clients])   -- raises a usage error
--   cli_outbox.meta_get(ob, name), cli_outbox.meta_set(ob, name, value)
--   cli_outbox.fields(rec) -> plain table for --json
--   cli_outbox.line(rec)   -> "row:17  maybe_sent  01020000017  ..."
--   cli_outbox.row_key(17) -> "row:17"; cli_outbox.key_row("row:17") -> 17
-- @module ksms.cli.outbox
-- @alias _M

local status = require "ksms.cli.status"
local errors = require "ksms.errors"

local type, tostring, tonumber, pairs, error, pcall, floor = type, tostring, tonumber, pairs, error, pcall, math.floor
local format, concat, gsub, os_date = string.format, table.concat, string.gsub, os.date
local io_open = io.open

local _M = { _VERSION = "0.2.0" }

-- The states, in the order tools show them (the outbox's one table).
_M.STATES = require("ksms.outbox.states").names
_M.is_state = require("ksms.outbox.states").is_state

local function usage(msg) error(status.usage(msg), 0) end

--- The text of an error the outbox returned (an error object or a string).
-- @param err
-- @treturn string
function _M.message(err)
  if type(err) == "table" then return tostring(err.message or err.code or err.category) end
  return tostring(err)
end

--- open(path [, clients]) -> the Outbox. A file that cannot be opened,
-- is not an outbox or is corrupted is a usage error (exit 2): nothing was
-- sent or changed.
-- @tparam string path
-- @tparam[opt] table clients name -> client, for a worker
function _M.open(path, clients)
  local ok, ob, err = pcall(require("ksms.outbox").open, { store = "sqlite:" .. path, clients = clients })
  if not ok then usage(format("cannot open the outbox %s: %s", path, tostring(ob))) end
  if not ob then
    usage(format("cannot open the outbox %s: %s%s (nothing was sent)", path, _M.message(err), _M.old_journal(path)))
  end
  return ob
end

--- "; ..." when path is the text journal an older ksms bulk wrote (its
-- rows are not read: the outbox is a new file), or "".
-- @tparam string path
-- @treturn string
function _M.old_journal(path)
  local f = io_open(path, "rb")
  if not f then return "" end
  local head = f:read(22)
  f:close()
  if head ~= "# ksms bulk journal v1" then return "" end
  return "; it is the text journal of an older ksms bulk, which this version does not read:"
    .. " give --journal a new file (rows the old journal records as sent would be sent again)"
end

--- A value the CLI keeps in the outbox file (the store's meta table).
-- @param ob the Outbox
-- @tparam string name
function _M.meta_get(ob, name)
  local v, err = ob.store:meta_get(name)
  if v == nil and err ~= nil then usage(format("cannot read the outbox: %s (nothing was sent)", _M.message(err))) end
  if type(v) ~= "string" then return nil end
  return v
end

--- The records of ob:list(q), each given to fn(rec) (which returns false
-- to stop); a store failure is a usage error (exit 2) naming it.
-- @param ob the Outbox
-- @tparam table q as ob:list's
-- @tparam function fn
function _M.each(ob, q, fn)
  local next_record = ob:list(q)
  while true do
    local rec, err = next_record()
    if rec == nil then
      if err ~= nil then usage("cannot read the outbox: " .. _M.message(err)) end
      return
    end
    if fn(rec) == false then return end
  end
end

--- ob:status(key), a store failure being a usage error (exit 2).
-- @param ob the Outbox
-- @tparam string key
-- @return the record, or nil when no record has that key
function _M.status(ob, key)
  local rec, err = ob:status(key)
  if rec == nil and err ~= nil then usage("cannot read the outbox: " .. _M.message(err)) end
  return rec
end

--- ob:counts(), a store failure being a usage error (exit 2).
-- @param ob the Outbox
-- @treturn table state -> n
function _M.counts(ob)
  local c, err = ob:counts()
  if type(c) ~= "table" then usage("cannot read the outbox: " .. _M.message(err)) end
  return c
end

--- Keeps a value in the outbox file; a store failure is a usage error
-- (exit 2: raised before anything is sent).
-- @param ob the Outbox
-- @tparam string name
-- @tparam string value
function _M.meta_set(ob, name, value)
  local ok, err = ob.store:meta_set(name, value)
  if not ok then usage(format("cannot write to the outbox: %s (nothing was sent)", _M.message(err))) end
end

--- The key of a bulk row.
-- @tparam integer n the row (1 is the first after the header)
-- @treturn string
function _M.row_key(n) return format("row:%d", n) end

--- The row of a bulk key, or nil.
-- @tparam string key
function _M.key_row(key)
  return type(key) == "string" and tonumber(key:match("^row:(%d+)$")) or nil
end

--- A time of a record (epoch seconds) as ISO 8601 UTC, or nil.
-- @param t
function _M.time(t)
  if type(t) ~= "number" or t ~= t or t < 0 or t > 1e11 then return nil end
  return os_date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

-- Only what JSON can carry, from a table read back from a store.
local function plain(v, depth)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then return v == v and v or nil end
  if t ~= "table" or depth > 4 then return nil end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" or type(k) == "number" then out[k] = plain(x, depth + 1) end
  end
  return out
end

--- The error of a record as one line: "category code: message".
-- @param e a record's error (an error object or a string), or nil
function _M.error_text(e)
  if e == nil then return nil end
  if type(e) ~= "table" then return tostring(e) end
  local parts = {}
  if e.category then parts[#parts + 1] = tostring(e.category) end
  if e.code ~= nil then parts[#parts + 1] = tostring(e.code) end
  local head = concat(parts, " ")
  if e.message then return head ~= "" and (head .. ": " .. tostring(e.message)) or tostring(e.message) end
  return head
end

-- The masker masks every field whose name looks secret ("key" among
-- them); an outbox's key is the caller's idempotency key, not a secret:
-- put back, masked by value like any text.
local function restore_keys(out, orig, masked, depth)
  if type(orig) ~= "table" or type(masked) ~= "table" or depth > 6 then return end
  if type(orig.key) == "string" then masked.key = out:mask(orig.key) end
  for k, v in pairs(orig) do
    if type(v) == "table" and k ~= "message" then restore_keys(out, v, masked[k], depth + 1) end
  end
end

--- A document as one JSON line on stdout, masked (Out:json_doc) but for
-- the records' keys, which are masked by value only.
-- @param out the output
-- @tparam table doc
function _M.json_doc(out, doc)
  local masked = out.masker:mask_tree(doc)
  restore_keys(out, doc, masked, 0)
  out:line(require("ksms.cli.output").encode(masked))
end

--- One record as JSON text, masked as json_doc does.
-- @param out the output
-- @tparam table rec
-- @treturn string
function _M.encode(out, rec)
  local f = _M.fields(rec)
  local masked = out.masker:mask_tree(f)
  restore_keys(out, f, masked, 0)
  return require("ksms.cli.output").encode(masked)
end

--- A record as plain fields for --json (the message included; times in
-- epoch seconds as stored).
-- @tparam table rec
-- @treturn table
function _M.fields(rec)
  local f = plain(rec, 0) or {}
  if type(rec.error) == "table" and errors.is(rec.error) then
    f.error = require("ksms.cli.output").error_fields(rec.error)
  end
  return f
end

-- Line breaks and tabs of stored text would break a listing's line.
local function flat(s) return (gsub(tostring(s), "[\t\r\n]+", " ")) end

--- What a record's outcome says: the provider's id, its code, or its error.
-- @tparam table rec
-- @treturn string
function _M.detail(rec)
  if rec.provider_id ~= nil then return "id=" .. flat(rec.provider_id) end
  local e = _M.error_text(rec.error)
  if e then return flat(e) end
  if rec.code ~= nil then return "code=" .. flat(rec.code) end
  return ""
end

--- A record as one line of a listing: key, state, recipient, last change, detail.
-- @tparam table rec
-- @treturn string
function _M.line(rec)
  local to = type(rec.message) == "table" and rec.message.to or ""
  return format("%s  %s  %s  %s  %s", flat(rec.key), tostring(rec.state), flat(to),
    _M.time(rec.updated_at) or "-", _M.detail(rec))
end

--- A record as labelled lines (ksms outbox status).
-- @tparam table rec
-- @treturn table the lines
function _M.lines(rec)
  local l = {}
  local function add(label, v) if v ~= nil and v ~= "" then l[#l + 1] = format("%-12s %s", label, flat(v)) end end
  local m = type(rec.message) == "table" and rec.message or {}
  add("key", rec.key)
  add("state", rec.state)
  add("client", rec.client)
  add("to", m.to)
  add("from", m.from)
  add("kind", m.kind)
  add("subject", m.subject)
  add("text", m.text)
  add("created", _M.time(rec.created_at))
  add("updated", _M.time(rec.updated_at))
  add("expires", _M.time(rec.expires_at))
  if type(rec.attempts) == "number" then add("attempts", format("%d", rec.attempts)) end
  add("provider id", rec.provider_id)
  add("code", rec.code)
  add("error", _M.error_text(rec.error))
  return l
end

return _M
