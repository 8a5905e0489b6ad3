-- base64.lua - RFC 4648 Base64 for the Cafe24 fake and its spec (pure Lua,
-- Lua 5.1/LuaJIT and 5.4). decode is strict: the standard alphabet, a length
-- that is a multiple of 4, '=' only as the last one or two characters.
local _M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local value = {}
for i = 1, 64 do value[ALPHABET:byte(i)] = i - 1 end

function _M.encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = math.floor(n / 262144), math.floor(n / 4096) % 64
    local c3, c4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = ALPHABET:sub(c1 + 1, c1 + 1) .. ALPHABET:sub(c2 + 1, c2 + 1)
      .. (b and ALPHABET:sub(c3 + 1, c3 + 1) or "=") .. (c and ALPHABET:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- The decoded bytes, or nil, message.
function _M.decode(s)
  if #s % 4 ~= 0 then return nil, "length is not a multiple of 4" end
  local pad = #(s:match("=*$"))
  if pad > 2 then return nil, "too much padding" end
  local out = {}
  for i = 1, #s, 4 do
    local n, count = 0, 0
    for k = i, i + 3 do
      local b = s:byte(k)
      if b == 61 then                     -- '='
        if k <= #s - pad then return nil, "'=' inside the data" end
        n = n * 64
      else
        local v = value[b]
        if not v then return nil, string.format("byte 0x%02X at %d is not Base64", b, k) end
        n = n * 64 + v
        count = count + 1
      end
    end
    local bytes = string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
    out[#out + 1] = bytes:sub(1, count - 1)
  end
  return table.concat(out)
end

return _M
