--- ksms.errors: the one error convention of ksms.
--
-- Programmer misuse (a wrong argument type, an unknown option, an unknown
-- field) raises, through misuse(msg): at the caller's line, whatever the
-- depth of the check. Runtime failures return nil, err where err is a table with
--   category   one of the names in _M.categories
--   code       the provider's code or a ksms code (string or number)
--   message    readable, never containing a secret
--   provider   "senders", "ppurio", ..., or "ksms" for the core
--   retryable  true when the same request may succeed later unchanged
-- and a readable tostring: ksms[provider] category (code): message, which
-- is also what "failed: " .. err gives. err:is("auth") tests the category.
-- The metatable is the core's, so errors built in C and in Lua look alike.
--
-- Bounds: new() keeps a string message to at most 512 bytes (MESSAGE_MAX)
-- and a string code to at most 64 (CODE_MAX), because both may quote what a
-- server sent (an undocumented answer, a whole body used as the code). A
-- longer one is cut on a UTF-8 character boundary and ends in
-- "... (N bytes)", N its original length, all within the bound. Numbers
-- (a numeric code) pass unchanged. The core's own errors (C err_push) cut
-- their message at 255 bytes the same way. _M.bound(s, max) is the cut
-- itself, for text added to an error after new().
-- @module ksms.errors
-- @alias _M

local core = require "ksms.core"

local setmetatable, getmetatable, type, error = setmetatable, getmetatable, type, error
local pairs, ipairs, tostring, select = pairs, ipairs, tostring, select
local byte, sub, gsub, lower, format, min = string.byte, string.sub, string.gsub, string.lower, string.format, math.min
local concat, sort = table.concat, table.sort
local getinfo = debug.getinfo
local error_mt = core.error_mt

local _M = { _VERSION = "0.2.0", mt = error_mt, MESSAGE_MAX = 512, CODE_MAX = 64 }

-- s cut to at most max bytes as described above (s itself when it fits or
-- is not a string).
local function bound(s, max)
  if type(s) ~= "string" or #s <= max then return s end
  local suffix = "... (" .. #s .. " bytes)"
  local keep = max - #suffix
  if keep < 0 then keep = 0 end
  -- Back over continuation bytes (at most three) so the character the cut
  -- falls in is dropped whole.
  for _ = 1, 3 do
    local b = byte(s, keep + 1)
    if keep == 0 or b < 0x80 or b >= 0xC0 then break end
    keep = keep - 1
  end
  return sub(s, 1, keep) .. suffix
end
_M.bound = bound

_M.categories = {
  invalid_input = true, auth = true, balance = true, sender_number = true,
  recipient = true, message_length = true, schedule = true, template = true,
  channel = true, rate_limit = true, duplicate = true, server = true,
  network = true, timeout = true, protocol = true, unknown = true,
  -- Not sent, by the caller's own terms: the message's expires_at passed
  -- before it was handed to the transport, or send_many's on_sending said no.
  expired = true, cancelled = true,
  -- The outbox's store failed or refused its file (ksms.outbox.store).
  store = true,
}

--- Builds an error object; fields as above, extra fields are kept.
function _M.new(fields)
  if type(fields) ~= "table" then error("ksms.errors.new: table expected", 2) end
  if not _M.categories[fields.category] then
    error("ksms.errors.new: unknown category '" .. tostring(fields.category) .. "'", 2)
  end
  fields.provider = fields.provider or "ksms"
  fields.retryable = fields.retryable and true or false
  fields.message = bound(fields.message or fields.category, _M.MESSAGE_MAX)
  fields.code = bound(fields.code, _M.CODE_MAX)
  return setmetatable(fields, error_mt)
end

-- ---- misuse: raised at the caller's line ----

-- The library's own files are the ones beside this one ("@lua/ksms/",
-- "@/usr/share/lua/5.4/ksms/", ...); the CLI under it is a caller of the
-- library like any script.
local LIB = (getinfo(1, "S").source or ""):match("^(@.*[/\\])errors%.lua$")
local CLI = LIB and (LIB .. "cli/")

local function library(source)
  return LIB ~= nil and sub(source, 1, #LIB) == LIB and sub(source, 1, #CLI) ~= CLI
end

-- misuse(msg): raises msg at the first frame outside the library, so the
-- error names the caller's file and line however deep inside ksms the
-- check is (a fixed level breaks whenever the call path changes).
local function misuse(msg)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info then level = 2; break end -- called from the library's own main: its line
    local src = info.source
    -- a C function (pcall, a metamethod's caller) is not the caller's line either
    if not library(src) and src ~= "=(tail call)" and src ~= "=[C]" then break end
    level = level + 1
  end
  error(msg, level)
end
_M.misuse = misuse

-- ---- in expressions ----

--- errors.is(v [, category, ...]) -> true when v is an error object (of one
-- of the categories, when any are given). Also a method: err:is("auth"),
-- err:is("network", "timeout"). Compare categories this way, not with
-- `err == "auth"`: Lua never calls __eq for a table and a string.
-- A name not in _M.categories raises: a typo must not read as false.
function _M.is(v, ...)
  if type(v) ~= "table" or getmetatable(v) ~= error_mt then return false end
  local n = select("#", ...)
  if n == 0 then return true end
  local found = false
  for i = 1, n do
    local category = select(i, ...)
    if not _M.categories[category] then
      misuse("ksms.errors: unknown category '" .. tostring(category) .. "'")
    end
    if v.category == category then found = true end
  end
  return found
end

-- "failed: " .. err and err .. "!" give the text of tostring(err). The
-- metatable is the core's (C errors too); methods come through __index so
-- that pairs() and JSON encoders see the fields only.
local function piece(v)
  local t = type(v)
  if t == "string" or t == "number" then return v end
  if _M.is(v) then return tostring(v) end
  error("attempt to concatenate a " .. t .. " value", 3)
end
error_mt.__concat = function(a, b) return piece(a) .. piece(b) end
error_mt.__index = { is = _M.is }

-- ---- options ----

-- Edit distance of two short names (option names: a few bytes).
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = byte(a, i)
    for j = 1, #b do
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca == byte(b, j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

-- The known name closest to `name`, when it is close enough to be a typo.
local function closest(name, names)
  if #name > 64 then return nil end
  local flat = gsub(lower(name), "[_%-]", "")
  local best, best_d = nil, 3
  for _, known in ipairs(names) do
    local d = (gsub(known, "_", "") == flat) and 0 or distance(name, known)
    if d < best_d then best, best_d = known, d end
  end
  return best
end
-- errors.closest(name, names) -> the known name a typo most likely meant,
-- or nil (edit distance under 3, "_"/"-" and case ignored): the "did you
-- mean" of check_options, and of the ksms command's commands and flags.
_M.closest = closest

--- check_options(what, options, schema, ...) -> true, or raises (misuse)
-- for the first option (in sorted order) that no schema declares, naming
-- it, the closest known name, and every name that exists. A schema maps
-- option names to their types ({ base_url = "string", ... }).
function _M.check_options(what, options, ...)
  local schemas = { ... }
  local unknown
  for k in pairs(options) do
    local known = false
    for i = 1, #schemas do if schemas[i][k] ~= nil then known = true; break end end
    if not known and (unknown == nil or tostring(k) < tostring(unknown)) then unknown = k end
  end
  if unknown == nil then return true end
  local names, seen = {}, {}
  for i = 1, #schemas do
    for k in pairs(schemas[i]) do
      if not seen[k] then seen[k] = true; names[#names + 1] = k end
    end
  end
  sort(names)
  local hint = type(unknown) == "string" and closest(unknown, names)
  misuse(format("%s: unknown option '%s'%s; the options are: %s", what, tostring(unknown),
    hint and (" (did you mean " .. hint .. "?)") or "", concat(names, ", ")))
end

return _M
