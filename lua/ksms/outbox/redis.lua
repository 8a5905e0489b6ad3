--- ksms.outbox.redis: the outbox store on a Redis server, so workers and
-- producers on several machines share one outbox. It keeps the store
-- contract of ksms.outbox.store exactly (the same specs run on it, on the
-- memory store and on SQLite).
--
-- Every write is one Lua script run by the server (EVALSHA), so it is
-- atomic: insert (many rows, duplicates reported), claim (the client's
-- oldest unowned queued records: expired ones marked, the others given the
-- owner), update (the compare-and-set; the transition is checked against
-- ksms.outbox.states here, before the call), release, recover. Keys, under
-- "<namespace>:":
--   r:<key>       hash: one record's fields
--   seq           the counter giving each record its seq
--   all           sorted set seq -> key (every record, for iterate)
--   st:<state>    sorted set seq -> key per state (iterate by state, counts)
--   q:<client>    sorted set seq -> key: the client's unowned queued records
--   own:<owner>   set of the keys an owner holds; owners: the set of owners
--   ref           hash "<client>\0<provider_id>" -> key (find_ref)
--   meta          hash (meta_get/meta_set)
--   lease:<owner> a key with a TTL a live worker renews (renew); leased: the
--                 set of owners that took a lease. An owner in leased whose
--                 lease is gone is dead, whatever machine it ran on.
-- One Redis server (or a primary), not a cluster: the scripts name keys
-- they derive from the namespace.
-- @module ksms.outbox.redis
-- @alias _M

local store = require "ksms.outbox.store"
local states = require "ksms.outbox.states"
local errors = require "ksms.errors"

local type, pairs, ipairs, setmetatable, tostring, tonumber, pcall = type, pairs, ipairs, setmetatable, tostring, tonumber, pcall
local sort = table.sort
local format, find, match, floor = string.format, string.find, string.match, math.floor
local misuse = errors.misuse
local os_time = os.time

local _M = { _VERSION = "0.2.0", PAGE = 256, DEFAULT_NAMESPACE = "ksms:outbox" }

-- The Redis client: ksms.redis (handle{ url, socket, name, connect_timeout,
-- read_timeout } -> a handle with call and eval). Another module with the
-- same handle may be set here (a test's, an application's pool).
_M.client = nil

local Store = {}
Store.__index = Store

local COLUMNS = { "key", "client", "state", "owner", "message", "created_at", "updated_at",
  "expires_at", "provider_id", "code", "error", "attempts", "seq" }
local NUMBERS = { created_at = true, updated_at = true, expires_at = true, attempts = true, seq = true }

-- Numbers go to Redis as text that reads back exactly (2^40 + 0.5, 3e9).
local function num(v)
  if v == floor(v) and v > -1e15 and v < 1e15 then return format("%.0f", v) end
  return format("%.17g", v)
end

-- A record from a hash's flat field/value list (runtime input: bounded
-- fields only, never raises).
local function record_of(flat)
  if type(flat) ~= "table" then return nil end
  local row = {}
  for i = 1, #flat - 1, 2 do
    local k, v = flat[i], flat[i + 1]
    if type(k) == "string" and type(v) == "string" then row[k] = v end
  end
  if not row.key then return nil end
  local r = {}
  for _, k in ipairs(COLUMNS) do
    local v = row[k]
    if NUMBERS[k] then v = tonumber(v) end
    r[k] = v
  end
  if row.code_t == "n" then r.code = tonumber(row.code) end
  r.attempts = r.attempts or 0
  local msg, why = store.decode_message(row.message)
  r.message, r.message_error = msg, why
  r.error = store.decode_error(row.error)
  return r
end

-- The scripts. ARGV[1] is always the namespace. A record's hash holds
-- strings; the helpers below keep the indexes in step with it.
local COMMON = [[
local ns = ARGV[1]
local function rk(k) return ns .. ':r:' .. k end
-- (fields another writer damaged must not stop a script halfway)
local function sc(seq) return tonumber(seq) or 0 end
local function set_state(k, seq, from, to)
  if from ~= to then
    redis.call('ZREM', ns .. ':st:' .. from, k)
    redis.call('ZADD', ns .. ':st:' .. to, sc(seq), k)
    redis.call('HSET', rk(k), 'state', to)
  end
end
local function drop_owner(k, owner)
  if owner then
    redis.call('SREM', ns .. ':own:' .. owner, k)
    if redis.call('SCARD', ns .. ':own:' .. owner) == 0 then redis.call('SREM', ns .. ':owners', owner) end
  end
end
local function add_owner(k, owner)
  redis.call('SADD', ns .. ':own:' .. owner, k)
  redis.call('SADD', ns .. ':owners', owner)
end
]]

local INSERT = COMMON .. [[
local now, n = ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local k, client, msg, exp = ARGV[4 + i * 4], ARGV[5 + i * 4], ARGV[6 + i * 4], ARGV[7 + i * 4]
  local dup = 1
  if redis.call('EXISTS', rk(k)) == 0 then
    dup = 0
    local seq = redis.call('INCR', ns .. ':seq')
    redis.call('HSET', rk(k), 'key', k, 'client', client, 'state', 'queued', 'message', msg,
      'created_at', now, 'updated_at', now, 'attempts', '0', 'seq', seq)
    if exp ~= '' then redis.call('HSET', rk(k), 'expires_at', exp) end
    redis.call('ZADD', ns .. ':all', seq, k)
    redis.call('ZADD', ns .. ':st:queued', seq, k)
    redis.call('ZADD', ns .. ':q:' .. client, seq, k)
  end
  out[#out + 1] = dup
  out[#out + 1] = redis.call('HGETALL', rk(k))
end
return out
]]

-- ARGV: ns, key, to, owner ('' = any), now, fence key ('' = none), fence
-- value, nfrom, from..., then name, value pairs ('\0' clears a field;
-- code_t marks a numeric code). Returns 1 (done), 0 (not in a from state,
-- or not the owner's) or 2 (fenced: the fence key does not hold the value).
local UPDATE = COMMON .. [[
local k, to, want, now, nfrom = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[8])
if ARGV[6] ~= '' and redis.call('GET', ARGV[6]) ~= ARGV[7] then return 2 end
local h = redis.call('HMGET', rk(k), 'state', 'owner', 'seq', 'client', 'provider_id')
local st, owner, seq, client, pid = h[1], h[2], h[3], h[4] or '', h[5]
if not st then return 0 end
local ok = false
for i = 1, nfrom do if ARGV[8 + i] == st then ok = true end end
if not ok then return 0 end
if want ~= '' and owner ~= want then return 0 end
local newowner, newpid = owner, pid
for i = 9 + nfrom, #ARGV - 1, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if v == '\0' then
    redis.call('HDEL', rk(k), f)
    if f == 'owner' then newowner = false elseif f == 'provider_id' then newpid = false end
  else
    redis.call('HSET', rk(k), f, v)
    if f == 'owner' then newowner = v elseif f == 'provider_id' then newpid = v end
  end
end
if to ~= 'queued' and to ~= 'sending' and newowner then
  redis.call('HDEL', rk(k), 'owner')
  newowner = false
end
if pid ~= newpid then
  if pid and redis.call('HGET', ns .. ':ref', client .. '\0' .. pid) == k then
    redis.call('HDEL', ns .. ':ref', client .. '\0' .. pid)
  end
  if newpid then redis.call('HSET', ns .. ':ref', client .. '\0' .. newpid, k) end
end
if owner ~= newowner then
  drop_owner(k, owner)
  if newowner then add_owner(k, newowner) end
end
set_state(k, seq, st, to)
if to == 'queued' and not newowner then
  redis.call('ZADD', ns .. ':q:' .. client, sc(seq), k)
else
  redis.call('ZREM', ns .. ':q:' .. client, k)
end
redis.call('HSET', rk(k), 'updated_at', now)
return 1
]]

-- ARGV: ns, client, owner, limit, now, the expired error text.
local CLAIM = COMMON .. [[
local client, owner, limit, now, experr = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local q = ns .. ':q:' .. client
local keys = redis.call('ZRANGE', q, 0, limit - 1)
local out, expired = { 0 }, 0
for _, k in ipairs(keys) do
  redis.call('ZREM', q, k)
  local h = redis.call('HMGET', rk(k), 'state', 'owner', 'expires_at', 'seq')
  if h[1] == 'queued' and not h[2] then
    if tonumber(h[3]) and tonumber(h[3]) <= now then
      set_state(k, h[4], 'queued', 'expired')
      redis.call('HSET', rk(k), 'code', 'expired', 'error', experr, 'updated_at', ARGV[5])
      redis.call('HDEL', rk(k), 'code_t')
      expired = expired + 1
    else
      redis.call('HSET', rk(k), 'owner', owner, 'updated_at', ARGV[5])
      add_owner(k, owner)
      out[#out + 1] = redis.call('HGETALL', rk(k))
    end
  end
end
out[1] = expired
return out
]]

-- ARGV: ns, owner, mode ('release' or 'recover'), now, code, error text.
local RECOVER = COMMON .. [[
local owner, mode, now = ARGV[2], ARGV[3], ARGV[4]
local maybe, released = 0, 0
for _, k in ipairs(redis.call('SMEMBERS', ns .. ':own:' .. owner)) do
  local h = redis.call('HMGET', rk(k), 'state', 'owner', 'seq', 'client')
  if h[2] ~= owner then
    drop_owner(k, owner)
  elseif h[1] == 'queued' then
    redis.call('HDEL', rk(k), 'owner')
    redis.call('HSET', rk(k), 'updated_at', now)
    redis.call('ZADD', ns .. ':q:' .. (h[4] or ''), sc(h[3]), k)
    drop_owner(k, owner)
    released = released + 1
  elseif h[1] == 'sending' and mode == 'recover' then
    set_state(k, h[3], 'sending', 'maybe_sent')
    redis.call('HDEL', rk(k), 'owner', 'code_t')
    redis.call('HSET', rk(k), 'code', ARGV[5], 'error', ARGV[6], 'updated_at', now)
    drop_owner(k, owner)
    maybe = maybe + 1
  end
end
-- An owner holding nothing leaves the lease sets (a live worker takes its
-- lease again before it claims).
if redis.call('SCARD', ns .. ':own:' .. owner) == 0 then
  redis.call('SREM', ns .. ':leased', owner)
  redis.call('DEL', ns .. ':lease:' .. owner)
end
return { maybe, released }
]]

-- ARGV: ns, zset name ('all' or 'st:<state>'), since, page, client ('' = any).
-- Returns the last seq looked at, then the matching records.
local PAGE = [[
local ns, client = ARGV[1], ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', ns .. ':' .. ARGV[2], '(' .. ARGV[3], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = { ARGV[3] }
for i = 1, #ids, 2 do
  out[1] = ids[i + 1]
  local h = redis.call('HGETALL', ns .. ':r:' .. ids[i])
  if #h > 0 and (client == '' or redis.call('HGET', ns .. ':r:' .. ids[i], 'client') == client) then
    out[#out + 1] = h
  end
end
return out
]]

local COUNTS = "local out = {} for i = 2, #ARGV do out[#out + 1] = redis.call('ZCARD', ARGV[1] .. ':st:' .. ARGV[i]) end return out"

local INIT = [[
redis.call('HSETNX', ARGV[1] .. ':meta', 'application', 'ksms.outbox')
redis.call('HSETNX', ARGV[1] .. ':meta', 'schema', '1')
return redis.call('HMGET', ARGV[1] .. ':meta', 'application', 'schema')
]]

local function closed()
  return nil, store.error("closed", "the outbox store is closed")
end

-- Every call goes through a ksms.redis handle: dialled on first use and
-- again after Redis went away, a server that cannot be reached being
-- category "server", code "unavailable", retryable (what issue 15 asks
-- producers to get while Redis is down); inside nginx a cosocket, one per
-- request or timer.

-- A script's answer; every script here answers a list or a number, so
-- anything else (runtime input) is an error, not a raise further on.
local function eval(self, script, args)
  if self.closed then return closed() end
  local res, err = self.h:eval(script, {}, args)
  if res == nil then return nil, err end
  if type(res) ~= "table" and type(res) ~= "number" then
    return nil, store.error("io", "the Redis store answered a script with " .. type(res))
  end
  return res
end

local function list_of(res, err)
  if res == nil then return nil, err end
  if type(res) ~= "table" then return nil, store.error("io", "the Redis store answered a number for a list") end
  return res
end

local function call(self, ...)
  if self.closed then return closed() end
  return self.h:call(...)
end

local function client_lib()
  if _M.client then return _M.client end
  local ok, lib = pcall(require, "ksms.redis")
  if ok and type(lib) == "table" and type(lib.handle) == "function" then return lib end
  return nil
end

--- Opens the store at a Redis URL.
-- @tparam string rest what follows "redis:" in the spec: "//HOST:PORT/DB",
-- optionally "?namespace=NAME"
-- @tparam table options namespace (default "ksms:outbox"), now,
-- connect_timeout and read_timeout (seconds, default 2 and 5), socket
-- ("core", "luasocket" or "cosocket"; default: a cosocket inside an nginx
-- request or timer, the core's TCP client elsewhere), keep_connection
-- (ksms.redis.handle's keep: one cosocket kept for a long-lived timer)
-- @return a store, or nil, err
function _M.open(rest, options)
  options = options or {}
  if type(rest) ~= "string" or not find(rest, "^//[^/]") then
    misuse("ksms.outbox: a Redis store is \"redis://HOST:PORT/DB\"")
  end
  local url, query = match(rest, "^([^?]*)%??(.*)$")
  local sock = options.socket
  if sock ~= nil and sock ~= "core" and sock ~= "luasocket" and sock ~= "cosocket" then
    misuse("ksms.outbox: socket must be \"core\", \"luasocket\" or \"cosocket\"")
  end
  local lib = client_lib()
  if lib and type(lib.parse_url) == "function" then
    local parts, why = lib.parse_url("redis:" .. url)
    if not parts then misuse("ksms.outbox: a Redis store is \"redis://HOST:PORT/DB\": " .. tostring(why)) end
  end
  local in_url = match(query, "^namespace=([^&]+)$")
  if query ~= "" and not in_url then misuse("ksms.outbox: a Redis store URL takes only ?namespace=NAME") end
  if in_url and options.namespace and options.namespace ~= in_url then
    misuse("ksms.outbox: the URL's namespace and the namespace option differ")
  end
  local ns = in_url or options.namespace or _M.DEFAULT_NAMESPACE
  if type(ns) ~= "string" or ns == "" or find(ns, "[%z%s]") then
    misuse("ksms.outbox: namespace must be a non-empty string without spaces or NUL")
  end
  if not lib then
    return nil, store.error("no_driver", "the Redis store needs ksms.redis (the ksms Redis client), which is not installed")
  end
  local self = setmetatable({ ns = ns, now = options.now or os_time,
    h = lib.handle { url = "redis:" .. url, socket = options.socket, name = "the Redis outbox store",
      keep = options.keep_connection == true,
      connect_timeout = options.connect_timeout or 2, read_timeout = options.read_timeout or 5 } }, Store)
  local meta, err = list_of(eval(self, INIT, { ns }))
  if not meta then return nil, err end
  if meta[1] ~= "ksms.outbox" then
    return nil, store.error("not_an_outbox", "the Redis namespace " .. ns .. " holds something else than an outbox")
  end
  if tonumber(meta[2]) == nil or tonumber(meta[2]) > 1 then
    return nil, store.error("schema_version", "the Redis outbox " .. ns .. " was written by a newer ksms (schema " .. tostring(meta[2]) .. ")")
  end
  return self
end

--- See ksms.outbox.store.
function Store:insert(rows)
  if self.closed then return closed() end
  local args = { self.ns, num(self.now()), tostring(#rows) }
  for _, r in ipairs(rows) do
    args[#args + 1] = r.key
    args[#args + 1] = r.client
    args[#args + 1] = r.message
    args[#args + 1] = r.expires_at and num(r.expires_at) or ""
  end
  local res, err = list_of(eval(self, INSERT, args))
  if not res then return nil, err end
  local out = {}
  for i = 1, #rows do
    local rec = record_of(res[2 * i])
    if not rec then return nil, store.error("io", "the Redis store answered an insert with no record") end
    rec.duplicate = res[2 * i - 1] == 1
    out[i] = rec
  end
  return out
end

--- See ksms.outbox.store.
function Store:get(key)
  if self.closed then return closed() end
  local res, err = call(self, "HGETALL", self.ns .. ":r:" .. key)
  if res == nil then return nil, err end
  return record_of(res)
end

--- See ksms.outbox.store.
function Store:update(key, from, to, fields, opts)
  if self.closed then return closed() end
  local set = store.check_update(from, to)
  store.check_fields(fields)
  local fence = opts and opts.fence
  if fence ~= nil and (type(fence) ~= "table" or type(fence.key) ~= "string" or type(fence.value) ~= "string") then
    misuse("ksms.outbox: update's fence is { key = a Redis key, value = string }")
  end
  local args = { self.ns, key, to, opts and opts.owner or "", num(self.now()),
    fence and fence.key or "", fence and fence.value or "" }
  local list = {}
  for s in pairs(set) do list[#list + 1] = s end
  args[#args + 1] = tostring(#list)
  for _, s in ipairs(list) do args[#args + 1] = s end
  for k, v in pairs(fields or {}) do
    args[#args + 1] = k
    if v == false then args[#args + 1] = "\0"
    elseif k == "error" then args[#args + 1] = store.encode_error(v) or "\0"
    elseif type(v) == "number" then args[#args + 1] = num(v)
    else args[#args + 1] = v end
    if k == "code" then
      args[#args + 1] = "code_t"
      args[#args + 1] = type(v) == "number" and "n" or "\0"
    end
  end
  local res, err = eval(self, UPDATE, args)
  if res == nil then return nil, err end
  if res == 2 then return false, "fenced" end
  return res == 1
end

--- See ksms.outbox.store.
function Store:iterate(q)
  if self.closed then return closed end
  q = q or {}
  local zset = q.state and ("st:" .. q.state) or "all"
  local since, left, page, pos, done = q.since or 0, q.limit, {}, 1, false
  return function()
    if left and left <= 0 then return nil end
    while true do
      local r = page[pos]
      if r then
        pos = pos + 1
        if left then left = left - 1 end
        return r
      end
      if done then return nil end
      local res, err = list_of(eval(self, PAGE, { self.ns, zset, num(since), tostring(_M.PAGE), q.client or "" }))
      if not res then done = true; return nil, err end
      local last = tonumber(res[1])
      if not last or last <= since then done = true end
      since = last or since
      page, pos = {}, 1
      for i = 2, #res do page[#page + 1] = record_of(res[i]) end
    end
  end
end

--- See ksms.outbox.store.
function Store:counts()
  if self.closed then return closed() end
  local args = { self.ns }
  for _, s in ipairs(states.names) do args[#args + 1] = s end
  local res, err = list_of(eval(self, COUNTS, args))
  if not res then return nil, err end
  local n = {}
  for i, s in ipairs(states.names) do n[s] = tonumber(res[i]) or 0 end
  return n
end

--- See ksms.outbox.store.
function Store:meta_get(name)
  if self.closed then return closed() end
  local v, err = call(self, "HGET", self.ns .. ":meta", name)
  if v == nil and err then return nil, err end
  return type(v) == "string" and v or nil
end

--- See ksms.outbox.store.
function Store:meta_set(name, value)
  if self.closed then return closed() end
  local v, err = call(self, "HSET", self.ns .. ":meta", name, tostring(value))
  if v == nil then return nil, err end
  return true
end

-- ARGV: ns, client .. '\0' .. provider_id. The record's fields, or {}:
-- one round trip (a fleet's holder looks up every pushed report).
local FIND_REF = [[
local k = redis.call('HGET', ARGV[1] .. ':ref', ARGV[2])
if not k then return {} end
return redis.call('HGETALL', ARGV[1] .. ':r:' .. k)
]]

--- See ksms.outbox.store.
function Store:find_ref(client, provider_id)
  if self.closed then return closed() end
  local res, err = list_of(eval(self, FIND_REF, { self.ns, client .. "\0" .. tostring(provider_id) }))
  if not res then return nil, err end
  if #res == 0 then return nil end
  local rec = record_of(res)
  if not rec or rec.client ~= client or rec.provider_id ~= provider_id then return nil end
  return rec
end

--- See ksms.outbox.store.
function Store:claim(client, owner, limit, now)
  if self.closed then return closed() end
  local res, err = list_of(eval(self, CLAIM, { self.ns, client, owner, tostring(limit), num(now), store.EXPIRED_ERROR }))
  if not res then return nil, err end
  local got = {}
  for i = 2, #res do got[#got + 1] = record_of(res[i]) end
  return got, tonumber(res[1]) or 0
end

local function recover(self, owner, mode)
  if self.closed then return closed() end
  local res, err = list_of(eval(self, RECOVER, { self.ns, owner, mode, num(self.now()), store.RECOVERED_CODE,
    store.RECOVERED_ERROR }))
  if not res then return nil, err end
  return { maybe_sent = tonumber(res[1]) or 0, released = tonumber(res[2]) or 0 }
end

--- See ksms.outbox.store.
function Store:release(owner)
  local r, err = recover(self, owner, "release")
  if not r then return nil, err end
  return r.released
end

--- See ksms.outbox.store.
function Store:recover(owner)
  return recover(self, owner, "recover")
end

--- See ksms.outbox.store.
function Store:owners()
  if self.closed then return closed() end
  local res, err = list_of(call(self, "SMEMBERS", self.ns .. ":owners"))
  if res == nil then return nil, err end
  local out = {}
  for _, o in ipairs(res) do if type(o) == "string" then out[#out + 1] = o end end
  sort(out)
  return out
end

--- store:renew(owner, ttl) -> true | nil, err: the owner's lease, live for
-- ttl seconds more. The worker renews its own while it runs; an owner
-- that took a lease and let it lapse is dead (is_dead), on any machine.
-- @tparam string owner
-- @tparam number ttl seconds
function Store:renew(owner, ttl)
  if self.closed then return closed() end
  local ms = tostring(floor(ttl * 1000 + 0.5))
  local res, err = eval(self, "redis.call('SET', ARGV[1] .. ':lease:' .. ARGV[2], '1', 'PX', ARGV[3]) "
    .. "redis.call('SADD', ARGV[1] .. ':leased', ARGV[2]) return 1", { self.ns, owner, ms })
  if not res then return nil, err end
  return true
end

--- store:is_dead(owner) -> true | false | nil: true when the owner took a
-- lease that lapsed, false while its lease lives, nil when it never took
-- one (the worker then judges by its pid, on this host only) or when the
-- store cannot say.
-- @tparam string owner
function Store:is_dead(owner)
  if self.closed then return nil end
  local res = eval(self, "if redis.call('EXISTS', ARGV[1] .. ':lease:' .. ARGV[2]) == 1 then return 0 end "
    .. "return redis.call('SISMEMBER', ARGV[1] .. ':leased', ARGV[2]) + 1", { self.ns, owner })
  if res == 0 then return false elseif res == 2 then return true end
  return nil
end

--- Closes the store: every call after returns nil, err (code "closed").
-- The records stay in Redis.
function Store:close()
  self.closed = true
  self.h:close()
  return true
end

return _M
