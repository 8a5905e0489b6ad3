-- ksms.errors: the one error convention of ksms.
--
-- Programmer misuse (a wrong argument type, an unknown option, an unknown
-- field) raises. Runtime failures return nil, err where err is a table with
--   category   one of the names in _M.categories
--   code       the provider's code or a ksms code (string or number)
--   message    readable, never containing a secret
--   provider   "senders", "ppurio", ..., or "ksms" for the core
--   retryable  true when the same request may succeed later unchanged
-- and a readable tostring: ksms[provider] category (code): message.
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

local core = require "ksms.core"

local setmetatable, getmetatable, type = setmetatable, getmetatable, type
local byte, sub = string.byte, string.sub
local error_mt = core.error_mt

local _M = { _VERSION = "0.1.0", mt = error_mt, MESSAGE_MAX = 512, CODE_MAX = 64 }

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
}

-- Builds an error object; fields as above, extra fields are kept.
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

function _M.is(v)
  return type(v) == "table" and getmetatable(v) == error_mt
end

return _M
