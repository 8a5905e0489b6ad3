-- spec/fakes/echo_server.lua: a small HTTP/1.1 server for spec/http_spec.lua.
--
-- Listens on 127.0.0.1 on an ephemeral port and prints, before anything
-- else, "LISTENING <port>" then "PID <pid>" on stdout. One process serves
-- many connections at once (non-blocking LuaSocket + socket.select), keeps
-- connections alive, and records every request.
--
-- What it does with a request depends on the path; a "delay=<ms>" query
-- parameter delays the action on any path (without blocking the others):
--   /raw             200, the request's exact bytes (request line, headers,
--                    body) as the response body
--   /echo            200, JSON { method, target, path, query, headers (list
--                    of {name, value} as received), body, conn (connection
--                    id), seq (request number on that connection) }
--   /close           reads the whole request, closes without answering
--   /half            sends half a response (Content-Length 100, 10 bytes), closes
--   /garbage         sends bytes that are not HTTP, closes;
--                    kind=status: a malformed status line instead
--   /huge?size=N     a body of N bytes ('x'); chunked=1 sends it chunked
--   /chunked         "hello, chunked world" in three chunks plus a trailer
--   /headers         a 100 Continue with its own header first, then 200 with
--                    repeated and mixed-case headers
--   /status?code=N   that status with a small JSON body
--   /stats           JSON { requests = [ {method, target, conn, seq,
--                    body_len} ], max_inflight, connections } (not recorded)
--   /reset           clears the record and the counters (not recorded)
-- It exits on its own after IDLE_EXIT seconds without a connection event, so
-- a crashed spec leaves nothing behind for long.
local socket = require "socket"
local cjson = require("cjson").new()

local IDLE_EXIT = 120

local server = assert(socket.bind("127.0.0.1", 0, 256))
server:settimeout(0)
local _, port = server:getsockname()
local stat = assert(io.open("/proc/self/stat")):read("*l")
io.stdout:write(("LISTENING %d\nPID %s\n"):format(port, stat:match("^(%d+)")))
io.stdout:flush()

local conns = {}          -- socket -> connection state
local conn_count = 0
local log = {}
local inflight, max_inflight = 0, 0
local timers = {}
local last_event = socket.gettime()

local REASONS = { [100] = "Continue", [200] = "OK", [201] = "Created", [400] = "Bad Request",
  [404] = "Not Found", [500] = "Internal Server Error", [503] = "Service Unavailable" }

local function close(c)
  if c.closed then return end
  c.closed = true
  conns[c.sock] = nil
  c.sock:close()
end

local function flush(c)
  if c.closed or c.outpos >= #c.out then return end
  local last, err, partial = c.sock:send(c.out, c.outpos + 1)
  c.outpos = last or partial or c.outpos
  if err and err ~= "timeout" then return close(c) end
  if c.outpos >= #c.out then
    c.out, c.outpos = "", 0
    if c.close_after_write then close(c) end
  end
end

local function write(c, data)
  if c.closed then return end
  c.out = c.out:sub(c.outpos + 1) .. data
  c.outpos = 0
  flush(c)
end

local function response(status, headers, body, head_only)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Whatever") }
  for _, h in ipairs(headers or {}) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  out[#out + 1] = "Content-Length: " .. #body .. "\r\n\r\n"
  if not head_only then out[#out + 1] = body end
  return table.concat(out)
end

local function json(c, status, value, head_only)
  write(c, response(status, { { "Content-Type", "application/json" } }, cjson.encode(value), head_only))
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local t = {}
  for k, v in q:gmatch("([^&=]+)=?([^&]*)") do t[unescape(k)] = unescape(v) end
  return t
end

local function chunked(parts, trailer)
  local out = {}
  for _, p in ipairs(parts) do out[#out + 1] = ("%x\r\n%s\r\n"):format(#p, p) end
  out[#out + 1] = "0\r\n" .. (trailer or "") .. "\r\n"
  return table.concat(out)
end

local process

-- What each path does, once any delay has passed.
local function act(c, req)
  local path, q = req.path, req.query
  if path == "/close" then
    return close(c)
  elseif path == "/half" then
    c.close_after_write = true
    return write(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
  elseif path == "/garbage" then
    c.close_after_write = true
    if q.kind == "status" then return write(c, "HTTP/1.1 2x0 Whatever\r\nX: y\r\n\r\n") end
    return write(c, "\0\1\2 this is not HTTP at all \255\254\r\n\r\n")
  elseif path == "/huge" then
    local size = tonumber(q.size) or 0
    if q.chunked then
      local parts, left = {}, size
      while left > 0 do
        local n = math.min(left, 65536)
        parts[#parts + 1] = ("x"):rep(n)
        left = left - n
      end
      return write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. chunked(parts))
    end
    return write(c, response(200, nil, ("x"):rep(size)))
  elseif path == "/chunked" then
    return write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n"
      .. chunked({ "hello, ", "chunked", " world" }, "X-Trailer: late\r\n"))
  elseif path == "/headers" then
    return write(c, "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
      .. response(200, { { "X-Dup", "one" }, { "X-Dup", "two" }, { "X-Mixed-Case", "Value" },
        { "Set-Cookie", "a=1" }, { "Set-Cookie", "b=2" }, { "X-Folded", "first" },
        { "X-Spaces", "  padded  " } }, "headers"):gsub("X%-Folded: first\r\n", "X-Folded: first\r\n  second\r\n"))
  elseif path == "/status" then
    return json(c, tonumber(q.code) or 200, { status = tonumber(q.code) })
  elseif path == "/raw" then
    return write(c, response(200, { { "Content-Type", "application/octet-stream" } }, req.raw))
  elseif path == "/echo" then
    return json(c, 200, { method = req.method, target = req.target, path = path, query = q,
      headers = req.headers, body = req.body, conn = c.id, seq = req.seq }, req.method == "HEAD")
  end
  return json(c, 404, { error = "no such path" })
end

local function handle(c, req)
  if req.path == "/stats" then
    return json(c, 200, { requests = log, max_inflight = max_inflight, connections = conn_count })
  elseif req.path == "/reset" then
    log, max_inflight = {}, 0
    return json(c, 200, { ok = true })
  end
  log[#log + 1] = { method = req.method, target = req.target, conn = c.id, seq = req.seq,
    body_len = #req.body }
  inflight = inflight + 1
  if inflight > max_inflight then max_inflight = inflight end
  c.busy = true
  local function run()
    inflight = inflight - 1
    c.busy = false
    act(c, req)
    if not c.closed then process(c) end
  end
  local delay = tonumber(req.query.delay)
  if delay then
    timers[#timers + 1] = { at = socket.gettime() + delay / 1000, fn = run }
  else
    run()
  end
end

-- Takes every whole request out of the connection's input, one at a time.
function process(c)
  while not c.busy and not c.closed do
    local hend = c.inbuf:find("\r\n\r\n", 1, true)
    if not hend then return end
    local head = c.inbuf:sub(1, hend - 1)
    local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n?")
    if not method then
      c.close_after_write = true
      return write(c, response(400, nil, "bad request line"))
    end
    local headers, clen, te = {}, 0, nil
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      headers[#headers + 1] = { name, value }
      local lname = name:lower()
      if lname == "content-length" then clen = tonumber(value) end
      if lname == "transfer-encoding" then te = value end
    end
    if te then -- the transport always sends Content-Length: refuse the rest
      c.close_after_write = true
      return write(c, response(411, nil, "chunked request bodies not accepted"))
    end
    if #c.inbuf < hend + 3 + clen then return end
    local body = c.inbuf:sub(hend + 4, hend + 3 + clen)
    local raw = c.inbuf:sub(1, hend + 3 + clen)
    c.inbuf = c.inbuf:sub(hend + 4 + clen)
    c.seq = c.seq + 1
    local path, query = target:match("^([^?]*)%??(.*)$")
    handle(c, { method = method, target = target, path = path, query = parse_query(query),
      headers = headers, body = body, seq = c.seq, raw = raw })
  end
end

local function readable(c)
  local data, err, partial = c.sock:receive(65536)
  local chunk = data or partial
  if chunk and #chunk > 0 then c.inbuf = c.inbuf .. chunk end
  if err == "closed" then
    -- Whatever arrived whole is still handled (the /close test needs the
    -- request recorded even if the client gives up first).
    process(c)
    return close(c)
  end
  process(c)
end

while true do
  local now = socket.gettime()
  local wait = 0.5
  local due = {}
  for i = #timers, 1, -1 do
    if timers[i].at <= now then
      due[#due + 1] = table.remove(timers, i)
    else
      wait = math.min(wait, timers[i].at - now)
    end
  end
  table.sort(due, function(a, b) return a.at < b.at end)
  for _, t in ipairs(due) do t.fn() end
  if #due > 0 then wait = 0 end

  local rd, wr = { server }, {}
  for s, c in pairs(conns) do
    if not c.busy then rd[#rd + 1] = s end
    if c.outpos < #c.out then wr[#wr + 1] = s end
  end
  local r, w = socket.select(rd, wr, wait)
  if #r > 0 or #w > 0 or #timers > 0 then last_event = socket.gettime() end
  for _, s in ipairs(r) do
    if s == server then
      local client = server:accept()
      while client do
        client:settimeout(0)
        client:setoption("tcp-nodelay", true)
        conn_count = conn_count + 1
        conns[client] = { sock = client, id = conn_count, inbuf = "", out = "", outpos = 0, seq = 0 }
        client = server:accept()
      end
    elseif conns[s] then
      readable(conns[s])
    end
  end
  for _, s in ipairs(w) do
    if conns[s] then flush(conns[s]) end
  end
  if socket.gettime() - last_event > IDLE_EXIT then break end
end
