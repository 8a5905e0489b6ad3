--- ksms.cli.fingerprint: what shapes every message of a bulk run, as one
-- short string, so a re-run can tell the same template from another. Never
-- a secret goes in (bulk: the template, the subject, the kind, the caller
-- number, the provider, the phone column).
-- @module ksms.cli.fingerprint
-- @alias _M

local byte, floor, format, concat, sort = string.byte, math.floor, string.format, table.concat, table.sort
local pairs, ipairs, tostring = pairs, ipairs, tostring

local _M = { _VERSION = "0.2.0" }

--- FNV-1a, 32 bits, over a string: NOT cryptographic (it tells a changed
-- template from the same one; anyone can make two texts with one hash).
-- Plain arithmetic, no bit operators: the same number under Lua 5.1-5.4
-- and LuaJIT (every intermediate stays under 2^53).
-- @tparam string s
-- @treturn number
function _M.fnv1a32(s)
  local h = 2166136261
  for i = 1, #s do
    local b = byte(s, i)
    -- h XOR b: b touches the low 8 bits only.
    local low = h % 256
    local x, bit, l, bb = 0, 1, low, b
    for _ = 1, 8 do
      if (l % 2) ~= (bb % 2) then x = x + bit end
      l, bb, bit = floor(l / 2), floor(bb / 2), bit * 2
    end
    h = h - low + x
    -- h * 16777619 (2^24 + 403) mod 2^32, in pieces that stay exact.
    h = (h * 403 + (h % 256) * 16777216) % 4294967296
  end
  return h
end

--- of(fields) -> "fnv1a32:xxxxxxxx" of a { name = value } table, in
-- sorted order of the names.
-- @tparam table fields
-- @treturn string
function _M.of(fields)
  local names, parts = {}, {}
  for k in pairs(fields) do names[#names + 1] = k end
  sort(names)
  for i, k in ipairs(names) do parts[i] = k .. "=" .. tostring(fields[k]) end
  return format("fnv1a32:%08x", _M.fnv1a32(concat(parts, "\0")))
end

return _M
