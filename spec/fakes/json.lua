-- json.lua - JSON for the fakes: cjson decodes; encoding is our own, because
-- lua-cjson 2.1.0 writes an empty list as {} and we want [] where a list is
-- meant (records, forms). Mark a table as a list with _M.array(t).
local cjson = require "cjson"

local _M = {}

local decoder = cjson.new()          -- private: callers' cjson settings stay theirs
local array_mt = { __json_array = true }

function _M.array(t)
  return setmetatable(t or {}, array_mt)
end

-- Decodes s; JSON null becomes nil, and under Lua 5.4 a whole number an
-- integer (cjson gives 100.0). Returns nil, err on malformed input.
local function strip_nulls(v)
  if v == cjson.null then return nil end
  if type(v) == "number" and math.tointeger then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = strip_nulls(x) end
  end
  return v
end

function _M.decode(s)
  local ok, v = pcall(decoder.decode, s)
  if not ok then return nil, tostring(v) end
  return strip_nulls(v)
end

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function encode_string(s)
  -- Bytes >= 0x80 pass through: records carry raw bodies, not only UTF-8.
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_list(t)
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2^53 then return string.format("%d", n) end
  return string.format("%.17g", n)
end

function encode(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return encode_number(v) end
  if t == "string" then return encode_string(v) end
  if t ~= "table" then error("json: cannot encode a " .. t) end
  local out = {}
  if is_list(v) then
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)                    -- stable output, easy to read in a log
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    out[i] = encode_string(k) .. ":" .. encode(x)
  end
  return "{" .. table.concat(out, ",") .. "}"
end

_M.encode = encode

return _M
