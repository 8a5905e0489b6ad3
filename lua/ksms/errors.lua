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

local core = require "ksms.core"

local setmetatable, getmetatable, type = setmetatable, getmetatable, type
local error_mt = core.error_mt

local _M = { _VERSION = "0.1.0", mt = error_mt }

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
  fields.message = fields.message or fields.category
  return setmetatable(fields, error_mt)
end

function _M.is(v)
  return type(v) == "table" and getmetatable(v) == error_mt
end

return _M
