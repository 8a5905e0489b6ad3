-- nginx_requests.lua - what the specs of the nginx binders (nginx_oneshot,
-- nginx_fleet) share: a Lua literal of their options for nginx.conf,
-- HTTP/1.0 JSON exchanges with the nginx under test (one per connection:
-- the answer ends at the close), and its error log.
local socket = require "socket"
local json = require "fakes.json"

local _M = {}

-- A Lua literal of a flat table (strings, numbers, booleans).
function _M.literal(t)
  local parts = {}
  for k, v in pairs(t) do
    parts[#parts + 1] = ("[%q] = %s"):format(k, type(v) == "string" and ("%q"):format(v) or tostring(v))
  end
  table.sort(parts)
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- A request written (POST with a JSON body, or GET), its connection back.
function _M.open_request(port, path, body)
  local c = assert(socket.tcp())
  c:settimeout(30)
  assert(c:connect("127.0.0.1", port))
  body = body and json.encode(body) or ""
  assert(c:send(("%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s")
    :format(body ~= "" and "POST" or "GET", path, #body, body)))
  return c
end

-- The answer's JSON body (status 200 asserted).
function _M.read_answer(c)
  local data, err, partial = c:receive("*a")
  c:close()
  data = data or partial
  local status = tonumber(data:match("^HTTP/1%.%d (%d+)"))
  local body = data:match("\r\n\r\n(.*)$")
  assert(status == 200, "HTTP " .. tostring(status) .. ": " .. tostring(err) .. " " .. data:sub(1, 300))
  return assert(json.decode(body))
end

function _M.get(port, path, body) return _M.read_answer(_M.open_request(port, path, body)) end

-- Many requests at once: all sent, then all read (nginx serves them together).
function _M.many(port, reqs)
  local conns = {}
  for i, r in ipairs(reqs) do conns[i] = _M.open_request(port, r.path, r.body) end
  local out = {}
  for i, c in ipairs(conns) do out[i] = _M.read_answer(c) end
  return out
end

-- The last 64 KiB of the error log, and its size.
function _M.log_tail(nginx)
  local f = io.open(nginx.prefix .. "/logs/error.log", "rb")
  if not f then return "", 0 end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 65536))
  local s = f:read("*a")
  f:close()
  return s, size
end

-- The error log is small and holds none of these patterns (nor [emerg]).
function _M.no_errors(nginx, patterns)
  local log, size = _M.log_tail(nginx)
  -- (a module required by a spec has the standard assert, not busted's)
  if size >= 65536 then error("the error log has " .. size .. " bytes", 2) end
  local list = { "[emerg]" }
  for _, p in ipairs(patterns or {}) do list[#list + 1] = p end
  for _, p in ipairs(list) do
    if log:find(p, 1, true) then error("the error log holds '" .. p .. "':\n" .. log, 2) end
  end
end

return _M
