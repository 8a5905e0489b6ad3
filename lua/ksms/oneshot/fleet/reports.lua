--- ksms.oneshot.fleet.reports: the Redis stream that carries OneShot pushed
-- delivery reports from the process holding the account's connection (the
-- binder) to the applications, with the report dedup in Redis.
--
--   local reports = require "ksms.oneshot.fleet.reports"
--   -- the binder, for every report event of ksms.oneshot.protocol:
--   local pub = reports.publisher(conn, { account = "acct" })
--   local added, err = pub:publish(ev, { key = rec.key, state = "delivered" })
--   -- true: in the stream; false: a duplicate; nil, err: not stored, so
--   -- do not acknowledge the report (the server pushes it again)
--   -- an application:
--   local c = assert(reports.consumer { redis = "redis://127.0.0.1:6379/0",
--     account = "acct", group = "app", consumer = "worker-1" })
--   for _, e in ipairs(assert(c:read { count = 100, block = 1 })) do
--     handle(e.report); c:ack(e.id)
--   end
--
-- Keys: "<namespace>:<account>:reports" (the stream) and
-- "<namespace>:<account>:seen:<dedup id>" (a dedup mark with an expiry);
-- namespace "ksms:fleet" by default. The dedup id is the report's
-- server_msg_id, or user_msg_id .. "/" .. sub_id when that is empty.
-- publish runs one Lua script: SET seen NX EX dedup_ttl, then XADD ...
-- MAXLEN ~ maxlen, and when the XADD fails the mark is deleted again, so a
-- report is never marked seen without being in the stream. A report the
-- binder published but could not acknowledge before it died is pushed
-- again to the next binder, which finds the mark and only acknowledges it:
-- the stream holds it once, and the consumer group hands it out once.
--
-- A consumer group is created at the stream's start (XGROUP CREATE ... 0
-- MKSTREAM): a group made after reports were published still gets every
-- report the stream holds. Entries a consumer read and never acknowledged
-- (it died) stay pending; claim (XAUTOCLAIM, Redis 6.2 or later) hands
-- them to another consumer once idle long enough. Trimming (maxlen) drops
-- the oldest entries whether acknowledged or not: keep maxlen well above
-- the backlog a stopped application may leave.
--
-- What Redis sends back is runtime input: an entry with missing, huge or
-- mistyped fields (one written to the stream by hand) is read without
-- raising, its values cut to FIELD_MAX bytes, and carries err (category
-- protocol, code bad_report) when it lacks an id or a numeric result.
-- Redis unreachable: nil, err (category server, code unavailable,
-- retryable), never a raise; with a URL the next call dials again.
-- @module ksms.oneshot.fleet.reports
-- @alias _M

local errors = require "ksms.errors"

local type, pairs, ipairs, tostring, tonumber, setmetatable, pcall, require, select =
  type, pairs, ipairs, tostring, tonumber, setmetatable, pcall, require, select
local format, find, floor = string.format, string.find, math.floor
local sort, unpack = table.sort, table.unpack or unpack
local misuse, check_options, bound, new_error = errors.misuse, errors.check_options, errors.bound, errors.new

local _M = { _VERSION = "0.2.0", DEFAULT_NAMESPACE = "ksms:fleet", FIELD_MAX = 1024,
  MAX_FIELDS = 32, ID_MAX = 160 }

-- The report fields of a protocol event, in the order they are written.
local FIELDS = { "server_msg_id", "user_msg_id", "sub_id", "msg_type", "phone", "result",
  "telecom", "delivery_time", "user_data", "result_message" }
local REPORT_FIELD = {}
for _, k in ipairs(FIELDS) do REPORT_FIELD[k] = true end
REPORT_FIELD.ok = true -- computed by the reader
local NUMERIC = { result = true, msg_type = true }

local PUBLISHER_OPTIONS = { account = "string", namespace = "string", dedup_ttl = "number",
  maxlen = "number", redis = "string", socket = "string", connect_timeout = "number",
  read_timeout = "number" }
local CONSUMER_OPTIONS = { account = "string", namespace = "string", group = "string",
  consumer = "string", redis = "string", conn = "table", socket = "string",
  connect_timeout = "number", read_timeout = "number" }
local SOCKETS = { core = true, luasocket = true, cosocket = true }

-- KEYS[1] the stream, KEYS[2] the dedup mark; ARGV: ttl, maxlen, then
-- field, value pairs. 1 and the entry id when added, 0 for a duplicate.
local PUBLISH = [[
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return { 0 } end
local cmd = { 'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*' }
for i = 3, #ARGV do cmd[#cmd + 1] = ARGV[i] end
local id = redis.pcall(unpack(cmd))
if type(id) == 'table' and id.err then
  redis.call('DEL', KEYS[2])
  return id
end
return { 1, id }
]]

-- ---- options and names ----

local function check_types(what, opts, schema)
  check_options(what, opts, schema)
  for k, t in pairs(schema) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse(what .. ": " .. k .. " must be a " .. t) end
  end
end

-- A name that becomes part of a key: non-empty, no spaces or NUL.
local function check_name(what, k, v)
  if v == nil then misuse(what .. ": " .. k .. " is required") end
  if v == "" or find(v, "[%z%s]") then
    misuse(what .. ": " .. k .. " must be a non-empty string without spaces or NUL")
  end
end

local function check_positive(what, k, v)
  if v ~= nil and not (v > 0 and v < 1e12) then misuse(what .. ": " .. k .. " must be a positive number") end
end

local function check_socket(what, s)
  if s ~= nil and not SOCKETS[s] then
    misuse(what .. ": socket must be \"core\", \"luasocket\" or \"cosocket\", not \"" .. tostring(s) .. "\"")
  end
end

-- The stream's key and the prefix of the dedup marks.
local function keys_of(opts)
  local base = (opts.namespace or _M.DEFAULT_NAMESPACE) .. ":" .. opts.account
  return base .. ":reports", base .. ":seen:"
end

-- ---- the connection: given, or a ksms.redis handle on a URL ----

-- A given connection (or handle) is used as it is; a URL becomes a handle
-- (ksms.redis.handle: dialled on first use and again after a failure,
-- Redis down being category server, code unavailable, retryable).
local function new_link(what, conn, opts)
  if conn ~= nil then
    if type(conn) ~= "table" or type(conn.call) ~= "function" or type(conn.eval) ~= "function" then
      misuse(what .. ": conn must be a ksms.redis connection")
    end
    return conn, false
  end
  if not opts.redis then misuse(what .. ": give a connection (conn) or a URL (redis = \"redis://...\")") end
  local redis = require "ksms.redis"
  local parts, why = redis.parse_url(opts.redis)
  if not parts then misuse(what .. ": bad redis URL: " .. why) end
  return redis.handle { url = opts.redis, socket = opts.socket, name = "the Redis report stream",
    connect_timeout = opts.connect_timeout or 2, read_timeout = opts.read_timeout or 5 }, true
end

-- ---- the publisher (the binder) ----

local Publisher = {}
Publisher.__index = Publisher

-- A number as text that reads back as the same number.
local function num(v)
  if v == floor(v) and v > -1e15 and v < 1e15 then return format("%.0f", v) end
  return format("%.17g", v)
end

-- A report field's value as stream text, bounded; nil when absent or of a
-- type a report field does not have.
local function text(v)
  local t = type(v)
  if t == "string" then return bound(v, _M.FIELD_MAX) end
  if t == "number" and v == v and v ~= 1 / 0 and v ~= -1 / 0 then return num(v) end
  return nil
end

--- reports.publisher(conn, opts) -> a publisher for one account's stream.
-- conn: a ksms.redis connection or handle (the binder's; a connection's
-- failure leaves it closed, as ksms.redis does, and its errors come as
-- they are), or nil with opts.redis, a URL the publisher reaches through a
-- ksms.redis.handle (dialled again after a failure). opts: account
-- (required), namespace ("ksms:fleet"), dedup_ttl (seconds a dedup mark
-- lives, 86400), maxlen (the stream's approximate length bound, 100000),
-- and with redis: socket, connect_timeout, read_timeout. Misuse raises.
-- @param conn a ksms.redis connection, or nil
-- @tparam table opts
-- @return the publisher
function _M.publisher(conn, opts)
  local what = "ksms.oneshot.fleet.reports.publisher"
  if type(opts) ~= "table" then misuse(what .. " expects (conn, options)") end
  check_types(what, opts, PUBLISHER_OPTIONS)
  check_name(what, "account", opts.account)
  if opts.namespace ~= nil then check_name(what, "namespace", opts.namespace) end
  check_positive(what, "dedup_ttl", opts.dedup_ttl)
  check_positive(what, "maxlen", opts.maxlen)
  check_socket(what, opts.socket)
  check_positive(what, "connect_timeout", opts.connect_timeout)
  check_positive(what, "read_timeout", opts.read_timeout)
  if conn ~= nil and opts.redis then misuse(what .. ": give conn or redis, not both") end
  local stream, seen = keys_of(opts)
  local ttl = opts.dedup_ttl or 86400
  local link, own = new_link(what, conn, opts)
  return setmetatable({ link = link, own = own, stream = stream, seen = seen,
    ttl = num(ttl < 0.001 and 1 or floor(ttl * 1000 + 0.5)), maxlen = num(floor(opts.maxlen or 100000)),
    account = opts.account }, Publisher)
end

--- reports.dedup_id(ev) -> the id a report is deduplicated by, or nil:
-- its server_msg_id, or user_msg_id .. "/" .. sub_id when that is empty.
-- @tparam table ev a report event of ksms.oneshot.protocol
-- @treturn ?string
function _M.dedup_id(ev)
  if type(ev) ~= "table" then return nil end
  local smid = ev.server_msg_id
  if type(smid) == "string" and smid ~= "" then return smid end
  local umid, sub = ev.user_msg_id, ev.sub_id
  if type(sub) == "number" then sub = num(sub) end
  if type(umid) == "string" and umid ~= "" and (sub == nil or type(sub) == "string") then
    return umid .. "/" .. (sub or "")
  end
  return nil
end

--- pub:publish(ev, extra) -> true, entry id | false | nil, err
-- Adds a report to the stream unless its dedup id was published within
-- dedup_ttl (false then: nothing added, acknowledge it to the server).
-- ev: a report event of ksms.oneshot.protocol; its fields server_msg_id,
-- user_msg_id, sub_id, msg_type, phone, result, telecom, delivery_time,
-- user_data and result_message are stored (each cut to FIELD_MAX bytes).
-- extra: optional string (or number) fields to store beside them (key,
-- state, ...), named with letters, digits and _ . -, not a report field.
-- nil, err: Redis failed (retryable; the report may or may not be in the
-- stream when err.maybe_sent: publishing it again is safe), or the event
-- has no id to dedup it by (category protocol, code bad_report).
-- @tparam table ev
-- @tparam[opt] table extra
-- @return true and the stream entry's id, false, or nil, err
function Publisher:publish(ev, extra)
  if type(ev) ~= "table" then misuse("ksms.oneshot.fleet.reports: publish expects a report event") end
  if extra ~= nil and type(extra) ~= "table" then
    misuse("ksms.oneshot.fleet.reports: publish's extra must be a table of fields")
  end
  local args = { self.ttl, self.maxlen }
  for _, k in ipairs(FIELDS) do
    local v = text(ev[k])
    if v then args[#args + 1] = k; args[#args + 1] = v end
  end
  if extra then
    local names = {}
    for k, v in pairs(extra) do
      if type(k) ~= "string" or #k > 64 or not find(k, "^[%w_%.%-]+$") then
        misuse("ksms.oneshot.fleet.reports: extra field names are short words (letters, digits, _ . -)")
      end
      if REPORT_FIELD[k] then misuse("ksms.oneshot.fleet.reports: extra field '" .. k .. "' is a report field") end
      if text(v) == nil then -- a table, a boolean, NaN or an infinity
        misuse("ksms.oneshot.fleet.reports: extra field '" .. k .. "' is a " .. type(v) .. " (strings and finite numbers only)")
      end
      names[#names + 1] = k
    end
    sort(names)
    for _, k in ipairs(names) do args[#args + 1] = k; args[#args + 1] = text(extra[k]) end
  end
  local id = _M.dedup_id(ev)
  if not id or #id > _M.ID_MAX then
    return nil, new_error { category = "protocol", code = "bad_report", provider = "oneshot",
      message = id and ("the report's id is " .. #id .. " bytes, over " .. _M.ID_MAX)
        or "the report has neither a server_msg_id nor a user_msg_id to dedup it by" }
  end
  local res, err = self.link:eval(PUBLISH, { self.stream, self.seen .. id }, args)
  if res == nil then return nil, err end
  if type(res) ~= "table" or (res[1] ~= 0 and res[1] ~= 1) then
    return nil, new_error { category = "protocol", code = "bad_reply", provider = "redis",
      message = "the report script answered " .. type(res) }
  end
  if res[1] == 0 then return false end
  return true, type(res[2]) == "string" and res[2] or nil
end

--- pub:close(): closes a connection the publisher dialled itself (a given
-- one stays the caller's).
function Publisher:close() if self.own then self.link:close() end end

-- ---- the consumer (an application) ----

local Consumer = {}
Consumer.__index = Consumer

local function bad_report(why)
  return new_error { category = "protocol", code = "bad_report", provider = "oneshot",
    message = "stream entry: " .. why }
end

-- One stream entry { id, { field, value, ... } } as { id =, report = };
-- nil when it has no usable id (it cannot be acknowledged either). Never
-- raises; keeps at most MAX_FIELDS fields, each value at most FIELD_MAX.
local function entry_of(raw)
  if type(raw) ~= "table" then return nil end
  local id = raw[1]
  if type(id) ~= "string" or #id > 64 or not find(id, "^%d+%-%d+$") then return nil end
  local report, fields, kept = {}, raw[2], 0
  if type(fields) == "table" then
    for i = 1, #fields - 1, 2 do
      local k, v = fields[i], fields[i + 1]
      if kept >= _M.MAX_FIELDS then break end
      if type(k) == "string" and type(v) == "string" and #k <= 64 and report[k] == nil then
        report[k] = bound(v, _M.FIELD_MAX)
        kept = kept + 1
      end
    end
  end
  for k in pairs(NUMERIC) do
    local v = report[k]
    if v ~= nil then
      report[k] = (#v <= 15 and find(v, "^%-?%d+$")) and tonumber(v) or nil
    end
  end
  local e = { id = id, report = report }
  report.ok = nil
  if report.result ~= nil then report.ok = report.result == 0 end
  if type(fields) ~= "table" then
    e.err = bad_report(id .. " has no fields (deleted or not a report)")
  elseif not _M.dedup_id(report) then
    e.err = bad_report(id .. " has neither a server_msg_id nor a user_msg_id")
  elseif report.result == nil then
    e.err = bad_report(id .. " has no numeric result")
  end
  return e
end

local function entries_of(raw, out)
  if type(raw) ~= "table" then return out end
  for i = 1, #raw do
    local e = entry_of(raw[i])
    if e then out[#out + 1] = e end
  end
  return out
end

--- reports.consumer(opts) -> consumer or nil, err
-- opts: account (required), group (required), consumer (this reader's
-- name; default "<hostname>:<pid>"), namespace ("ksms:fleet"), and either
-- redis (a URL; the consumer dials it, again after a failure: socket,
-- connect_timeout 2, read_timeout 5) or conn (a ksms.redis connection the
-- caller keeps). Creates the group at the stream's start (id 0, so a
-- group made after reports were published gets them) unless it exists.
-- Redis unreachable: nil, err (category server, retryable). Misuse raises.
-- @tparam table opts
-- @return the consumer, or nil, err
function _M.consumer(opts)
  local what = "ksms.oneshot.fleet.reports.consumer"
  if type(opts) ~= "table" then misuse(what .. " expects a table of options") end
  check_types(what, opts, CONSUMER_OPTIONS)
  check_name(what, "account", opts.account)
  check_name(what, "group", opts.group)
  if opts.namespace ~= nil then check_name(what, "namespace", opts.namespace) end
  check_socket(what, opts.socket)
  check_positive(what, "connect_timeout", opts.connect_timeout)
  check_positive(what, "read_timeout", opts.read_timeout)
  if opts.conn ~= nil and opts.redis then misuse(what .. ": give conn or redis, not both") end
  local name = opts.consumer
  if name == nil then
    local core = require "ksms.core"
    name = tostring(core.hostname()) .. ":" .. tostring(core.getpid())
  end
  check_name(what, "consumer", name)
  local stream = keys_of(opts)
  local link, own = new_link(what, opts.conn, opts)
  local self = setmetatable({ link = link, own = own, stream = stream,
    group = opts.group, name = name, account = opts.account, margin = opts.read_timeout or 5 }, Consumer)
  local ok, err = self:_create_group()
  if not ok then self:close(); return nil, err end
  return self
end

-- XGROUP CREATE at id 0 with MKSTREAM; an existing group (BUSYGROUP) is fine.
function Consumer:_create_group()
  local res, err = self.link:call("XGROUP", "CREATE", self.stream, self.group, "0", "MKSTREAM")
  if res == nil and not (err and err.code == "BUSYGROUP") then return nil, err end
  return true
end

-- A call that recreates the group once when Redis lost it (NOGROUP: a
-- restart without persistence, a deleted stream) and tries again.
function Consumer:_call(...)
  local res, err = self.link:call(...)
  if res == nil and err and err.code == "NOGROUP" then
    local ok, gerr = self:_create_group()
    if not ok then return nil, gerr end
    res, err = self.link:call(...)
  end
  return res, err
end

local function count_of(what, v, default)
  if v == nil then return default end
  if type(v) ~= "number" or v < 1 or v > 100000 or v ~= floor(v) then
    misuse("ksms.oneshot.fleet.reports: " .. what .. " must be a whole number from 1 to 100000")
  end
  return v
end

--- c:read{ count, block } -> list or nil, err
-- The next reports no consumer of the group was given (XREADGROUP ... >):
-- { { id = "1700000000000-0", report = { server_msg_id =, user_msg_id =,
-- sub_id =, result = (number), ok = (result == 0), msg_type = (number),
-- phone =, ..., and the publisher's extra fields } }, ... }, oldest first;
-- an empty list when none came within block. count: at most this many
-- (100); block: seconds to wait for one (0 or nil: answer at once). The
-- connection's read deadline is block plus its read_timeout for this call
-- only, so a long block is no read timeout. An entry that is not a
-- readable report carries err (protocol, bad_report): acknowledge it too.
-- Each entry stays pending until acknowledged (ack).
-- @tparam[opt] table opts
-- @return the list, or nil, err
function Consumer:read(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet.reports: read expects a table of options") end
  check_types("ksms.oneshot.fleet.reports: read", opts, { count = "number", block = "number" })
  local count = count_of("count", opts.count, 100)
  local block = opts.block
  if block ~= nil and not (block >= 0 and block < 1e6) then
    misuse("ksms.oneshot.fleet.reports: read's block must be seconds from 0")
  end
  local ms = block and floor(block * 1000 + 0.5) or 0
  local link = self.link
  local res, err
  if ms > 0 then
    local set = link.set_read_timeout
    local previous = set and set(link, ms / 1000 + self.margin)
    res, err = self:_call("XREADGROUP", "GROUP", self.group, self.name, "COUNT", count,
      "BLOCK", ms, "STREAMS", self.stream, ">")
    if previous then set(link, previous) end
  else
    res, err = self:_call("XREADGROUP", "GROUP", self.group, self.name, "COUNT", count,
      "STREAMS", self.stream, ">")
  end
  if res == nil and err then return nil, err end
  local out = {}
  if type(res) ~= "table" then return out end -- redis.null: nothing within block
  -- { { stream, { entry, ... } } }: one stream asked for
  for i = 1, #res do
    local s = res[i]
    if type(s) == "table" then entries_of(s[2], out) end
  end
  return out
end

--- c:ack(id, ...) -> the number acknowledged, or nil, err
-- XACK: the entries are handled; the group hands them to no one again.
-- @tparam string id a stream entry id from read or claim
-- @return a count, or nil, err
function Consumer:ack(...)
  local cmd = { "XACK", self.stream, self.group }
  local n = select("#", ...)
  for i = 1, n do
    local id = select(i, ...)
    if type(id) ~= "string" then misuse("ksms.oneshot.fleet.reports: ack expects entry ids (strings)") end
    cmd[#cmd + 1] = id
  end
  if n == 0 then return 0 end
  local res, aerr = self.link:call(unpack(cmd))
  if res == nil then return nil, aerr end
  return tonumber(res) or 0
end

--- c:claim{ min_idle, count } -> list or nil, err
-- Takes over entries of the group that a consumer read and did not
-- acknowledge for min_idle seconds (30) (it died or hangs): at most count
-- (100) of them, as read lists them, now pending on this consumer
-- (XAUTOCLAIM from the start of the pending list; Redis 6.2 or later).
-- list.deleted: ids that were pending but trimmed from the stream (Redis 7
-- drops them from the pending list).
-- @tparam[opt] table opts
-- @return the list, or nil, err
function Consumer:claim(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.oneshot.fleet.reports: claim expects a table of options") end
  check_types("ksms.oneshot.fleet.reports: claim", opts, { count = "number", min_idle = "number" })
  local count = count_of("count", opts.count, 100)
  local idle = opts.min_idle or 30
  if not (idle >= 0 and idle < 1e9) then misuse("ksms.oneshot.fleet.reports: claim's min_idle must be seconds from 0") end
  local ms = floor(idle * 1000 + 0.5)
  local out, deleted, cursor = {}, {}, "0-0"
  -- Each round scans a bounded part of the pending list; 64 rounds bound
  -- the call too.
  for _ = 1, 64 do
    local res, err = self:_call("XAUTOCLAIM", self.stream, self.group, self.name, ms, cursor,
      "COUNT", count - #out)
    if res == nil and err then return nil, err end
    if type(res) ~= "table" then break end
    entries_of(res[2], out)
    if type(res[3]) == "table" then
      for i = 1, #res[3] do
        if type(res[3][i]) == "string" and #deleted < count then deleted[#deleted + 1] = res[3][i] end
      end
    end
    cursor = res[1]
    if type(cursor) ~= "string" or cursor == "0-0" or #out >= count then break end
  end
  out.deleted = deleted
  return out
end

--- c:pending() -> the number of entries of the group read and not yet
-- acknowledged (by any consumer), or nil, err
-- @return a count, or nil, err
function Consumer:pending()
  local res, err = self:_call("XPENDING", self.stream, self.group)
  if res == nil and err then return nil, err end
  return type(res) == "table" and tonumber(res[1]) or 0
end

--- c:close(): closes a connection the consumer dialled itself (a given
-- one stays the caller's).
function Consumer:close() if self.own then self.link:close() end end

Publisher.__tostring = function(self) return "ksms.oneshot.fleet.reports publisher (" .. self.stream .. ")" end
Consumer.__tostring = function(self)
  return "ksms.oneshot.fleet.reports consumer " .. self.name .. " of " .. self.group .. " (" .. self.stream .. ")"
end

return _M
