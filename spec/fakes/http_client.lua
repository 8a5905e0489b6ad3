-- http_client.lua - one outgoing HTTP/1.1 request on an httpd server's event
-- loop, so a fake can call a webhook (MessageMe MO) without blocking its own
-- connections; the target may even be the fake itself.
--
--   http_client.request(server, { url =, method =, headers =, body =,
--                                 timeout_ms = }, function(result) end)
-- result: { status =, headers =, body = } or { error = "..." }.
local socket = require "socket"

local _M = {}

local function parse_url(url)
  local host, port, path = url:match("^http://([^/:]+):?(%d*)(.*)$")
  if not host then return nil end
  return host, tonumber(port) or 80, path ~= "" and path or "/"
end

-- A complete response in buf: status, headers, body; nil if more is needed.
-- At end of stream (eof) a response without a length ends where the bytes do.
local function parse_response(buf, eof)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return { error = "not an HTTP response" } end
  if status >= 100 and status < 200 then              -- 100 Continue: skip it
    return parse_response(buf:sub(head_end + 4), eof)
  end
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body = buf:sub(head_end + 4)
  local length = tonumber(headers["content-length"])
  if length then
    if #body < length then
      return eof and { error = "response body cut short" } or nil
    end
    return { status = status, headers = headers, body = body:sub(1, length) }
  end
  if (headers["transfer-encoding"] or ""):lower():find("chunked") then
    local parts, pos = {}, 1
    while true do
      local line_end = body:find("\r\n", pos, true)
      if not line_end then return eof and { error = "chunked body cut short" } or nil end
      local size = tonumber(body:sub(pos, line_end - 1):match("^(%x+)") or "", 16)
      if not size then return { error = "bad chunk" } end
      if size == 0 then
        return { status = status, headers = headers, body = table.concat(parts) }
      end
      if #body < line_end + 2 + size then return eof and { error = "chunk cut short" } or nil end
      parts[#parts + 1] = body:sub(line_end + 2, line_end + 1 + size)
      pos = line_end + 4 + size
    end
  end
  if eof then return { status = status, headers = headers, body = body } end
  return nil
end

function _M.request(server, opts, callback)
  local host, port, path = parse_url(opts.url or "")
  if not host then return callback({ error = "only http://host[:port]/path URLs" }) end
  local sock = socket.tcp()
  sock:settimeout(2)               -- a local connect completes from the backlog
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return callback({ error = "connect: " .. tostring(err) })
  end
  sock:settimeout(0)
  local body = opts.body or ""
  local lines = { (opts.method or "POST") .. " " .. path .. " HTTP/1.1",
                  "Host: " .. host .. ":" .. port, "Connection: close",
                  "Content-Length: " .. #body }
  for name, value in pairs(opts.headers or {}) do lines[#lines + 1] = name .. ": " .. value end
  local out, outpos, inbuf, finished = table.concat(lines, "\r\n") .. "\r\n\r\n" .. body, 1, {}, false
  local timer

  local function finish(result)
    if finished then return end
    finished = true
    server:unwatch(sock)
    sock:close()
    if timer then server:cancel(timer) end
    callback(result)
  end

  local watcher = {
    wants_read = function() return not finished end,
    wants_write = function() return not finished and outpos <= #out end,
    on_writable = function()
      local last, serr, partial = sock:send(out, outpos)
      outpos = (last or partial or outpos - 1) + 1
      if serr and serr ~= "timeout" then finish({ error = "send: " .. serr }) end
    end,
    on_readable = function()
      local data, rerr, partial = sock:receive(64 * 1024)
      inbuf[#inbuf + 1] = data or partial or ""
      local eof = rerr ~= nil and rerr ~= "timeout"
      local result = parse_response(table.concat(inbuf), eof)
      if result then return finish(result) end
      if eof then finish({ error = "connection closed before an answer (" .. rerr .. ")" }) end
    end,
  }
  server:watch(sock, watcher)
  timer = server:after(opts.timeout_ms or 10000, function() finish({ error = "timeout" }) end)
end

return _M
