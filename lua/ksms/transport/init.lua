--- ksms.transport: the HTTP transport interface every provider adapter uses,
-- and the default transport (libcurl, ksms.transport.curl).
--
--   local transport = require("ksms.transport").new(opts)
--
-- A transport is an object with three methods. Another implementation (the
-- OpenResty cosocket transport ksms.transport.ngx, a test double) replaces
-- libcurl by offering the same methods with the same shapes.
--
-- transport:request(req) -> res | nil, err
--   req = {
--     method  = "GET" | "POST" | ...  upper-case letters; default GET, or
--                                     POST when a body is given
--     url     = "http://..." | "https://..."            (required)
--     headers = { ["Name"] = "value", ... }  or  { {"Name", "value"}, ... }
--               (the list form keeps order and allows repeats; numbers are
--               converted; Content-Length, Transfer-Encoding and Expect are
--               the transport's)
--     -- at most one of:
--     body      = "bytes"        sent as is; no Content-Type unless given
--     form      = { {"name", "value"}, ... }   application/x-www-form-urlencoded,
--                 in the given order, WHATWG encoding (see core.urlencode_form)
--     multipart = { part, ... }  multipart/form-data; part is
--                 { name =, value = "text" }
--                 { name =, file = "/path" [, filename =] [, content_type =] }
--                 { name =, data = "bytes" [, filename =] [, content_type =] }
--     boundary  = "..."          multipart only: a fixed boundary (tests)
--     timeout         = seconds  total for this request (overrides opts)
--     connect_timeout = seconds
--   }
--   res = { status = 200, headers = { ["content-type"] = "...", ... }, body = "...",
--           raw_headers = "<the header lines as received>" }
--     (the libcurl transport builds res.headers from raw_headers the first
--     time it is read; another transport may build it at once)
--     header names lowercased, a repeated header joined with ", ", only the
--     final response's headers (not a 100 Continue's), no trailers. Any
--     status is a response: a 500 is res.status == 500, not an error.
--
-- transport:request_many(reqs [, { concurrency = 8 }]) -> list
--   Same length and order as reqs; each entry is a res or an err. At most
--   `concurrency` requests are in flight, the next one starting as one ends.
--   Returns when every request has ended (each within its own timeouts).
--   Streaming options (both transports): on_start(i) just before request i
--   is sent (false exactly: it is not, its outcome a `cancelled` error; a
--   positive number d: not yet, ask again in d seconds while the requests
--   in flight go on: ksms.client's rate option paces so, and a transport
--   of one's own must do the same for that option to hold), and
--   on_done(i, res | err) as soon as request i's outcome is known.
--
-- transport:close()
--   Releases the connections; idempotent. Also runs on garbage collection
--   and, in Lua 5.4, for `local t <close> = ...`. A closed transport raises.
--
-- Both transports write a request with ksms.transport.http1.prepare (the
-- libcurl one hands libcurl its exact head and body): the same bytes.
--
-- Errors. A malformed req (wrong types, two bodies, a bad method, a missing
-- or non-http(s) url, CR/LF in a header) raises before anything is sent.
-- Runtime failures return nil, err where err carries the ksms.errors
-- metatable and
--   category    "timeout" | "network" | "protocol" | "invalid_input"
--   code        "timeout" (connect or total), "dns", "connect" (refused,
--               unreachable), "tls" (handshake, certificate), "send",
--               "recv" (reset, closed, empty reply), "protocol" (malformed
--               HTTP, conflicting Content-Length values), "too_large" (body
--               over max_response; headers over 256 KiB counting every 1xx
--               answer's; more than 32 interim 1xx answers; a header line
--               over 64 KiB (nginx) or 100 KiB (libcurl); inside nginx, a
--               chunked body whose framing outweighs it, as millions of
--               one-byte chunks), "file" (a multipart file that cannot be
--               read; nothing was sent)
--   maybe_sent  false only when no byte of the request can have reached
--               the server (DNS, connect, TLS handshake, connect timeout);
--               true otherwise: the server may have acted on it
--   retryable   true for network/timeout errors with maybe_sent false
--   message     readable; never a header value or a body
--   provider    "ksms"
-- A transport never resends a request on its own (the libcurl one refuses
-- libcurl's internal retry for anything but a bodyless GET/HEAD).
--
-- opts for new() (all optional): connect_timeout (s, 10), timeout (s per
-- request, 30), max_response (bytes, 4 MiB), insecure (true turns TLS
-- certificate and host name verification OFF), ca_file (CA bundle to trust
-- instead of the system's), user_agent ("ksms/<version>"), max_connections
-- (connections kept alive, 16), proxy (none by default; the environment's
-- proxy variables are ignored), kind (below).
--
-- Which transport. kind = "curl" is libcurl (ksms.transport.curl); kind =
-- "ngx" is nginx cosockets (ksms.transport.ngx: its own options, no
-- ca_file, see there). Without kind: "ngx" when running inside nginx's Lua
-- module (OpenResty), "curl" anywhere else. Inside nginx the default is
-- never libcurl, which would block the worker: in a phase without
-- cosockets (init, init_worker, set, filters, log) new() raises, saying
-- what to do; only an explicit kind = "curl" gets libcurl there.
-- @module ksms.transport
-- @alias _M

local type, pairs, tostring, error, require = type, pairs, tostring, error, require

local _M = { _VERSION = "0.2.0" }

local KINDS = { curl = "ksms.transport.curl", ngx = "ksms.transport.ngx" }

--- The kind new() picks without one: "ngx" inside nginx, else "curl".
function _M.default_kind()
  return require("ksms.transport.ngx").in_nginx() and "ngx" or "curl"
end

--- A transport: libcurl outside nginx, cosockets inside.
-- @tparam[opt] table opts kind ("curl", "ngx"), timeout, insecure, ca_file, ...
-- @return a transport
function _M.new(opts)
  local kind, rest = nil, opts
  if type(opts) == "table" and opts.kind ~= nil then
    kind, rest = opts.kind, {}
    for k, v in pairs(opts) do if k ~= "kind" then rest[k] = v end end
  end
  if kind ~= nil and not KINDS[kind] then
    error("ksms.transport: kind must be \"ngx\" or \"curl\", got " .. tostring(kind), 2)
  end
  return require(KINDS[kind or _M.default_kind()]).new(rest)
end

return _M
