-- httpd.lua - a small HTTP/1.1 server on one event loop (non-blocking
-- LuaSocket + socket.select), for fake providers. Many connections at once,
-- keep-alive and pipelining, Content-Length and chunked request bodies,
-- Expect: 100-continue, form parsing (fakes.forms), timers so an answer can
-- wait without holding up other connections, fault injection, and stats.
-- Runs under Lua 5.4 and LuaJIT. It stops when told (server:stop()) or after
-- idle_exit seconds without a request, so a crashed test never leaves it.
--
--   local srv = httpd.new{ port = 0, handler = function(req, res) ... end }
--   res:send(200, { ["Content-Type"] = "application/json" }, body)
--   res:after(200, function() res:send(...) end)  -- answer 200 ms later
--   res:fault("close" | "half" | "garbage" | "hang" [, status, headers, body])
--   res:fault(kind)   -- a hostile answer (fakes.hostile: blank_headers,
--                     -- endless_1xx, tiny_chunks, drip, ...), then close
--   srv:run()
local socket = require "socket"
local forms = require "fakes.forms"
local timer_heap = require "fakes.timer_heap"
local hostile = require "fakes.hostile"

local _M = {}

local MAX_HEAD = 64 * 1024           -- request line + headers
local MAX_BODY = 32 * 1024 * 1024
local READ_CHUNK = 64 * 1024
local SELECT_MAX_WAIT = 0.25         -- seconds; bounds how late the idle check runs

_M.FAULTS = { close = true, half = true, garbage = true, hang = true }
for kind in pairs(hostile.KINDS) do _M.FAULTS[kind] = true end

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Payload Too Large", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

-- Bytes that are not HTTP: a TLS-looking record start, NULs, then junk.
local GARBAGE = "\22\3\1\0\165\0\1\2\255\254 this is not HTTP \0\r\n\r\n"

_M.now = socket.gettime

function _M.build_response(status, headers, body, closing)
  body = body or ""
  local lines = { string.format("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
  local has = {}
  for name, value in pairs(headers or {}) do
    lines[#lines + 1] = name .. ": " .. value
    has[name:lower()] = true
  end
  if not has["content-type"] then lines[#lines + 1] = "Content-Type: text/plain; charset=utf-8" end
  if not has["server"] then lines[#lines + 1] = "Server: ksms-fake" end
  lines[#lines + 1] = "Content-Length: " .. #body
  if closing then lines[#lines + 1] = "Connection: close" end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

---------------------------------------------------------------- parsing

-- Request line and headers. Returns head or nil, status.
local function parse_head(text)
  local first, rest = text:match("^([^\r\n]*)\r?\n?(.*)$")
  local method, target, version = first:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, 400 end
  local headers, list, as_sent = {}, {}, {}
  for line in rest:gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, 400 end
    as_sent[#as_sent + 1] = name -- the exact case, for specs that check it
    name = name:lower()
    list[#list + 1] = { name, value }
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
  -- Absolute-form targets (as sent to a proxy) become origin-form.
  target = target:gsub("^[hH][tT][tT][pP][sS]?://[^/]*", "")
  if target == "" then target = "/" end
  local path, query = target:match("^([^?]*)%??(.*)$")
  local connection = (headers["connection"] or ""):lower()
  local keep_alive
  if version == "1.0" then
    keep_alive = connection:find("keep%-alive") ~= nil
  else
    keep_alive = connection:find("close") == nil
  end
  local head = { method = method, target = target, path = path, query = query,
                 version = version, headers = headers, header_list = list,
                 header_names = as_sent,
                 keep_alive = keep_alive }
  local te = headers["transfer-encoding"]
  if te then
    if not te:lower():find("chunked") then return nil, 501 end
    head.chunked = true
  elseif headers["content-length"] then
    local cl = headers["content-length"]
    if not cl:match("^%d+$") then return nil, 400 end   -- also refuses "5, 6"
    head.length = tonumber(cl)
    if head.length > MAX_BODY then return nil, 413 end
  else
    head.length = 0
  end
  return head
end

-- A chunked body starting at pos of buf: body, position after it; nil when
-- more bytes are needed; false when malformed.
local function decode_chunked(buf, pos)
  local parts, total = {}, 0
  while true do
    local line_end = buf:find("\r\n", pos, true)
    if not line_end then return nil end
    local size_hex = buf:sub(pos, line_end - 1):match("^(%x+)")
    if not size_hex then return false end
    local size = tonumber(size_hex, 16)
    pos = line_end + 2
    if size == 0 then
      while true do                       -- trailers, then the empty line
        local e = buf:find("\r\n", pos, true)
        if not e then return nil end
        if e == pos then return table.concat(parts), e + 2 end
        pos = e + 2
      end
    end
    total = total + size
    if total > MAX_BODY then return false end
    if #buf < pos + size + 1 then return nil end
    parts[#parts + 1] = buf:sub(pos, pos + size - 1)
    if buf:sub(pos + size, pos + size + 1) ~= "\r\n" then return false end
    pos = pos + size + 2
  end
end

---------------------------------------------------------------- responses

local Response = {}
Response.__index = Response

function Response:send(status, headers, body)
  if self.done then return end
  self.done = true
  local conn = self.conn
  local closing = not self.req.keep_alive or conn.server.stopping
  conn:write(_M.build_response(status, headers, body, closing))
  conn:finish(self, closing)
end

-- Runs fn after ms milliseconds, unless the request was answered or its
-- connection went away in between.
function Response:after(ms, fn)
  return self.conn.server:after(ms, function()
    if not self.done then fn() end
  end)
end

-- close: the request was read, the connection closes without an answer.
-- half: the status line, headers and half of the body, then close.
-- garbage: bytes that are not HTTP, then close.
-- hang: no answer ever; the connection stays open until the peer leaves.
-- Any kind of fakes.hostile: that answer, then close.
function Response:fault(kind, status, headers, body)
  if self.done then return end
  local conn = self.conn
  if kind == "hang" then
    self.hanging = true
    return
  end
  self.done = true
  local source = hostile.source(kind)
  if source then return conn:stream(self, source) end
  if kind == "close" then
    conn:close()
  elseif kind == "half" then
    body = body or ""
    local full = _M.build_response(status or 200, headers, body, false)
    conn:write(full:sub(1, #full - #body + math.floor(#body / 2)))
    conn:finish(self, true)
  elseif kind == "garbage" then
    conn:write(GARBAGE)
    conn:finish(self, true)
  else
    error("httpd: unknown fault " .. tostring(kind))
  end
end

---------------------------------------------------------------- connections

local Conn = {}
Conn.__index = Conn

function Conn.new(server, sock, id)
  return setmetatable({ server = server, sock = sock, id = id,
                        chunks = {}, buffered = 0, outbuf = "", outpos = 1 }, Conn)
end

function Conn:wants_read()
  return not self.closed and not self.close_after_flush
         and self.buffered < MAX_HEAD + MAX_BODY + READ_CHUNK
end

function Conn:wants_write()
  return not self.closed and self.outpos <= #self.outbuf
end

-- The unread input as one string (chunks are joined only when looked at).
function Conn:input()
  if #self.chunks > 1 then self.chunks = { table.concat(self.chunks) } end
  return self.chunks[1] or ""
end

function Conn:consume(n)
  local rest = self:input():sub(n + 1)
  self.chunks = { rest }
  self.buffered = #rest
end

function Conn:on_readable()
  local data, err, partial = self.sock:receive(READ_CHUNK)
  local chunk = data or partial
  if chunk and #chunk > 0 then
    self.chunks[#self.chunks + 1] = chunk
    self.buffered = self.buffered + #chunk
    self:process()
  end
  if err and err ~= "timeout" then self:close() end   -- peer gone: abort
end

function Conn:write(data)
  if self.closed then return end
  if self.outpos > #self.outbuf then
    self.outbuf, self.outpos = data, 1
  else
    self.outbuf = self.outbuf:sub(self.outpos) .. data
    self.outpos = 1
  end
  self:on_writable()
end

function Conn:on_writable()
  if self.closed then return end
  local last, err, partial_last = self.sock:send(self.outbuf, self.outpos)
  local upto = last or partial_last
  if upto then self.outpos = upto + 1 end
  if err and err ~= "timeout" then return self:close() end
  if self.outpos > #self.outbuf then
    self.outbuf, self.outpos = "", 1
    if self.source and not self.source.interval then
      self:pump()
    elseif self.close_after_flush then
      self:close()
    end
  end
end

-- Sends what source gives (see fakes.hostile) as the answer to res, then
-- closes. A fast source is pulled whenever the output has drained, a
-- drip one piece per interval; both stop when the connection closes.
function Conn:stream(res, source)
  self.source, self.source_res = source, res
  if source.interval then return self:drip() end
  self:pump()
end

function Conn:end_stream()
  local res = self.source_res
  self.source, self.source_res = nil, nil
  self:finish(res, true)
end

function Conn:pump()
  if self.pumping then return end -- write() below drains into on_writable
  self.pumping = true
  while not self.closed and self.source and self.outpos > #self.outbuf do
    local piece = self.source.next()
    if not piece then
      self:end_stream()
      break
    end
    self:write(piece)
  end
  self.pumping = false
end

function Conn:drip()
  if self.closed or not self.source then return end
  local piece = self.source.next()
  if not piece then return self:end_stream() end
  self:write(piece)
  self.server:after(self.source.interval * 1000, function() self:drip() end)
end

function Conn:close()
  if self.closed then return end
  self.closed = true
  self.server.watched[self.sock] = nil
  self.server.conns[self.id] = nil
  self.sock:close()
  local res = self.current
  if res then
    self.current = nil
    res.done, res.aborted = true, true
    self.server:request_done(res.req)
  end
end

-- The current request is answered (or faulted): maybe close, else go on
-- with the next pipelined request.
function Conn:finish(res, closing)
  if self.current ~= res then return end
  self.current = nil
  self.server:request_done(res.req)
  if closing then
    self.close_after_flush = true
    if self.outpos > #self.outbuf then self:close() end
  elseif not self.dispatching then
    self:process()
  end
end

-- Answers a malformed request and closes the connection.
function Conn:reject(status)
  self.head = nil
  self:write(_M.build_response(status, nil, (REASONS[status] or "error") .. "\n", true))
  self.close_after_flush = true
  if self.outpos > #self.outbuf then self:close() end
end

-- Parses and dispatches every complete request in the input, one at a time.
function Conn:process()
  while not self.closed and not self.close_after_flush and not self.current do
    local buf = self:input()
    if not self.head then
      local skip = #buf:match("^[\r\n]*")          -- stray CRLFs between requests
      local head_end = buf:find("\r\n\r\n", skip + 1, true)
      if not head_end then
        if #buf > MAX_HEAD then self:reject(431) end
        return
      end
      if head_end - skip > MAX_HEAD then return self:reject(431) end
      local head, status = parse_head(buf:sub(skip + 1, head_end - 1))
      if not head then return self:reject(status) end
      self:consume(head_end + 3)
      buf = self:input()
      self.head = head
      local expect = (head.headers["expect"] or ""):lower()
      if expect == "100-continue" and (head.chunked or head.length > 0) then
        self:write("HTTP/1.1 100 Continue\r\n\r\n")
      end
    end
    local head, body = self.head, nil
    if head.chunked then
      local decoded, next_pos = decode_chunked(buf, 1)
      if decoded == false then return self:reject(400) end
      if decoded == nil then return end
      body = decoded
      self:consume(next_pos - 1)
    else
      if self.buffered < head.length then return end
      body = buf:sub(1, head.length)
      self:consume(head.length)
    end
    self.head = nil
    self:dispatch(head, body)
  end
end

function Conn:dispatch(head, body)
  local server = self.server
  server.next_seq = server.next_seq + 1
  local req = head
  req.seq, req.conn, req.body, req.at = server.next_seq, self.id, body, socket.gettime()
  req.form, req.fields, req.multipart, req.form_error =
    forms.parse_body(head.headers["content-type"], body)
  local res = setmetatable({ conn = self, req = req }, Response)
  self.current = res
  server:request_started(req, self)
  self.dispatching = true
  local ok, err = xpcall(function() server.handler(req, res) end, debug.traceback)
  self.dispatching = false
  if not ok then
    server.log("handler error: " .. tostring(err))
    res:send(500, nil, "fake handler error: " .. tostring(err) .. "\n")
  end
end

---------------------------------------------------------------- the server

local Server = {}
Server.__index = Server

-- opts: host ("127.0.0.1"), port (0 = any free port), handler(req, res),
-- counts(req) (whether a request counts in the stats; default all),
-- idle_exit (seconds without a request before run() returns; 0 = never),
-- log(message).
-- A non-blocking listening socket on host (127.0.0.1) and port (0: any
-- free one); nil, err when it cannot bind or listen.
function _M.listen_socket(host, port, backlog)
  local listener = socket.tcp()
  listener:setoption("reuseaddr", true)
  local ok, err = listener:bind(host or "127.0.0.1", port or 0)
  if ok then ok, err = listener:listen(backlog or 512) end
  if not ok then
    listener:close()
    return nil, err
  end
  listener:settimeout(0)
  return listener
end

function _M.new(opts)
  local self = setmetatable({
    handler = assert(opts.handler, "httpd.new: handler required"),
    counts = opts.counts or function() return true end,
    idle_exit = opts.idle_exit or 300,
    log = opts.log or function(msg) io.stderr:write(msg, "\n") end,
    watched = {},   -- socket -> object with wants_read/wants_write/on_readable/on_writable
    conns = {},     -- id -> Conn
    timers = timer_heap.new(),
    next_conn_id = 0,
    next_timer_id = 0,
    next_seq = 0,
    last_activity = socket.gettime(),
  }, Server)
  self:reset_stats()
  local listener, err = _M.listen_socket(opts.host, opts.port, opts.backlog)
  if not listener then return nil, err end
  self.listener = listener
  local host, port = listener:getsockname()
  self.host, self.port = host, tonumber(port)
  self.watched[listener] = {
    wants_read = function() return not self.stopping end,
    wants_write = function() return false end,
    on_readable = function() self:accept() end,
  }
  return self
end

function Server:accept()
  while true do
    local sock = self.listener:accept()
    if not sock then return end
    sock:settimeout(0)
    sock:setoption("tcp-nodelay", true)
    self.next_conn_id = self.next_conn_id + 1
    self.stats.accepted = self.stats.accepted + 1
    local conn = Conn.new(self, sock, self.next_conn_id)
    self.conns[conn.id] = conn
    self.watched[sock] = conn
  end
end

-- Other sockets (an outgoing request, see fakes.http_client) join the loop
-- with an object that has wants_read, wants_write, on_readable, on_writable.
function Server:watch(sock, watcher) self.watched[sock] = watcher end
function Server:unwatch(sock) self.watched[sock] = nil end

-- fn runs once, ms milliseconds from now; returns a handle for cancel().
function Server:after(ms, fn)
  self.next_timer_id = self.next_timer_id + 1
  local timer = { at = socket.gettime() + (ms or 0) / 1000, fn = fn, id = self.next_timer_id }
  self.timers:push(timer)
  return timer
end

function Server:cancel(timer) timer.cancelled = true end

-- Runs the timers due now, earliest first; one added by a running timer
-- waits for the next turn.
function Server:run_timers()
  local now, due = socket.gettime(), {}
  local heap = self.timers
  local t = heap:peek()
  while t and t.at <= now do
    due[#due + 1] = heap:pop()
    t = heap:peek()
  end
  for _, d in ipairs(due) do
    if not d.cancelled then
      local ok, err = xpcall(d.fn, debug.traceback)
      if not ok then self.log("timer error: " .. tostring(err)) end
    end
  end
end

function Server:request_started(req, conn)
  self.last_activity = req.at
  req.counted = self.counts(req) and true or false
  if not req.counted then return end
  local s = self.stats
  s.requests = s.requests + 1
  if conn.stats_epoch ~= self.epoch then     -- first counted request on it
    conn.stats_epoch = self.epoch
    s.connections = s.connections + 1
  end
  s.in_flight = s.in_flight + 1
  if s.in_flight > s.max_in_flight then s.max_in_flight = s.in_flight end
end

function Server:request_done(req)
  if req.counted and not req.uncounted then
    req.uncounted = true
    self.stats.in_flight = self.stats.in_flight - 1
  end
end

-- connections: connections that carried a counted request; accepted: every
-- connection; in_flight: counted requests not yet answered. Requests still
-- in flight stay counted in in_flight across a reset.
function Server:reset_stats()
  self.epoch = (self.epoch or 0) + 1
  local in_flight = self.stats and self.stats.in_flight or 0
  self.stats = { accepted = 0, connections = 0, requests = 0,
                 in_flight = in_flight, max_in_flight = in_flight }
end

function Server:step()
  local recvt, sendt = {}, {}
  for sock, w in pairs(self.watched) do
    if w.wants_read(w) then recvt[#recvt + 1] = sock end
    if w.wants_write(w) then sendt[#sendt + 1] = sock end
  end
  local wait, now = SELECT_MAX_WAIT, socket.gettime()
  local first = self.timers:peek()
  if first and first.at - now < wait then wait = first.at - now end
  if wait < 0 then wait = 0 end
  local readable, writable = socket.select(recvt, sendt, wait)
  for _, sock in ipairs(writable or {}) do
    local w = self.watched[sock]
    if w then w.on_writable(w) end
  end
  for _, sock in ipairs(readable or {}) do
    local w = self.watched[sock]
    if w then w.on_readable(w) end
  end
  self:run_timers()
end

-- Serves until stop() or idle_exit; then flushes pending answers (up to a
-- second) and closes everything. Returns the reason it stopped.
function Server:run()
  while not self.stopping do
    self:step()
    if self.idle_exit > 0 and socket.gettime() - self.last_activity > self.idle_exit then
      self.log(string.format("no request for %d s, exiting", self.idle_exit))
      self.stopping = self.stopping or "idle"
    end
  end
  local deadline = socket.gettime() + 1
  while socket.gettime() < deadline do
    local pending = false
    for _, conn in pairs(self.conns) do
      if conn:wants_write() then pending = true end
    end
    if not pending then break end
    self:step()
  end
  for _, conn in pairs(self.conns) do conn:close() end
  self.listener:close()
  return self.stopping
end

function Server:stop(reason)
  self.stopping = self.stopping or reason or "stopped"
end

return _M
