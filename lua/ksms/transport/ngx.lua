--- ksms.transport.ngx: the HTTP transport over OpenResty / lua-nginx-module
-- cosockets (ngx.socket.tcp). Same interface as ksms.transport (request,
-- request_many, close; the same request shapes, responses and error
-- objects), and it never blocks the nginx worker.
--
--   local t = require("ksms.transport.ngx").new(opts)
--   t:request(req) -> res | nil, err
--   t:request_many(reqs [, { concurrency = 8 }]) -> { res | err, ... }
--   t:close()
--
-- opts (all optional): connect_timeout (s, 10), timeout (s, whole request,
-- 30), send_timeout and read_timeout (s, each socket operation; default:
-- what is left of timeout), max_response (bytes, 4 MiB), insecure (true:
-- no TLS certificate or host name check), user_agent, max_connections
-- (idle keep-alive connections kept per host:port and worker, 16),
-- keepalive_timeout (s an idle connection is kept, 60; shortened to the
-- server's "Keep-Alive: timeout=").
--
-- nginx configuration it relies on:
--   lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
--   lua_ssl_verify_depth 4;
-- Certificates are verified by default, against lua_ssl_trusted_certificate
-- only: without it every https request fails with code "tls". The trust
-- store is nginx configuration, so the ca_file option cannot work here and
-- raises. Host names need a `resolver` directive (IP addresses do not).
-- nginx checks the certificate's host names (DNS names, else the CN) and
-- never its IP addresses: an https:// URL with an IP address verifies only
-- when the certificate's CN is that address; otherwise the error says so.
-- Set the trust store at http level: a pooled TLS connection is reused
-- without a new handshake, whichever location reuses it.
--
-- Cosockets exist in rewrite, access and content handlers, timers
-- (ngx.timer.at) and the ssl_certificate / ssl_session_fetch /
-- ssl_client_hello handlers. Anywhere else (init, init_worker, set, the
-- header and body filters, log) new, request and request_many raise,
-- saying which phase and what to do instead.
--
-- ksms's own small HTTP/1.1 client (ksms.transport.http1) is always used,
-- even when lua-resty-http is installed: its prepare() is the one request
-- writer (the libcurl transport hands libcurl the same bytes), the
-- never-resend rule and the error shapes stay in one place, and it needs
-- nothing that Debian does not ship.
-- @module ksms.transport.ngx
-- @alias _M

local http1 = require "ksms.transport.http1"
local errors = require "ksms.errors"

local ngx = ngx -- nil outside nginx: new() says so
local type, pairs, tostring, error, setmetatable, pcall = type, pairs, tostring, error, setmetatable, pcall
local min, floor, huge = math.min, math.floor, math.huge
local byte, find, format = string.byte, string.find, string.format

local _M = { _VERSION = "0.2.0" }

local DEFAULTS = {
  connect_timeout = 10, timeout = 30, max_response = 4 * 1024 * 1024,
  max_connections = 16, keepalive_timeout = 60, concurrency = 8,
}

-- Phases where cosockets (and ngx.thread) work; see lua-nginx-module's
-- NGX_HTTP_LUA_CONTEXT_YIELDABLE. "preread" is the stream module's.
local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
local DIRECTIVE = {
  init = "init_by_lua*", init_worker = "init_worker_by_lua*", set = "set_by_lua*",
  header_filter = "header_filter_by_lua*", body_filter = "body_filter_by_lua*",
  log = "log_by_lua*", balancer = "balancer_by_lua*", exit_worker = "exit_worker_by_lua*",
  ssl_session_store = "ssl_session_store_by_lua*",
}

--- Whether this code runs inside nginx's Lua module.
function _M.in_nginx()
  return type(ngx) == "table" and type(ngx.get_phase) == "function" and type(ngx.socket) == "table"
end

--- nil when cosockets work here, else why not and what to do.
function _M.phase_error()
  if not _M.in_nginx() then
    return "ksms.transport.ngx: not running inside nginx (OpenResty / lua-nginx-module); "
      .. "use the libcurl transport (transport = \"curl\")"
  end
  local phase = ngx.get_phase()
  if YIELDABLE[phase] then return nil end
  return format("ksms: cannot send from nginx's %s phase (%s): cosockets do not work there, "
    .. "and the libcurl transport would block the whole worker. Create the client and send "
    .. "in a rewrite, access or content handler, or in a timer started from here: "
    .. "ngx.timer.at(0, function() ... end). (transport = \"curl\" forces libcurl, blocking.)",
    tostring(phase), DIRECTIVE[phase] or (tostring(phase) .. " handler"))
end

local function check_phase(level)
  local why = _M.phase_error()
  if why then error(why, level + 1) end
end

local OPT_KEYS = {
  connect_timeout = "seconds", timeout = "seconds", send_timeout = "seconds",
  read_timeout = "seconds", keepalive_timeout = "seconds", max_response = "whole",
  max_connections = "whole", insecure = "boolean", user_agent = "string",
  ca_file = "string", proxy = "string",
}

local T = {}
T.__index = T

--- new(opts) -> transport; raises outside a cosocket phase or on bad opts.
function _M.new(opts)
  check_phase(2)
  opts = opts or {}
  if type(opts) ~= "table" then error("ksms.transport.ngx: opts must be a table", 2) end
  for k, v in pairs(opts) do
    local want = OPT_KEYS[k]
    if not want then error("ksms.transport.ngx: unknown option '" .. tostring(k) .. "'", 2) end
    local ok
    if want == "seconds" then ok = type(v) == "number" and v > 0 and v <= 1e7
    elseif want == "whole" then ok = type(v) == "number" and v >= 1 and v == floor(v)
    else ok = type(v) == want end
    if not ok then error(format("ksms.transport.ngx: option %s must be a %s", k,
      want == "seconds" and "number of seconds > 0" or want == "whole" and "whole number >= 1" or want), 2) end
  end
  if opts.ca_file then
    -- The trust store of cosockets is nginx configuration, per location.
    error("ksms.transport.ngx: ca_file cannot be set per transport inside nginx; trust the CA with "
      .. "`lua_ssl_trusted_certificate <file>;` in nginx.conf (http level) instead", 2)
  end
  if opts.proxy and opts.proxy ~= "" then
    error("ksms.transport.ngx: proxy is not supported inside nginx", 2)
  end
  return setmetatable({
    connect_timeout = opts.connect_timeout or DEFAULTS.connect_timeout,
    timeout = opts.timeout or DEFAULTS.timeout,
    send_timeout = opts.send_timeout, read_timeout = opts.read_timeout,
    max_response = opts.max_response or DEFAULTS.max_response,
    max_connections = opts.max_connections or DEFAULTS.max_connections,
    keepalive_timeout = opts.keepalive_timeout or DEFAULTS.keepalive_timeout,
    insecure = opts.insecure == true,
    user_agent = opts.user_agent or ("ksms/" .. require("ksms.core")._VERSION),
  }, T)
end

local function open(self)
  if self.closed then error("ksms.transport.ngx: the transport is closed", 3) end
  check_phase(3)
end

-- The error object of the interface. detail is the cosocket's own words
-- ("connection refused", "timeout", ...), never a header or a body.
local function fail(category, code, maybe_sent, what, detail)
  return nil, errors.new {
    category = category, code = code, maybe_sent = maybe_sent,
    retryable = (category == "network" or category == "timeout") and not maybe_sent,
    message = detail and (what .. " (" .. tostring(detail) .. ")") or what,
    provider = "ksms",
  }
end

-- Seconds to cosocket milliseconds; never 0, which means nginx's default
-- (lua_socket_*_timeout, 60 s), not "no time left".
local function ms(s)
  local v = floor(s * 1000 + 0.5)
  return v < 1 and 1 or v
end

-- Whether host is an IP address literal (parse_url keeps IPv6's brackets).
local function is_ip(host)
  return find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or byte(host) == 91 -- "["
end

-- nginx verifies a peer's name with X509_check_host only.
local IP_HINT = "nginx matches a certificate against host names only (its DNS names, else its CN), "
  .. "never against IP addresses, so an IP address in subjectAltName reads as a host mismatch; "
  .. "use an https:// URL with a host name the certificate names"

-- What a dead connection means once the request may have left.
local RECV_FAIL = {
  timeout = { "timeout", "timeout", "timed out after the request was sent" },
  empty = { "network", "recv", "the connection closed after the request was sent, before any answer" },
  recv = { "network", "recv", "the connection failed while waiting for the response" },
  protocol = { "protocol", "protocol", "malformed HTTP response" },
  too_large = { "protocol", "too_large", "response too large" },
}

-- A connected (and, for https, verified) socket, or nil, err. Nothing of
-- the request has been written yet: every error here has maybe_sent false.
local function connect(self, p, ct, send_t, read_t)
  local sock = ngx.socket.tcp()
  sock:settimeouts(ms(ct), ms(min(send_t, p.timeout)), ms(min(read_t, p.timeout)))
  -- One pool per host:port and TLS mode, so an unverified connection is
  -- never handed to a verifying transport.
  local pool = format("ksms:%s:%d%s", p.host, p.port, p.tls and (self.insecure and ":tls-insecure" or ":tls") or "")
  local ok, err = sock:connect(p.host, p.port, { pool = pool, pool_size = self.max_connections })
  if not ok then
    if err == "timeout" then return fail("timeout", "timeout", false, "timed out before the request was sent", "connect") end
    if find(err, "resolv", 1, true) or find(err, "not found", 1, true) then
      return fail("network", "dns", false, "name lookup failed (inside nginx this needs a `resolver` directive)", err)
    end
    return fail("network", "connect", false, format("could not connect to %s:%d", p.host, p.port), err)
  end
  -- A pooled TLS connection keeps its session: no new handshake.
  if p.tls and sock:getreusedtimes() == 0 then
    -- lua-resty-core 0.1.25 (Debian 12) raises "assertion failed!"
    -- (socket.lua:244) instead of returning nil, err when the certificate
    -- check fails after the handshake itself said done: by timing, in 8%
    -- to half of the failed verifications.
    local done, sess, herr = pcall(sock.sslhandshake, sock, nil, p.host, not self.insecure)
    if not done then sess, herr = nil, "the handshake or the certificate check failed" end
    if not sess then
      sock:close()
      herr = herr or "handshake failed"
      if herr == "timeout" then
        return fail("timeout", "timeout", false, "timed out before the request was sent", "TLS handshake")
      end
      local what = "TLS failure (is the CA in lua_ssl_trusted_certificate?)"
      if is_ip(p.host) then
        if not done then
          what = "TLS failure (is the CA in lua_ssl_trusted_certificate? and with an IP address: " .. IP_HINT .. ")"
        elseif find(herr, "host mismatch", 1, true) then
          what = "TLS failure: " .. IP_HINT
        end
      end
      return fail("network", "tls", false, what, herr)
    end
  end
  return sock
end

-- Back to the pool when the response allows it, else closed.
local function release(self, sock, res, keep, p)
  if keep and not p.close then
    local idle = self.keepalive_timeout
    local server = http1.keepalive_timeout(res.headers)
    if server then idle = min(idle, server - 1) end
    if idle > 0 and sock:setkeepalive(ms(idle), self.max_connections) then return end
  end
  sock:close()
end

-- One exchange on a pooled or fresh connection. Never resends: once the
-- first byte may have been written, any failure is final (maybe_sent), even
-- on a pooled connection the server had just closed (as the libcurl one).
function T:_exchange(p)
  if p.err then return nil, p.err end
  ngx.update_time()
  local deadline = ngx.now() + p.timeout
  local send_t, read_t = self.send_timeout or huge, self.read_timeout or huge
  local ct = min(p.connect_timeout, p.timeout)
  local sock, err = connect(self, p, ct, send_t, read_t)
  if not sock then return nil, err end

  -- Each socket operation gets what is left of the total timeout.
  local function budget()
    local t = deadline - ngx.now()
    if t > 0 then sock:settimeouts(ms(ct), ms(min(send_t, t)), ms(min(read_t, t))) end
    return t > 0
  end
  if not budget() then
    sock:close()
    return fail("timeout", "timeout", false, "timed out before the request was sent")
  end
  local sent, werr = sock:send(p.body and { p.head, p.body } or p.head)
  if not sent then
    sock:close()
    if werr == "timeout" then return fail("timeout", "timeout", true, "timed out while sending the request") end
    return fail("network", "send", true, "sending the request failed; not resent, the server may have acted on it", werr)
  end

  local reader = http1.reader(function(max)
    if not budget() then return nil, "timeout" end
    return sock:receiveany(min(max, 65536))
  end)
  local res, keep, detail = http1.read_response(reader, { max_response = self.max_response, head = p.method == "HEAD" })
  if not res then
    sock:close()
    local f = RECV_FAIL[keep] or RECV_FAIL.recv -- keep is the failure's code here
    return fail(f[1], f[2], true, f[3], detail)
  end
  release(self, sock, res, keep, p)
  return res
end

local MANY_OPTIONS = { concurrency = true, on_start = true, on_done = true }

--- transport:request(req) -> res | nil, err
function T:request(req)
  open(self)
  return self:_exchange(http1.prepare(req, self, 0))
end

--- transport:request_many(reqs [, { concurrency = 8, on_start, on_done }]) -> list in order.
-- Light threads (ngx.thread.spawn) pull the next request as one ends.
-- on_start(i) is called just before request i is sent (false exactly: it
-- is not, and its outcome is a `cancelled` error; a positive number d: not
-- yet, this light thread sleeps d seconds and asks again), on_done(i, res | err)
-- as soon as its outcome is known; as in the libcurl transport, the first
-- raise of either stops new requests, lets the running ones end (their
-- on_done still called) and is raised at the end.
function T:request_many(reqs, opts)
  open(self)
  if type(reqs) ~= "table" then error("ksms.transport.ngx: request_many needs a list of requests", 2) end
  local conc, on_start, on_done = DEFAULTS.concurrency, nil, nil
  if opts ~= nil then
    if type(opts) ~= "table" then error("ksms.transport.ngx: request_many options must be a table", 2) end
    for k in pairs(opts) do
      if not MANY_OPTIONS[k] then error("ksms.transport.ngx: unknown request_many option '" .. tostring(k) .. "'", 2) end
    end
    local c = opts.concurrency
    if c ~= nil then
      if type(c) ~= "number" or c ~= floor(c) or c < 1 or c > 1e6 then
        error("ksms.transport.ngx: concurrency must be a whole number >= 1", 2)
      end
      conc = c
    end
    on_start, on_done = opts.on_start, opts.on_done
    if on_start ~= nil and type(on_start) ~= "function" then error("ksms.transport.ngx: on_start must be a function", 2) end
    if on_done ~= nil and type(on_done) ~= "function" then error("ksms.transport.ngx: on_done must be a function", 2) end
  end
  -- Every request is checked before any is sent.
  local n, preps, out = #reqs, {}, {}
  for i = 1, n do preps[i] = http1.prepare(reqs[i], self, i) end
  local nxt, failure = 0, nil
  local function done(i, o)
    out[i] = o
    if on_done then
      local ok, e = pcall(on_done, i, o)
      if not ok then failure = failure or e end
    end
  end
  local function worker()
    while not failure do
      nxt = nxt + 1
      local i = nxt
      if i > n then return end
      local go = true
      while on_start do
        local ok, r = pcall(on_start, i)
        if not ok then failure = failure or r; return end
        if type(r) == "number" and r > 0 then
          -- Not yet (ksms.client's rate): ask again then; the other
          -- light threads go on meanwhile. At least 1 ms: nginx rounds a
          -- shorter sleep to ngx.sleep(0).
          ngx.sleep(r < 0.001 and 0.001 or (r > 60 and 60 or r))
          if failure then return end
        else
          go = r ~= false
          break
        end
      end
      if not go then
        done(i, errors.new { category = "cancelled", code = "cancelled", provider = "ksms", retryable = false,
          maybe_sent = false, message = "not sent: the caller's on_start returned false" })
      else
        local ok, res, err = pcall(self._exchange, self, preps[i])
        if not ok then failure = failure or res; return end
        done(i, res or err)
      end
    end
  end
  conc = min(conc, n)
  if conc <= 1 then
    worker()
  else
    local threads = {}
    for k = 1, conc do threads[k] = ngx.thread.spawn(worker) end
    for k = 1, conc do
      local ok, werr = ngx.thread.wait(threads[k])
      if not ok then failure = failure or werr end
    end
  end
  if failure then error(failure, 0) end
  return out
end

--- Idle connections stay in nginx's per-worker pool (they are nginx's, not
-- this object's) and close after keepalive_timeout. Idempotent.
function T:close()
  self.closed = true
end

T.__close = T.close

function T:__tostring()
  return "ksms.transport.ngx (" .. (self.closed and "closed" or "open") .. ")"
end

_M.kind = "ngx"

return _M
