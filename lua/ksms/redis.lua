--- ksms.redis: a small Redis client over the socket adapters of the OneShot
-- driver (ksms.oneshot.sockets.core, .luasocket, .cosocket), with the core's
-- RESP codec (core.resp_encode, core.resp_reader: hiredis's reader) doing
-- every byte of the protocol. One code path, whatever the socket.
--
--   local redis = require "ksms.redis"
--   local conn, err = redis.connect{ url = "redis://127.0.0.1:6379/0" }
--   conn:call("SET", "k", "v")            --> "OK"
--   conn:pipeline{ { "INCR", "n" }, { "GET", "n" } } --> { 1, "1", n = 2 }
--   conn:eval("return KEYS[1]", { "k" }, {})         --> "k"
--   conn:close()
--
-- Replies: bulk and status strings as Lua strings, integers as numbers, a
-- nil reply as core.resp_null (a NULL light userdata, the same value as
-- cjson.null), arrays as { n = count, ... }. From call and eval a server
-- error is nil, err (category "server", or "auth" for NOAUTH/WRONGPASS;
-- code its first word: "ERR", "WRONGTYPE", ...); inside a pipeline's list
-- and inside arrays it stays a value { err = "ERR ..." }. A broken
-- connection is nil, err (category "network" or "timeout", retryable,
-- maybe_sent = true when the command may have been written); the
-- connection is closed then, as its replies can no longer be matched.
-- The password never appears in an error or in tostring(conn).
-- @module ksms.redis
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"

local setmetatable, type, tostring, tonumber, require = setmetatable, type, tostring, tonumber, require
local select, pairs = select, pairs
local concat = table.concat
local match, find, floor = string.match, string.find, math.floor
local resp_encode, resp_reader, monotonic = core.resp_encode, core.resp_reader, core.monotonic
local new_error, misuse, check_options = errors.new, errors.misuse, errors.check_options

local _M = { _VERSION = "0.2.0", null = core.resp_null }

local ADAPTERS = {
  core = "ksms.oneshot.sockets.core",
  luasocket = "ksms.oneshot.sockets.luasocket",
  cosocket = "ksms.oneshot.sockets.cosocket",
}

local OPTIONS = { url = "string", socket = "string", connect_timeout = "number",
  read_timeout = "number", password = "string", max_bytes = "number" }

-- Server errors a later retry may get past (the server is busy or loading).
local RETRYABLE = { LOADING = true, BUSY = true, TRYAGAIN = true, MASTERDOWN = true,
  CLUSTERDOWN = true }
local AUTH = { NOAUTH = true, WRONGPASS = true, NOPERM = true }

--- parse_url(url) -> { host, port, db, password } or nil, reason.
-- redis://[:password@]host[:port][/db]; port 6379 and db 0 by default.
-- @tparam string url
-- @return the parts, or nil and why the URL is not one
function _M.parse_url(url)
  local rest = match(url, "^redis://(.*)$")
  if not rest then return nil, "the URL must start with redis://" end
  local password
  local at = find(rest, "@[^@]*$")
  if at then
    local userinfo = rest:sub(1, at - 1)
    rest = rest:sub(at + 1)
    password = match(userinfo, "^[^:]*:(.*)$") or userinfo
    if password == "" then password = nil end
  end
  local hostport, db = match(rest, "^([^/]*)/?(%d*)$")
  if not hostport then return nil, "the database must be a number (redis://host:port/DB)" end
  local host, port = match(hostport, "^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = match(hostport, "^([^:]+):?(%d*)$") end
  if not host then return nil, "no host in the URL" end
  port = port ~= "" and tonumber(port) or 6379
  if port < 1 or port > 65535 then return nil, "port out of range" end
  return { host = host, port = port, db = db ~= "" and tonumber(db) or 0, password = password }
end

local C = {}
C.__index = C

local function where(self) return self.host .. ":" .. self.port end

-- A socket failure as a ksms error; the connection is dropped.
local function net_error(self, err, what, maybe_sent)
  if self.sock then self.sock:close(); self.sock = nil end
  if self.reader then self.reader:close(); self.reader = nil end
  local e
  if type(err) == "table" and errors.is(err) then
    e = new_error { category = err.category == "timeout" and "timeout" or "network",
      code = err.code or "network", provider = "redis", retryable = true,
      message = "redis " .. where(self) .. ": " .. what .. ": " .. tostring(err.message) }
  elseif err == "timeout" then
    e = new_error { category = "timeout", code = "timeout", provider = "redis", retryable = true,
      message = "redis " .. where(self) .. ": " .. what .. ": timed out" }
  else
    e = new_error { category = "network", code = err == "closed" and "closed" or "network",
      provider = "redis", retryable = true,
      message = "redis " .. where(self) .. ": " .. what .. ": " .. tostring(err) }
  end
  e.maybe_sent = maybe_sent and true or false
  return nil, e
end

-- A server's { err = "CODE message" } as a ksms error.
local function server_error(self, reply)
  local text = reply.err
  local code = match(text, "^(%S+)") or "ERR"
  return new_error { category = AUTH[code] and "auth" or "server", code = code, provider = "redis",
    retryable = RETRYABLE[code] or false, message = "redis " .. where(self) .. ": " .. text }
end

local function is_error(v) return type(v) == "table" and v.err ~= nil and v.n == nil end

-- The reader's protocol error (the server sent what is not RESP, or too
-- much) as the connection's; the connection is dropped.
local function protocol_error(self, err)
  local _, e = net_error(self, "protocol", "read", true)
  e.category, e.code, e.retryable = "protocol", err.code, false
  e.message = "redis " .. where(self) .. ": " .. tostring(err.message)
  return nil, e
end

-- The next count replies, reading as needed, all within read_timeout of
-- the call (a server trickling bytes cannot hold a call longer).
local function read_replies(self, count)
  local out = { n = count }
  local reader, sock = self.reader, self.sock
  local deadline = monotonic() + self.read_timeout
  local got = 0
  while got < count do
    local reply, err = reader:next()
    if err then return protocol_error(self, err) end
    if reply ~= nil then
      got = got + 1
      out[got] = reply
    else
      local left = deadline - monotonic()
      if left <= 0 then return net_error(self, "timeout", "read", true) end
      local data, rerr = sock:receive(65536, left)
      if not data then return net_error(self, rerr, "read", true) end
      local ok, ferr = reader:feed(data)
      if not ok then return protocol_error(self, ferr) end
    end
  end
  return out
end

--- conn:pipeline(commands) -> { reply, ..., n = count } or nil, err
-- Writes every command at once, then reads one reply for each. Server
-- errors stay values ({ err = "..." }) in the list; a connection failure
-- is nil, err (network or timeout, maybe_sent = true).
-- @tparam {{string|number,...},...} commands
-- @return the replies, or nil, err
function C:pipeline(commands)
  if type(commands) ~= "table" then misuse("ksms.redis: pipeline expects a list of commands") end
  local n = #commands
  if n == 0 then return { n = 0 } end
  local parts = {}
  for i = 1, n do
    local cmd = commands[i]
    if type(cmd) ~= "table" then misuse("ksms.redis: pipeline command " .. i .. " is not a list") end
    local ok, bytes = pcall(resp_encode, cmd)
    if not ok then misuse("ksms.redis: command " .. i .. ": " .. tostring(bytes)) end
    parts[i] = bytes
  end
  if not self.sock then
    return nil, new_error { category = "network", code = "closed", provider = "redis",
      retryable = true, message = "redis " .. where(self) .. ": connection closed", maybe_sent = false }
  end
  local ok, err = self.sock:send(concat(parts), self.read_timeout)
  -- Part of the bytes may have left: the server may run the first commands.
  if not ok then return net_error(self, err, "write", true) end
  return read_replies(self, n)
end

--- conn:call(name, ...) -> reply or nil, err
-- One command. A server error is nil, err (category "server", code its
-- first word; "auth" for NOAUTH/WRONGPASS).
-- @tparam string name the command
-- @param ... its arguments (strings or numbers)
-- @return the reply, or nil, err
function C:call(...)
  local cmd = { n = select("#", ...), ... }
  for i = 1, cmd.n do
    local t = type(cmd[i])
    if t ~= "string" and t ~= "number" then
      misuse("ksms.redis: argument " .. i .. " is a " .. t .. " (strings and numbers only)")
    end
  end
  if cmd.n == 0 then misuse("ksms.redis: call needs a command") end
  cmd.n = nil
  local replies, err = self:pipeline { cmd }
  if not replies then return nil, err end
  local reply = replies[1]
  if is_error(reply) then return nil, server_error(self, reply) end
  return reply
end

-- sha1 of a script, as SCRIPT LOAD answered it (per process; scripts are
-- the program's constants, the table is cleared past 256 of them).
local shas, nshas = {}, 0

local function eval_command(name, body, keys, args)
  local cmd = { name, body, #keys }
  for i = 1, #keys do cmd[#cmd + 1] = keys[i] end
  for i = 1, #args do cmd[#cmd + 1] = args[i] end
  return cmd
end

--- conn:eval(script, keys, args) -> reply or nil, err
-- EVALSHA of the script's sha1 (loaded with SCRIPT LOAD the first time),
-- EVAL when the server answers NOSCRIPT (restarted, flushed, another
-- server). Errors as call's.
-- @tparam string script Lua source
-- @tparam[opt] {string,...} keys
-- @tparam[opt] {string|number,...} args
-- @return the reply, or nil, err
function C:eval(script, keys, args)
  if type(script) ~= "string" then misuse("ksms.redis: eval expects the script's source") end
  keys, args = keys or {}, args or {}
  if type(keys) ~= "table" or type(args) ~= "table" then
    misuse("ksms.redis: eval's keys and args are lists")
  end
  local sha = shas[script]
  if not sha then
    local loaded, err = self:call("SCRIPT", "LOAD", script)
    if not loaded then return nil, err end
    if nshas >= 256 then shas, nshas = {}, 0 end
    shas[script], nshas, sha = loaded, nshas + 1, loaded
  end
  local replies, err = self:pipeline { eval_command("EVALSHA", sha, keys, args) }
  if not replies then return nil, err end
  local reply = replies[1]
  if is_error(reply) and match(reply.err, "^NOSCRIPT") then
    replies, err = self:pipeline { eval_command("EVAL", script, keys, args) }
    if not replies then return nil, err end
    reply = replies[1]
  end
  if is_error(reply) then return nil, server_error(self, reply) end
  return reply
end

--- conn:set_read_timeout(seconds) -> the previous read_timeout
-- How long each later call waits for its replies (connect's read_timeout).
-- A blocking command (XREADGROUP ... BLOCK, BLPOP) needs its block time
-- plus a margin: set it for that call, then set the previous one back.
-- @tparam number seconds more than 0
-- @treturn number
function C:set_read_timeout(seconds)
  if type(seconds) ~= "number" or not (seconds > 0) then
    misuse("ksms.redis: set_read_timeout expects seconds (a positive number)")
  end
  local previous = self.read_timeout
  self.read_timeout = seconds
  return previous
end

--- conn:close(): closes the connection (idempotent).
function C:close()
  if self.sock then self.sock:close(); self.sock = nil end
  if self.reader then self.reader:close(); self.reader = nil end
end

--- conn:closed() -> true once closed (by close or after a failure).
function C:closed() return self.sock == nil end

C.__tostring = function(self)
  return "ksms.redis connection redis://" .. where(self) .. "/" .. self.db ..
    (self.sock and "" or " (closed)")
end

--- connect{ url, socket, connect_timeout, read_timeout, password, max_bytes } -> conn or nil, err
-- url redis://[:password@]host[:port][/db] (default redis://127.0.0.1:6379/0);
-- socket "core" (default), "luasocket" or "cosocket" (inside nginx);
-- timeouts in seconds (5 each; read_timeout bounds each call's whole
-- wait for its replies, so a blocking command needs a longer one: see
-- set_read_timeout); password (or the URL's) sent with AUTH;
-- a db other than 0 selected; max_bytes bounds one reply (64 MiB).
-- Unreachable: nil, err (category "network", or "timeout"), never a hang
-- past connect_timeout. A wrong password: category "auth".
-- @tparam table opts
-- @return a connection, or nil, err
function _M.connect(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.redis.connect expects a table of options") end
  check_options("ksms.redis.connect", opts, OPTIONS)
  for k, t in pairs(OPTIONS) do
    if opts[k] ~= nil and type(opts[k]) ~= t then
      misuse("ksms.redis.connect: " .. k .. " must be a " .. t)
    end
  end
  local parts, why = _M.parse_url(opts.url or "redis://127.0.0.1:6379/0")
  if not parts then misuse("ksms.redis.connect: bad url: " .. why) end
  local adapter_name = ADAPTERS[opts.socket or "core"]
  if not adapter_name then
    misuse("ksms.redis.connect: socket must be core, luasocket or cosocket, not " .. tostring(opts.socket))
  end
  local adapter = require(adapter_name)
  local read_timeout = opts.read_timeout or 5
  local self = setmetatable({ host = parts.host, port = parts.port, db = parts.db,
    read_timeout = read_timeout }, C)
  local sock = adapter.new { read_timeout = read_timeout, write_timeout = read_timeout }
  local ok, err = sock:connect(parts.host, parts.port, opts.connect_timeout or 5)
  if not ok then
    sock:close()
    return net_error(self, err, "connect", false)
  end
  self.sock = sock
  self.reader = resp_reader(opts.max_bytes and floor(opts.max_bytes) or nil)
  local password = opts.password or parts.password
  if password then
    local _, aerr = self:call("AUTH", password)
    if aerr then
      self:close()
      if aerr.category == "server" then aerr.category = "auth" end
      return nil, aerr
    end
  end
  if parts.db ~= 0 then
    local _, serr = self:call("SELECT", parts.db)
    if serr then self:close(); return nil, serr end
  end
  return self
end

-- ---- handles: a connection made when needed, and again after it broke ----

-- The nginx phases where a cosocket may be used (not init, init_worker,
-- log, header_filter, body_filter).
local COSOCKET_PHASES = { rewrite = true, server_rewrite = true, access = true, content = true,
  timer = true, ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true }

-- The socket a handle's next connection uses: the option, else a cosocket
-- inside an nginx request or timer (never blocking the worker), else the core's.
local function socket_kind(opt)
  if opt then return opt end
  local ngx = _G.ngx
  if type(ngx) == "table" and type(ngx.get_phase) == "function" and COSOCKET_PHASES[ngx.get_phase()] then
    return "cosocket"
  end
  return "core"
end

local H = {}
H.__index = H

local HANDLE_OPTIONS = { name = "string", keep = "boolean" }
for k, t in pairs(OPTIONS) do HANDLE_OPTIONS[k] = t end

--- handle{ url, socket, connect_timeout, read_timeout, password, max_bytes, name, keep } -> handle
-- A connection made on first use and made again after one broke (a
-- restart, a reset, a timeout), for code that outlives connections: the
-- outbox's Redis store, the fleet's lock, the report stream. h:call,
-- h:eval and h:pipeline answer as a connection's, except that a failure to
-- reach Redis (refused, reset, timed out, unreadable) is category "server",
-- code "unavailable", retryable (maybe_sent kept), its message naming
-- `name` ("the Redis outbox store is unreachable: ..."); a server's answer
-- stays what it is (category server, or auth). socket: as connect's; when
-- nil, a cosocket inside an nginx request or timer and the core's client
-- elsewhere. A cosocket belongs to the request or timer that made it (and
-- its reader light thread keeps that request from ending while it is
-- open), so over cosockets each call has its own connection, closed after
-- it, unless keep = true: the caller then promises that every call comes
-- from one long-lived timer (the fleet's binder), which keeps one.
-- Nothing connects here.
-- @tparam table opts
-- @return a handle
function _M.handle(opts)
  if type(opts) ~= "table" then misuse("ksms.redis.handle expects a table of options") end
  check_options("ksms.redis.handle", opts, HANDLE_OPTIONS)
  local parts, why = _M.parse_url(opts.url or "redis://127.0.0.1:6379/0")
  if not parts then misuse("ksms.redis.handle: bad url: " .. why) end
  if opts.socket ~= nil and not ADAPTERS[opts.socket] then
    misuse("ksms.redis.handle: socket must be core, luasocket or cosocket, not " .. tostring(opts.socket))
  end
  local copts = {}
  for k, v in pairs(opts) do if k ~= "name" and k ~= "keep" then copts[k] = v end end
  return setmetatable({ copts = copts, name = opts.name or "Redis", conn = nil, closed = false,
    keep = opts.keep == true }, H)
end

-- err as the handle's: a server's answer as it is, the rest "unavailable"
-- (and the connection that failed dropped).
local function unavailable(self, err, conn)
  if type(err) == "table" and (err.category == "server" or err.category == "auth") then return nil, err end
  if conn then
    pcall(conn.close, conn)
    if self.conn == conn then self.conn = nil end
  end
  local why = type(err) == "table" and err.message or tostring(err)
  local e = new_error { category = "server", code = "unavailable", retryable = true, provider = "redis",
    message = self.name .. " is unreachable: " .. errors.bound(tostring(why), 200) }
  e.maybe_sent = type(err) == "table" and err.maybe_sent or false
  return nil, e
end

--- h:connection() -> the live connection (made now when there is none), or
-- nil, err; and nil, true when it serves this one call (a cosocket without
-- keep: the caller closes it after the call).
-- @return a connection, or nil, err
function H:connection()
  if self.closed then
    return nil, new_error { category = "server", code = "closed", provider = "redis",
      message = self.name .. ": the handle is closed" }
  end
  local kind = socket_kind(self.copts.socket)
  local one_call = kind == "cosocket" and not self.keep
  if not one_call and self.conn and not self.conn:closed() then return self.conn end
  local copts = {}
  for k, v in pairs(self.copts) do copts[k] = v end
  copts.socket = kind
  local ok, conn, err = pcall(_M.connect, copts)
  if not ok then return unavailable(self, conn) end
  if not conn then return unavailable(self, err) end
  self.kind = kind
  if one_call then return conn, nil, true end
  self.conn = conn
  return conn
end

local function through(self, method, ...)
  local conn, err, one_call = self:connection()
  if not conn then return nil, err end
  local res, cerr = conn[method](conn, ...)
  if one_call then conn:close() end
  if res == nil and cerr ~= nil then return unavailable(self, cerr, conn) end
  return res
end

--- h:call(name, ...): as conn:call, over the handle's connection.
-- @return the reply, or nil, err
function H:call(...) return through(self, "call", ...) end
--- h:eval(script, keys, args): as conn:eval.
-- @return the reply, or nil, err
function H:eval(...) return through(self, "eval", ...) end
--- h:pipeline(commands): as conn:pipeline.
-- @return the replies, or nil, err
function H:pipeline(...) return through(self, "pipeline", ...) end

--- h:set_read_timeout(seconds) -> the previous read_timeout: as a
-- connection's, for this handle's connections from now on.
-- @tparam number seconds more than 0
-- @treturn number
function H:set_read_timeout(seconds)
  if type(seconds) ~= "number" or not (seconds > 0) then
    misuse("ksms.redis: set_read_timeout expects seconds (a positive number)")
  end
  local previous = self.copts.read_timeout or 5
  self.copts.read_timeout = seconds
  if self.conn then self.conn:set_read_timeout(seconds) end
  return previous
end

--- h:close(): closes the connection; later calls are nil, err (idempotent).
function H:close()
  self.closed = true
  if self.conn then pcall(self.conn.close, self.conn); self.conn = nil end
end

H.__tostring = function(self) return "ksms.redis handle (" .. self.name .. ")" end

return _M
