-- examples/messageme_mo_server.lua: receive MessageMe MO (inbound) messages.
--
--   lua5.4 examples/messageme_mo_server.lua [PORT] [--max N]
--
-- Register http://<this host>:PORT/mo as the "MO연동 수신" address on
-- MessageMe. Each message is printed as one JSON line:
--   {"from":"01012345678","text":"...","subject":null,"images":["http://..."]}
-- A plain blocking LuaSocket loop, one request at a time: enough for an MO
-- feed. Under OpenResty use the same parse_mo in a content handler
-- (examples/nginx/messageme_mo.lua). Anything that is not an MO gets a 4xx:
-- a missing or repeated field, a body over 64 KiB, too many headers.
local socket = require "socket"
local cjson = require "cjson"
local messageme = require "ksms.providers.messageme"

local port, max = 8080, math.huge
local i = 1
while arg[i] do
  if arg[i] == "--max" then max = tonumber(arg[i + 1]); i = i + 2
  else port = tonumber(arg[i]); i = i + 1 end
end

local server = assert(socket.bind("127.0.0.1", port))
print("LISTENING " .. select(2, server:getsockname()))
io.stdout:flush()

local function answer(conn, status, body)
  conn:send(("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(status, #body, body))
end

-- What a request may hold before it is refused: the header lines, and
-- the body (parse_mo's own bound on a raw body).
local MAX_HEADER_LINES = 100
local MAX_BODY = messageme.mo_limits.body

-- One request on conn: the status line and body to answer with.
local function handle(conn)
  local line = conn:receive("*l")
  local headers, lines = {}, 0
  while true do
    local h = conn:receive("*l")
    if not h or h == "" then break end
    lines = lines + 1
    if lines > MAX_HEADER_LINES then return "431 Request Header Fields Too Large", "too many headers" end
    local name, value = h:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  local method, path = (line or ""):match("^(%u+) (%S+)")
  if method ~= "POST" or path ~= "/mo" then return "404 Not Found", "not here" end
  local length = headers["content-length"] or "0"
  if not length:match("^%d+$") then return "400 Bad Request", "bad Content-Length" end
  length = tonumber(length)
  if length > MAX_BODY then return "413 Content Too Large", "too large" end
  local body = length > 0 and conn:receive(length) or ""
  if not body then return "400 Bad Request", "short body" end
  local mo, err = messageme.parse_mo(body)
  if not mo then
    io.stderr:write("bad MO: ", tostring(err), "\n")
    return "400 Bad Request", "bad MO"
  end
  -- lua-cjson writes an empty table as {}, so the list is written by hand.
  local images = #mo.images > 0 and cjson.encode(mo.images) or "[]"
  print(('{"from":%s,"text":%s,"subject":%s,"images":%s}'):format(cjson.encode(mo.from),
    cjson.encode(mo.text), mo.subject and cjson.encode(mo.subject) or "null", images))
  io.stdout:flush()
  return "200 OK", "OK"
end

-- --max counts the posts to /mo that were answered, whatever the answer.
local handled = 0
while handled < max do
  local conn = server:accept()
  conn:settimeout(10)
  local ok, status, text = pcall(handle, conn)
  if not ok then
    io.stderr:write("MO handler failed: ", tostring(status), "\n")
    status, text = "500 Internal Server Error", "error"
  end
  answer(conn, status, text)
  if status ~= "404 Not Found" then handled = handled + 1 end
  conn:close()
end
