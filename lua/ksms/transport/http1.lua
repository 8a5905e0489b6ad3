--- ksms.transport.http1: HTTP/1.1 without I/O, the one request writer of
-- both transports. prepare() checks a request and writes its bytes (request
-- line, headers, body); the libcurl transport (csrc/http.c) hands libcurl
-- exactly those lines and that body, and the cosocket transport
-- (ksms.transport.ngx) writes them itself. It also reads a response through
-- a buffered reader over any "give me more bytes" function (the cosocket
-- transport's reader; libcurl reads its own).
--
--   local p = http1.prepare(req, defaults [, index])   -- raises on a bad req
--   p.scheme, p.host, p.port, p.tls, p.url, p.target, p.head (request line
--   and headers, ending in an empty line), p.body (nil when the request has
--   none), p.timeout, p.connect_timeout, p.close (the caller asked for
--   Connection: close), p.method, p.err (a multipart file could not be read:
--   send nothing, return nil, p.err)
--   p.head .. (p.body or "") is every byte that goes on the wire.
--
--   local r = http1.reader(fill)    -- fill(max) -> bytes | nil, err
--   local res, keep = http1.read_response(r, { max_response =, head = })
--   -- or nil, code, detail; code: "empty" (closed before any byte),
--   -- "recv", "timeout", "protocol", "too_large"
--
-- defaults: { timeout =, connect_timeout = (seconds; nil leaves p.timeout
-- nil), user_agent =, who = (the prefix of misuse messages, default
-- "ksms.transport") }.
-- Bodies come from the C core's encoders (core.urlencode_form,
-- core.multipart_body).
-- @module ksms.transport.http1
-- @alias _M

local core = require "ksms.core"

local type, pairs, ipairs, tostring, tonumber, error =
  type, pairs, ipairs, tostring, tonumber, error
local byte, find, sub, lower, format, match, gsub =
  string.byte, string.find, string.sub, string.lower, string.format, string.match, string.gsub
local concat, sort = table.concat, table.sort
local ceil, huge = math.ceil, math.huge
local setmetatable = setmetatable

local urlencode_form, multipart_body = core.urlencode_form, core.multipart_body

local _M = { _VERSION = "0.2.0" }

_M.MAX_HEADER_BYTES = 256 * 1024 -- all response header blocks (1xx too), as libcurl's transport
_M.MAX_INTERIM = 32               -- interim (1xx) responses before the final one, as libcurl's transport
local MAX_LINE = 64 * 1024       -- one status, header or chunk-size line
local READ_SIZE = 16 * 1024

-- ---- the request ----------------------------------------------------------

-- Programmer errors name fields and header names, never a value: headers,
-- URLs and bodies may carry keys.
local WHO = "ksms.transport" -- set by prepare() from defaults.who
local function bad(index, why, ...)
  local where = index and index > 0 and (" #" .. index) or ""
  error(format("%s: bad request%s: " .. why, WHO, where, ...), 0)
end

-- A body encoder's misuse (raised by the C core as "ksms.core: why") as
-- this request's misuse.
local function encode(index, fn, a, b)
  local ok, r1, r2 = pcall(fn, a, b)
  if not ok then
    bad(index, "%s", (gsub(tostring(r1), "^ksms%.core: ", "")))
  end
  return r1, r2
end

local REQ_KEYS = { method = true, url = true, headers = true, body = true, form = true,
  multipart = true, boundary = true, timeout = true, connect_timeout = true }

local function seconds(v, field, index, default)
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0 and v <= 1e7) then
    bad(index, "%s must be a number of seconds > 0", field)
  end
  return ceil(v * 1000) / 1000
end

--- scheme://host[:port][/path][?query][#fragment] -> parts, or raises.
function _M.parse_url(url, index)
  if type(url) ~= "string" then bad(index, "url must be a string") end
  if url == "" or find(url, "%z") then bad(index, "url must be a non-empty string without NUL") end
  if find(url, "[%c ]") then bad(index, "url has a space or control character") end
  local scheme, authority, rest = match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  scheme = scheme and lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    bad(index, "url is not an absolute http:// or https:// URL")
  end
  if find(authority, "@", 1, true) then bad(index, "url user information is not supported") end
  local host, port = match(authority, "^(%[[%x:.]+%])(.*)$") -- IPv6 literal
  if not host then host, port = match(authority, "^([^:]+)(.*)$") end
  if not host or (port ~= "" and not match(port, "^:%d+$")) then
    bad(index, "url is not an absolute http:// or https:// URL")
  end
  local default_port = scheme == "https" and 443 or 80
  port = port ~= "" and tonumber(sub(port, 2)) or default_port
  if port < 1 or port > 65535 then bad(index, "url has a bad port") end
  rest = gsub(rest, "#.*$", "")
  if rest == "" then rest = "/" elseif byte(rest) == 63 then rest = "/" .. rest end -- "?"
  host = lower(host)
  return {
    url = url, scheme = scheme, host = host, port = port, tls = scheme == "https", target = rest,
    -- libcurl's Host header: the port only when it is not the scheme's.
    authority = port == default_port and host or (host .. ":" .. port),
  }
end

-- URLs already parsed (a client sends to a few), as parse_url gives them;
-- never handed out: prepare copies the fields.
local URLS, n_urls = {}, 0

local function token(s)
  return not find(s, "[^%w!#$%%&'*+%-.^_`|~]")
end

local OURS = { ["content-length"] = true, ["transfer-encoding"] = true, expect = true }
local NAMES, n_names = {}, 0 -- header names found good -> lowercased
local NONE = setmetatable({}, { __newindex = function() error("ksms.transport.http1: NONE is read-only") end })

-- Checks one header; returns its line.
local function header_line(name, value, index)
  if type(name) ~= "string" then bad(index, "header names must be strings") end
  local vt = type(value)
  if vt == "number" then value = tostring(value)
  elseif vt ~= "string" then bad(index, "header '%s' must have a string value", sub(name, 1, 64)) end
  local lname = NAMES[name]
  if not lname then
    if #name == 0 or #name > 256 then bad(index, "bad header name length") end
    if not token(name) then
      bad(index, "header name '%s' has a character not allowed in a name", sub(name, 1, 64))
    end
    lname = lower(name)
    if OURS[lname] then bad(index, "header '%s' is set by the transport", sub(name, 1, 64)) end
    if n_names >= 256 then NAMES, n_names = {}, 0 end
    NAMES[name], n_names = lname, n_names + 1
  end
  if find(value, "[\r\n%z]") then bad(index, "header '%s' has CR, LF or NUL in its value", sub(name, 1, 64)) end
  -- A value of blanks only is an empty value (RFC 9110 5.5): "Name:".
  if not find(value, "[^ \t]") then return name .. ":", lname end
  return name .. ": " .. value, lname
end

-- The caller's headers as lines (a map is sorted by name, so the order is
-- stable), and which names were given (lowercased).
local function user_headers(h, index)
  if h == nil then return NONE, NONE end
  local lines, given = {}, {}
  if type(h) ~= "table" then bad(index, "headers must be a table") end
  local n, keys = #h, 0
  for _ in pairs(h) do keys = keys + 1 end
  if n > 0 then
    if keys ~= n then bad(index, "headers mix the list and map forms") end
    for i = 1, n do
      local pair = h[i]
      if type(pair) ~= "table" then bad(index, "header %d must be a {name, value} pair", i) end
      local line, lname = header_line(pair[1], pair[2], index)
      if given[lname] ~= nil and lname == "host" then bad(index, "Host given twice") end
      lines[i] = line
      given[lname] = pair[2]
    end
  else
    local names = {}
    for name in pairs(h) do
      if type(name) ~= "string" then bad(index, "header names must be strings") end
      names[#names + 1] = name
    end
    sort(names)
    for i, name in ipairs(names) do
      local line, lname = header_line(name, h[name], index)
      if given[lname] ~= nil and lname == "host" then bad(index, "Host given twice") end
      lines[i] = line
      given[lname] = h[name]
    end
  end
  return lines, given
end

local function boundary_ok(b)
  return type(b) == "string" and #b >= 1 and #b <= 70 and not find(b, "[^%w'()+_,%-./:=?]")
end

local BODY_METHODS = { POST = true, PUT = true, PATCH = true }
local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true, OPTIONS = true }

--- prepare(req, defaults [, index]) -> prepared request (see the header).
-- The head is: the request line, Host (the URL's, or the caller's), then
-- User-Agent and Accept unless the caller gives them, the caller's headers
-- in order (a map sorted by name), Content-Type, Content-Length.
function _M.prepare(req, defaults, index)
  WHO = defaults.who or "ksms.transport"
  if type(req) ~= "table" then bad(index, "table expected, got %s", type(req)) end
  local body, form, multipart = nil, nil, nil
  for k, v in pairs(req) do
    if not REQ_KEYS[k] then
      if type(k) ~= "string" then bad(index, "request has a non-string key") end
      bad(index, "unknown request field '%s'", sub(k, 1, 64))
    end
    if k == "body" then body = v elseif k == "form" then form = v elseif k == "multipart" then multipart = v end
  end
  local url = req.url
  local u = URLS[url]
  if not u then
    u = _M.parse_url(url, index)
    if n_urls >= 256 then URLS, n_urls = {}, 0 end
    URLS[url], n_urls = u, n_urls + 1
  end
  local which = body ~= nil and "body" or nil
  if form ~= nil then
    if which then bad(index, "give only one of body, form, multipart") end
    which = "form"
  end
  if multipart ~= nil then
    if which then bad(index, "give only one of body, form, multipart") end
    which = "multipart"
  end
  local boundary = req.boundary
  if boundary ~= nil then
    if which ~= "multipart" then bad(index, "boundary is only for multipart") end
    if not boundary_ok(boundary) then
      bad(index, "boundary must be 1-70 characters from [A-Za-z0-9'()+_,-./:=?]")
    end
  end
  local method = req.method
  if method == nil then
    method = which and "POST" or "GET"
  elseif not METHODS[method] then
    if type(method) ~= "string" then bad(index, "method must be a string") end
    if #method == 0 or #method > 20 then bad(index, "method must be 1-20 letters") end
    if find(method, "[^A-Z]") then bad(index, "method must be upper-case letters A-Z") end
  end
  if method == "HEAD" and which then bad(index, "a HEAD request has no body") end
  local lines, given = user_headers(req.headers, index)

  local ctype, err
  if which == "body" then
    if type(body) ~= "string" then bad(index, "body must be a string") end
    -- sent as given: no Content-Type unless the caller's
  elseif which == "form" then
    if type(form) ~= "table" then bad(index, "form must be a list of {name, value}") end
    body = encode(index, urlencode_form, form)
    ctype = "application/x-www-form-urlencoded"
  elseif which == "multipart" then
    if given["content-type"] then
      bad(index, "Content-Type is set by multipart (it carries the boundary)")
    end
    if type(multipart) ~= "table" then bad(index, "multipart must be a list of parts") end
    -- A `file` part is read here, before any socket is touched. That is
    -- blocking disk I/O; in nginx prefer `data` parts (ppurio's adapter
    -- already reads its images before planning the request).
    local b, ct_or_err = encode(index, multipart_body, multipart, boundary)
    if not b then
      err = ct_or_err -- invalid_input "file", maybe_sent false: nothing is sent
    end
    body, ctype = b, ct_or_err
  end
  if given["content-type"] then ctype = nil end
  local has_body = which ~= nil or BODY_METHODS[method] or false
  if has_body and not body then body = "" end

  local head
  if not err then
    local host = "Host: " .. u.authority
    if given.host ~= nil then
      -- libcurl sends a Host header right after the request line, wherever
      -- it was given.
      for i = 1, #lines do
        if lower(sub(lines[i], 1, 5)) == "host:" then
          host = table.remove(lines, i)
          break
        end
      end
    end
    head = method .. " " .. u.target .. " HTTP/1.1\r\n" .. host
      .. (given["user-agent"] == nil and ("\r\nUser-Agent: " .. defaults.user_agent) or "")
      .. (given.accept == nil and "\r\nAccept: */*" or "")
      .. (lines[1] and ("\r\n" .. concat(lines, "\r\n")) or "")
      .. (ctype and ("\r\nContent-Type: " .. ctype) or "")
      .. (has_body and ("\r\nContent-Length: " .. #body) or "")
      .. "\r\n\r\n"
  end
  local conn = given.connection
  return {
    url = url, scheme = u.scheme, host = u.host, port = u.port, tls = u.tls,
    target = u.target, authority = u.authority,
    head = head, body = has_body and body or nil, method = method, err = err,
    close = conn ~= nil and find(lower(tostring(conn)), "close", 1, true) ~= nil,
    timeout = seconds(req.timeout, "timeout", index, defaults.timeout),
    connect_timeout = seconds(req.connect_timeout, "connect_timeout", index, defaults.connect_timeout),
  }
end

-- ---- the response ---------------------------------------------------------
--
-- Every parse here takes time linear in its input: no pattern that can
-- backtrack over a run of blanks (such as "(.-)[ \t]*$"), no string grown
-- by appending piece after piece, no copy of the unread buffer per line.

local Reader = {}
Reader.__index = Reader

--- reader(fill): fill(max) returns up to max bytes (at least one), or nil,
-- err ("closed" at the end of the stream, "timeout", anything else).
-- The unread bytes are buf[pos..]: taking a line moves pos, it does not
-- copy what is left.
function _M.reader(fill)
  return setmetatable({ fill = fill, buf = "", pos = 1, got = 0 }, Reader)
end

--- Bytes read from the stream so far (to tell an empty reply from a cut one).
function Reader:received() return self.got end

--- Whether bytes beyond the response are buffered (then the connection is
-- not reused: they belong to nothing we asked for).
function Reader:pending() return self.pos <= #self.buf end

--- The unread bytes, taken out of the buffer.
function Reader:take()
  local rest = sub(self.buf, self.pos)
  self.buf, self.pos = "", 1
  return rest
end

--- Reads up to max body bytes.
-- @tparam integer max
-- @return data, or nil, err
function Reader:read(max)
  local data, err = self.fill(max)
  if not data then return nil, err end
  self.got = self.got + #data
  return data
end

--- One line without its LF (and CR); nil, "too_long" past max bytes.
function Reader:line(max)
  local buf, pos = self.buf, self.pos
  local nl = find(buf, "\n", pos, true)
  local line
  if nl then
    self.pos = nl + 1
    line = sub(buf, pos, nl - 1)
  else
    -- The line goes on past the buffer: its pieces are joined once at the
    -- end (a slow server may send it a byte at a time).
    local parts, have = { self:take() }, #buf - pos + 1
    while not nl do
      if have > max + 1 then return nil, "too_long" end
      local data, err = self:read(READ_SIZE)
      if not data then return nil, err end
      nl = find(data, "\n", 1, true)
      if nl then
        parts[#parts + 1] = sub(data, 1, nl - 1)
        self.buf, self.pos = data, nl + 1
      else
        parts[#parts + 1] = data
        have = have + #data
      end
    end
    line = concat(parts)
  end
  if byte(line, -1) == 13 then line = sub(line, 1, -2) end
  if #line > max then return nil, "too_long" end
  return line
end

--- Exactly n bytes; nil, err, partial when the stream ends first.
function Reader:exact(n)
  local buf, pos = self.buf, self.pos
  if #buf - pos + 1 >= n then
    self.pos = pos + n
    return sub(buf, pos, pos + n - 1)
  end
  local first = self:take()
  local parts, have = { first }, #first
  while have < n do
    local data, err = self:read(n - have)
    if not data then return nil, err, concat(parts) end
    if #data > n - have then -- a fill that ignores max: keep the rest
      self.buf, self.pos = data, n - have + 1
      data = sub(data, 1, n - have)
    end
    parts[#parts + 1] = data
    have = have + #data
  end
  return concat(parts)
end

--- Everything until the stream closes, at most max bytes (nil, "too_large").
function Reader:rest(max)
  local first = self:take()
  local parts, have = { first }, #first
  while true do
    if have > max then return nil, "too_large" end
    local data, err = self:read(READ_SIZE)
    if not data then
      if err == "closed" then return concat(parts) end
      return nil, err
    end
    parts[#parts + 1] = data
    have = have + #data
  end
end

-- s[from..] without its leading and trailing blanks (SP, HT).
local function trim(s, from)
  local first = find(s, "[^ \t]", from)
  if not first then return "" end
  local last = #s
  local b = byte(s, last)
  while b == 32 or b == 9 do
    last = last - 1
    b = byte(s, last)
  end
  return sub(s, first, last)
end
_M.trim = trim

--- Header lines -> { lowercased name = value }, repeats joined with ", ",
-- obs-folded lines unfolded (as the libcurl transport's res.headers).
-- Each name's pieces are joined once at the end: joining on every repeat
-- would copy the value again for each of thousands of repeats.
function _M.parse_headers(lines)
  local pieces, last = {}, nil
  for _, line in ipairs(lines) do
    local first = byte(line)
    if first == 32 or first == 9 then
      if last then
        last[#last + 1] = " "
        last[#last + 1] = trim(line, 1)
      end
    else
      local colon = find(line, ":", 1, true)
      if colon and colon > 1 then
        local name = lower(sub(line, 1, colon - 1))
        local list = pieces[name]
        if list then
          list[#list + 1] = ", "
        else
          list = {}
          pieces[name] = list
        end
        list[#list + 1] = trim(line, colon + 1)
        last = list
      else
        last = nil
      end
    end
  end
  local headers = {}
  for name, list in pairs(pieces) do
    headers[name] = list[2] and concat(list) or list[1]
  end
  return headers
end

--- The body length a Content-Length value gives: n, or nil, why. A list of
-- one number ("5, 5", as a repeated header reads) is that number.
function _M.content_length(value)
  local n, from = nil, 1
  while true do
    local comma = find(value, ",", from, true)
    local v = trim(sub(value, from, comma and comma - 1 or -1), 1)
    if #v == 0 or #v > 15 or find(v, "%D") then return nil, "bad Content-Length" end
    local m = tonumber(v)
    if n and m ~= n then return nil, "conflicting Content-Length values" end
    n = m
    if not comma then return n end
    from = comma + 1
  end
end

-- The last coding of a Transfer-Encoding value, lowercased.
local function last_coding(te)
  local from, comma = 1, find(te, ",", 1, true)
  while comma do
    from = comma + 1
    comma = find(te, ",", from, true)
  end
  return lower(trim(te, from))
end

--- How the body is delimited: "none", "chunked", "close", or "length", n.
-- nil, why for a Content-Length that cannot be trusted. The libcurl
-- transport applies the same Content-Length rules (csrc/http.c).
function _M.framing(status, headers, head_request)
  if head_request or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return "none"
  end
  local te = headers["transfer-encoding"]
  if te then
    -- chunked must be the last coding; anything else runs to the close.
    if last_coding(te) == "chunked" then return "chunked" end
    return "close"
  end
  local cl = headers["content-length"]
  if cl then
    local n, why = _M.content_length(cl)
    if not n then return nil, why end
    return "length", n
  end
  return "close"
end

--- Whether the connection may carry another request after this response.
function _M.keep_alive(minor, headers)
  local conn = headers.connection and lower(headers.connection) or ""
  if find(conn, "close", 1, true) then return false end
  if minor == 0 then return find(conn, "keep-alive", 1, true) ~= nil end
  return true
end

--- The server's idle limit from "Keep-Alive: timeout=N", in seconds.
function _M.keepalive_timeout(headers)
  local ka = headers["keep-alive"]
  local at = ka and find(ka, "timeout", 1, true)
  while at do
    -- anchored at the match: backtracks over this one blank run only
    local n = match(ka, "^[ \t]*=[ \t]*(%d+)", at + 7)
    if n then return tonumber(n) end
    at = find(ka, "timeout", at + 7, true)
  end
  return nil
end

local function fail(reader, err, what)
  if err == "timeout" then return nil, "timeout", what end
  if err == "too_long" or err == "too_large" then return nil, "too_large", what end
  if reader:received() == 0 and err == "closed" then
    return nil, "empty", "the connection closed before any response byte"
  end
  return nil, "recv", what .. ": " .. tostring(err)
end

-- A chunked body may not cost much more to take apart than it brings:
-- its framing (chunk-size lines with their extensions, and CRLFs) may pass
-- MAX_FRAMING bytes only while it stays under 1/FRAMING_RATIO of the body
-- so far. Chunks of a few hundred bytes or more never come near it;
-- millions of one-byte chunks end after about 13,000, as too_large, instead
-- of spending the worker's CPU until the timeout.
local MAX_FRAMING = 64 * 1024
local FRAMING_RATIO = 8

local function read_chunked(r, max)
  local parts, total, framing = {}, 0, 0
  while true do
    local line, err = r:line(MAX_LINE)
    if not line then return fail(r, err, "reading a chunk size") end
    local hex = match(line, "^[ \t]*(%x+)")
    if not hex or #hex > 15 then return nil, "protocol", "bad chunk size line" end
    local size = tonumber(hex, 16)
    if size == 0 then break end
    if total + size > max then return nil, "too_large", "response body over max_response" end
    framing = framing + #line + 4
    if framing > MAX_FRAMING and framing * FRAMING_RATIO > total + size then
      return nil, "too_large", format("chunked framing out of proportion: %d chunks for %d body bytes",
        #parts + 1, total + size)
    end
    local data, rerr = r:exact(size)
    if not data then return fail(r, rerr, "reading a chunk") end
    parts[#parts + 1] = data
    total = total + size
    local crlf, cerr = r:line(2)
    if not crlf then return fail(r, cerr, "reading a chunk") end
    if crlf ~= "" then return nil, "protocol", "chunk not followed by CRLF" end
  end
  -- Trailers: read and dropped (the interface has none).
  local seen = 0
  while true do
    local line, err = r:line(MAX_LINE)
    if not line then return fail(r, err, "reading trailers") end
    if line == "" then break end
    seen = seen + #line + 2
    if seen > _M.MAX_HEADER_BYTES then return nil, "too_large", "response trailers too large" end
  end
  return concat(parts)
end

--- read_response(reader, opts) -> res, keep | nil, code, detail
-- res = { status, headers, body, raw_headers }; keep: the connection can
-- be reused (framed body read whole, no Connection: close).
-- Interim (1xx) responses are skipped, at most MAX_INTERIM of them, and
-- their header bytes count in MAX_HEADER_BYTES with the final one's: an
-- endless stream of them ends as too_large, not at the timeout.
function _M.read_response(r, opts)
  local max = opts.max_response or huge
  local status, minor, lines
  local size, interim = 0, 0 -- header bytes of every response so far
  while true do
    local line, err = r:line(MAX_LINE)
    if not line then return fail(r, err, "reading the status line") end
    local m, code = match(line, "^HTTP/1%.(%d) (%d%d%d)")
    if not m then return nil, "protocol", "malformed HTTP response (no status line)" end
    minor, status = tonumber(m), tonumber(code)
    lines = {}
    size = size + #line + 2
    while true do
      local h, herr = r:line(MAX_LINE)
      if not h then return fail(r, herr, "reading the response headers") end
      size = size + #h + 2
      if size > _M.MAX_HEADER_BYTES then return nil, "too_large", "response headers too large" end
      if h == "" then break end
      lines[#lines + 1] = h
    end
    if status >= 200 or status == 101 then break end
    interim = interim + 1
    if interim > _M.MAX_INTERIM then
      return nil, "too_large", format("more than %d interim (1xx) responses", _M.MAX_INTERIM)
    end
  end
  local headers = _M.parse_headers(lines)
  local how, n = _M.framing(status, headers, opts.head)
  if not how then return nil, "protocol", n end
  local body, err, detail = "", nil, nil
  if how == "length" then
    if n > max then return nil, "too_large", "response body over max_response" end
    local partial
    body, err, partial = r:exact(n)
    if not body then
      return fail(r, err, format("reading the body (%d of %d bytes)", partial and #partial or 0, n))
    end
  elseif how == "chunked" then
    body, err, detail = read_chunked(r, max)
    if not body then return nil, err, detail end
  elseif how == "close" then
    body, err = r:rest(max)
    if not body then
      if err == "too_large" then return nil, "too_large", "response body over max_response" end
      return fail(r, err, "reading the body")
    end
  end
  lines[#lines + 1] = ""
  local res = { status = status, headers = headers, body = body,
    raw_headers = concat(lines, "\r\n") .. "\r\n" }
  local keep = how ~= "close" and status ~= 101 and _M.keep_alive(minor, headers) and not r:pending()
  return res, keep
end

return _M
