-- forms.lua - request bodies as form fields: application/x-www-form-urlencoded
-- and multipart/form-data, parsed into an ordered list of {name, value}
-- (the order a client wrote them in, duplicates kept) plus a name -> value
-- map where the last value wins, as PHP's $_POST does.
local _M = {}

local function unescape(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
_M.unescape = unescape

-- RFC 3986 unreserved characters stay, space becomes '+', the rest %XX.
function _M.escape(s)
  s = tostring(s):gsub("[^%w%-%._~ ]", function(c)
    return string.format("%%%02X", c:byte())
  end)
  return (s:gsub(" ", "+"))
end

-- fields: ordered { {name, value}, ... } -> "a=1&b=2"
function _M.encode(fields)
  local out = {}
  for i, f in ipairs(fields) do
    out[i] = _M.escape(f[1]) .. "=" .. _M.escape(f[2])
  end
  return table.concat(out, "&")
end

local function map_of(list)
  local map = {}
  for _, f in ipairs(list) do map[f[1]] = f[2] end
  return map
end

function _M.parse_urlencoded(body)
  local list = {}
  for piece in (body or ""):gmatch("[^&]+") do
    local name, value = piece:match("^([^=]*)=(.*)$")
    if not name then name, value = piece, "" end
    list[#list + 1] = { unescape(name), unescape(value) }
  end
  return list, map_of(list)
end

-- A header parameter such as name="x" or boundary=abc from a header value.
local function param(header, key)
  local lower = header:lower()
  local i = lower:find(";%s*" .. key .. "=")
  if not i then return nil end
  local rest = header:sub(lower:find("=", i, true) + 1)
  if rest:sub(1, 1) == '"' then
    return (rest:match('^"(.-)"'))
  end
  return (rest:match("^([^;%s]+)"))
end
_M.param = param

local function parse_part_headers(head)
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  return headers
end

-- Parts of a multipart/form-data body, in order: { name, filename,
-- content_type, headers, data }. Returns nil, err when the body is malformed.
function _M.parse_multipart(body, content_type)
  local boundary = param(content_type or "", "boundary")
  if not boundary or boundary == "" then return nil, "no boundary" end
  local delim = "--" .. boundary
  local pos = body:find(delim, 1, true)
  if not pos then return nil, "no opening boundary" end
  local parts = {}
  pos = pos + #delim
  while true do
    if body:sub(pos, pos + 1) == "--" then break end          -- closing delimiter
    if body:sub(pos, pos + 1) ~= "\r\n" then return nil, "bad delimiter line" end
    local head_end = body:find("\r\n\r\n", pos + 2, true)
    if not head_end then return nil, "part without header end" end
    local headers = parse_part_headers(body:sub(pos + 2, head_end - 1))
    local data_start = head_end + 4
    local next_delim = body:find("\r\n" .. delim, data_start, true)
    if not next_delim then return nil, "unterminated part" end
    local disposition = headers["content-disposition"] or ""
    parts[#parts + 1] = {
      name = param(disposition, "name"),
      filename = param(disposition, "filename"),
      content_type = headers["content-type"],
      headers = headers,
      data = body:sub(data_start, next_delim - 1),
    }
    pos = next_delim + 2 + #delim
  end
  return parts
end

-- Builds a multipart/form-data body from { {name=, data=, filename=,
-- content_type=}, ... }; returns body, content_type header value.
function _M.build_multipart(parts, boundary)
  boundary = boundary or ("ksmsfake" .. tostring(os.time()) .. tostring(math.random(1e9)))
  local out = {}
  for _, p in ipairs(parts) do
    local disposition = 'form-data; name="' .. p.name .. '"'
    if p.filename then disposition = disposition .. '; filename="' .. p.filename .. '"' end
    out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: " .. disposition .. "\r\n"
    if p.content_type then out[#out + 1] = "Content-Type: " .. p.content_type .. "\r\n" end
    out[#out + 1] = "\r\n" .. p.data .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

-- The fields of a request body, by its Content-Type: list, map, parts.
-- Multipart parts without a filename are fields too (as in PHP's $_POST).
function _M.parse_body(content_type, body)
  local ct = (content_type or ""):lower()
  if ct:find("^application/x%-www%-form%-urlencoded") then
    local list, map = _M.parse_urlencoded(body)
    return list, map, nil
  end
  if ct:find("^multipart/form%-data") then
    local parts, err = _M.parse_multipart(body or "", content_type)
    if not parts then return {}, {}, nil, err end
    local list = {}
    for _, p in ipairs(parts) do
      if p.name and not p.filename then list[#list + 1] = { p.name, p.data } end
    end
    return list, map_of(list), parts
  end
  return {}, {}, nil
end

return _M
