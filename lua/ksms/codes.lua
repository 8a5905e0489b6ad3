--- ksms.codes: the one shape of every provider's result-code table, its one
-- lookup, and the one policy for a code no table lists.
--
-- A table maps a provider's code (as the provider writes it: "200",
-- "-102", "success" for HTTP answers; 0, 903 for OneShot) to an entry
--
--   codes.ok(en, ko)                        { ok = true, category = "ok", en, ko }
--   codes.fail(category, en, ko, retryable) { category, en, ko, retryable }
--
-- always English first, then the document's Korean, category being one of
-- ksms.errors.categories. Tables live beside their adapter
-- (providers/ppurio_codes.lua, providers/cafe24_codes.lua, the Senders and
-- MessageMe tables in their modules, oneshot/codes.lua).
--
--   codes.lookup(tbl, code) -> entry, key | nil, key
--     code as decoded (a string, or a number such as 5.0 from cjson):
--     found under its string or its whole-number form; key is the code as
--     errors carry it (nil when code is neither a string nor a whole number).
--   codes.error(provider, tbl, code, fields, on_send) -> err
--     the error for a code that is not success: a documented one with its
--     category (maybe_sent = false: the provider answered it refused), an
--     undocumented one by the policy below; nil for a success entry.
--     fields are copied in last (a caller's message replaces ours).
--
-- Undocumented codes: category "unknown", retryable = false, and on a send
-- (on_send true) maybe_sent = true, since the provider answered something
-- ksms cannot read and may have accepted the message. HTTP adapters and
-- OneShot alike.
-- @module ksms.codes
-- @alias _M

local errors = require "ksms.errors"

local type, pairs, tonumber, tostring = type, pairs, tonumber, tostring
local format, floor = string.format, math.floor
local tointeger = math.tointeger

local _M = { _VERSION = "0.2.0" }

--- A code-table entry for a success.
-- @tparam string en
-- @tparam[opt] string ko
-- @treturn table
function _M.ok(en, ko)
  return { ok = true, category = "ok", en = en, ko = ko or en }
end

--- A code-table entry for a failure.
-- @tparam string category one of ksms.errors.categories
-- @tparam string en
-- @tparam[opt] string ko
-- @tparam[opt] boolean retryable
-- @treturn table
function _M.fail(category, en, ko, retryable)
  if not errors.categories[category] then
    error("ksms.codes: unknown category '" .. tostring(category) .. "'", 2)
  end
  return { category = category, en = en, ko = ko or en, retryable = retryable or false }
end

-- A whole number as an integer where the interpreter has them (5.0 -> 5).
local function whole(n)
  if type(n) ~= "number" or n ~= n or n ~= floor(n) or n >= 2 ^ 63 or n < -2 ^ 63 then return nil end
  return tointeger and tointeger(n) or n
end

--- A code's entry in a code table (string or number codes).
-- @tparam table tbl
-- @param code
-- @return the entry and the key it was found under, or nil
function _M.lookup(tbl, code)
  local t = type(code)
  if t == "string" then
    local e = tbl[code]
    if e then return e, code end
    local n = whole(tonumber(code))
    if n and format("%d", n) == code then -- "7" is 7; "007" and "7.0" are not
      e = tbl[n]
      if e then return e, n end
    end
    return nil, code
  end
  local n = whole(code)
  if not n then return nil, nil end
  local e = tbl[n]
  if e then return e, n end
  local s = format("%d", n)
  e = tbl[s]
  if e then return e, s end
  return nil, n
end

--- The error for an undocumented code (see the policy above).
-- what names the code in the message ("result code" by default).
function _M.undocumented(provider, code, fields, on_send, what)
  local err = {
    category = "unknown", code = code, provider = provider, retryable = false, maybe_sent = on_send and true or false,
    message = format("undocumented %s %s%s", what or "result code", tostring(code),
      on_send and "; the provider may have accepted the request" or ""),
  }
  if fields then for k, v in pairs(fields) do err[k] = v end end
  return errors.new(err)
end

--- The error object for a provider's code (an undocumented one follows the one policy: unknown, maybe_sent on a send).
-- @tparam string provider
-- @tparam table tbl
-- @param code
-- @tparam[opt] table fields
-- @tparam[opt] boolean on_send
-- @return an error object
function _M.error(provider, tbl, code, fields, on_send)
  local e, key = _M.lookup(tbl, code)
  if key == nil then key = code end
  if not e then return _M.undocumented(provider, key, fields, on_send) end
  if e.ok then return nil end
  local err = {
    category = e.category, code = key, provider = provider,
    retryable = e.retryable or false, maybe_sent = false,
    message = format("%s (%s)", e.en, e.ko), description = e.en, description_ko = e.ko,
  }
  if fields then for k, v in pairs(fields) do err[k] = v end end
  return errors.new(err)
end

return _M
