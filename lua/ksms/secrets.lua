--- ksms.secrets: which option names hold secrets, and a masker that
-- removes their values from any text before it is printed.
--
--   secrets.is_secret("api_key")       -> true
--   local m = secrets.masker()
--   m:add("the-key")                   -- every encoding of it (below)
--   m:mask("...the-key...")            -> "...********..."
--
-- Two places use it: every error a ksms.client returns is masked with the
-- client's own secrets (Masker:mask_in_place), so a server that echoes the
-- key into its answer cannot put it into err.message or tostring(err); and
-- every byte the command writes goes through one masker (ksms.cli.output's
-- Out:write), so a secret that reaches a raw answer, an outbox listing or a
-- dry-run body is still hidden.
--
-- The forms of a secret: the value, its Base64 (also URL-safe) and its hex
-- (lower and upper case); each of those as it is, percent-encoded the
-- ways encoders do it (WHATWG forms as ksms sends them, RFC 3986, "/" left
-- as is, upper- or lower-case hex, encoded twice) and JSON-escaped.
-- Base64 is matched without its = padding, which carries nothing. A
-- provider's answer quoted in an error may be cut inside a secret: any run
-- of at least PREFIX bytes that begins a form is masked too.
-- @module ksms.secrets
-- @alias _M

local core = require "ksms.core"

local type, ipairs, pairs, tostring, setmetatable = type, ipairs, pairs, tostring, setmetatable
local find, sub, lower, upper, byte, format, gsub = string.find, string.sub, string.lower, string.upper,
  string.byte, string.format, string.gsub
local concat, sort = table.concat, table.sort
local b64encode, hex = core.b64encode, core.hex

local _M = { _VERSION = "0.2.0" }

_M.MASK = "********"
_M.PREFIX = 8 -- bytes: the start of a secret this long is masked on its own

-- Names that hold secrets: the providers' (api_key, secure_key, password,
-- key, iv), Cafe24's form fields (secure, passwd) and anything that looks
-- like one.
local EXACT = { key = true, iv = true, secure = true, passwd = true, pwd = true, bindpwd = true,
  ["x-waple-authorization"] = true, authorization = true }

--- Whether an option name holds a secret (api_key, password, *key*, *token*, ...).
-- @tparam string name
-- @treturn boolean
function _M.is_secret(name)
  if type(name) ~= "string" then return false end
  local n = lower(name)
  if EXACT[n] then return true end
  return find(n, "key", 1, true) ~= nil or find(n, "secret", 1, true) ~= nil
    or find(n, "password", 1, true) ~= nil or find(n, "token", 1, true) ~= nil
end

-- Percent-encodes every byte but ASCII letters, digits and those in keep
-- (a pattern class body).
local function percent(s, keep, lower_hex)
  local fmt = lower_hex and "%%%02x" or "%%%02X"
  return (gsub(s, "[^%w" .. keep .. "]", function(c) return format(fmt, byte(c)) end))
end

local JSON_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["/"] = "\\/" }

--- Every form of value (a list, possibly with repeats).
function _M.forms(value)
  local b64 = (gsub(b64encode(value), "=+$", ""))
  local bases = { value, b64, (gsub(gsub(b64, "%+", "-"), "/", "_")), hex(value), upper(hex(value)) }
  local out = {}
  for _, b in ipairs(bases) do
    out[#out + 1] = b
    out[#out + 1] = (gsub(b, '["\\/]', JSON_ESCAPES))
    for _, lower_hex in ipairs({ false, true }) do
      out[#out + 1] = (gsub(percent(b, "%*%-%._", lower_hex), "%%20", "+")) -- WHATWG form
      out[#out + 1] = percent(b, "%-%._~", lower_hex)                       -- RFC 3986
      out[#out + 1] = percent(b, "%-%._~/", lower_hex)                      -- "/" kept
    end
    out[#out + 1] = percent(percent(b, "%-%._~"), "%-%._~")                 -- encoded twice
  end
  return out
end

local Masker = {}
Masker.__index = Masker

--- A masker: add secrets, then mask text in every encoding they travel in.
-- @return a masker
function _M.masker()
  return setmetatable({ groups = {}, by_head = {}, known = {} }, Masker)
end

--- Adds a secret value in every form it can take (values under 3 bytes are
-- left alone: masking them would wreck every output). Forms are grouped
-- by their first PREFIX bytes: where a group's head is found, the longest
-- run along any of its forms is masked, so forms that share a start (the
-- Base64 and its percent-encodings) never leave each other's tails.
function Masker:add(value)
  if value == nil then return end
  value = tostring(value)
  if #value < 3 then return end
  for _, form in ipairs(_M.forms(value)) do
    if not self.known[form] then
      self.known[form] = true
      local head = sub(form, 1, _M.PREFIX)
      local g = self.by_head[head]
      if not g then
        g = { head = head, forms = {}, longest = 0 }
        self.by_head[head] = g
        self.groups[#self.groups + 1] = g
      end
      g.forms[#g.forms + 1] = form
      if #form > g.longest then g.longest = #form end
    end
  end
  sort(self.groups, function(a, b) return a.longest > b.longest end)
end

-- How far from s[at] (where head was found, len bytes) the text goes on
-- along one of the forms: the end of the longest run.
local function run_end(s, at, len, forms)
  local best = at + len - 1
  for _, form in ipairs(forms) do
    local b, n = at + len - 1, #form
    while b - at + 1 < n and byte(s, b + 1) == byte(form, b - at + 2) do b = b + 1 end
    if b > best then best = b end
  end
  return best
end

-- Every run of one group replaced by the mask; linear in #s (each byte is
-- passed over once per form of the group).
local function mask_group(s, g)
  local out, pos, len = {}, 1, #g.head
  while true do
    local a = find(s, g.head, pos, true)
    if not a then break end
    out[#out + 1] = sub(s, pos, a - 1)
    out[#out + 1] = _M.MASK
    pos = run_end(s, a, len, g.forms) + 1
  end
  if pos == 1 then return s end
  out[#out + 1] = sub(s, pos)
  return concat(out)
end

--- s with every added secret masked.
-- @param s
-- @treturn string
function Masker:mask(s)
  s = tostring(s)
  for _, g in ipairs(self.groups) do
    if find(s, g.head, 1, true) then s = mask_group(s, g) end
  end
  return s
end

--- Masks every string inside t (an error object) in place, keeping its
-- metatable; secret-named fields become the mask. Returns t.
function Masker:mask_in_place(t, seen)
  if #self.groups == 0 or type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return t end
  seen[t] = true
  for k, x in pairs(t) do
    if type(k) == "string" and _M.is_secret(k) and (type(x) == "string" and x ~= "" or type(x) == "number") then
      t[k] = _M.MASK
    elseif type(x) == "string" then
      t[k] = self:mask(x)
    elseif type(x) == "table" then
      self:mask_in_place(x, seen)
    end
  end
  return t
end

--- A copy of a table (results, errors, requests) with every string masked
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
    local key = type(k) == "string" and self:mask(k) or k -- a server's JSON names its own keys
    if type(k) == "string" and _M.is_secret(k) and (type(x) == "string" and x ~= "" or type(x) == "number") then
      out[key] = _M.MASK
    else
      out[key] = self:mask_tree(x, seen)
    end
  end
  seen[v] = nil
  return out
end

return _M
