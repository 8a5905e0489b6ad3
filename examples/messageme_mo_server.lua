-- examples/messageme_mo_server.lua: receive MessageMe MO (inbound) messages.
--
--   lua5.4 examples/messageme_mo_server.lua [PORT] [--max N]
--
-- Register http://<this host>:PORT/mo as the "MO연동 수신" address on
-- MessageMe. Each message is printed as one JSON line:
--   {"from":"01012345678","text":"...","subject":null,"images":["http://..."]}
-- A plain blocking LuaSocket loop, one request at a time: enough for an MO
-- feed. Under OpenResty use the same parse_mo in a content handler.
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

local handled = 0
while handled < max do
  local conn = server:accept()
  conn:settimeout(10)
  local line = conn:receive("*l")
  local headers = {}
  while true do
    local h = conn:receive("*l")
    if not h or h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  local method, path = (line or ""):match("^(%u+) (%S+)")
  local length = tonumber(headers["content-length"] or "0") or 0
  local body = length > 0 and conn:receive(length) or ""
  if method ~= "POST" or path ~= "/mo" then
    answer(conn, "404 Not Found", "not here")
  else
    local mo, err = messageme.parse_mo(body or "")
    if mo then
      -- lua-cjson writes an empty table as {}, so the list is written by hand.
      local images = #mo.images > 0 and cjson.encode(mo.images) or "[]"
      print(('{"from":%s,"text":%s,"subject":%s,"images":%s}'):format(cjson.encode(mo.from),
        cjson.encode(mo.text), mo.subject and cjson.encode(mo.subject) or "null", images))
      answer(conn, "200 OK", "OK")
    else
      io.stderr:write("bad MO: ", tostring(err), "\n")
      answer(conn, "400 Bad Request", "bad MO")
    end
    io.stdout:flush()
    handled = handled + 1
  end
  conn:close()
end
