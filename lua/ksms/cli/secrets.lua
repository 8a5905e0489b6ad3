-- ksms.cli.secrets: which option names hold secrets, and a masker that
-- removes their values from any text before it is printed.
--
--   secrets.is_secret("api_key")       -> true
--   local m = secrets.masker()
--   m:add("the-key")                   -- raw, URL-encoded, Base64 and JSON forms
--   m:mask("...the-key...")            -> "...********..."
--
-- Every byte the command writes goes through one masker, so a secret that
-- reaches an error message, a raw answer or a dry-run body is still hidden.

local core = require "ksms.core"

local type, ipairs, pairs, tostring, setmetatable, pcall = type, ipairs, pairs, tostring, setmetatable, pcall
local find, sub, lower = string.find, string.sub, string.lower
local concat, sort = table.concat, table.sort

local _M = { _VERSION = "0.1.0" }

_M.MASK = "********"

-- Names that hold secrets: the providers' (api_key, secure_key, password,
-- key, iv), Cafe24's form fields (secure, passwd) and anything that looks
-- like one.
local EXACT = { key = true, iv = true, secure = true, passwd = true, pwd = true, bindpwd = true,
  ["x-waple-authorization"] = true, authorization = true }

function _M.is_secret(name)
  if type(name) ~= "string" then return false end
  local n = lower(name)
  if EXACT[n] then return true end
  return find(n, "key", 1, true) ~= nil or find(n, "secret", 1, true) ~= nil
    or find(n, "password", 1, true) ~= nil or find(n, "token", 1, true) ~= nil
end

local Masker = {}
Masker.__index = Masker

function _M.masker()
  return setmetatable({ values = {} }, Masker)
end

local function add_value(self, v)
  if type(v) ~= "string" or #v < 3 then return end
  for _, known in ipairs(self.values) do if known == v then return end end
  self.values[#self.values + 1] = v
  -- Longest first, so a secret containing another is masked whole.
  sort(self.values, function(a, b) return #a > #b end)
end

-- Adds a secret value in every form it can take on the wire.
function Masker:add(value)
  if value == nil then return end
  value = tostring(value)
  add_value(self, value)
  add_value(self, (core.urlencode_form({ { "", value } }):sub(2)))
  add_value(self, (core.b64encode(value)))
  add_value(self, (core.b64encode(value):gsub("=+$", "")))
  local ok, cjson = pcall(require, "cjson")
  if ok then add_value(self, (cjson.encode(value):sub(2, -2))) end
end

-- Plain (not pattern) replacement of every secret value.
local function replace_plain(s, needle, by)
  local out, pos = {}, 1
  while true do
    local a, b = find(s, needle, pos, true)
    if not a then break end
    out[#out + 1] = sub(s, pos, a - 1)
    out[#out + 1] = by
    pos = b + 1
  end
  if pos == 1 then return s end
  out[#out + 1] = sub(s, pos)
  return concat(out)
end

function Masker:mask(s)
  s = tostring(s)
  for _, v in ipairs(self.values) do s = replace_plain(s, v, _M.MASK) end
  return s
end

-- A copy of a table (results, errors, requests) with every string masked
-- and secret-named fields replaced; functions and userdata dropped.
function Masker:mask_tree(v, seen)
  local t = type(v)
  if t == "string" then return self:mask(v) end
  if t ~= "table" then
    if t == "function" or t == "userdata" or t == "thread" then return nil end
    return v
  end
  seen = seen or {}
  if seen[v] then return nil end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" and _M.is_secret(k) and (type(x) == "string" and x ~= "" or type(x) == "number") then
      out[k] = _M.MASK
    else
      out[k] = self:mask_tree(x, seen)
    end
  end
  seen[v] = nil
  return out
end

_M.replace_plain = replace_plain

return _M
