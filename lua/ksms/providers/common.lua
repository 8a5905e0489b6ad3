--- ksms.providers.common: what every adapter does with answers: read a JSON
-- answer, map a provider code to a result or an error, split recipients
-- into chunks, and combine the outcomes of several requests of one call.
-- @module ksms.providers.common
-- @alias _M

local cjson = require "cjson.safe"
local errors = require "ksms.errors"
local codes = require "ksms.codes"
local rate = require "ksms.rate"

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local format, concat = string.format, table.concat
local find, byte, sub = string.find, string.byte, string.sub
local floor, HUGE = math.floor, math.huge

local _M = { _VERSION = "0.2.0" }

-- Our own instance: an application's cjson settings never change how
-- answers read.
local json = cjson.new()

-- Answers are read in linear time whatever they hold: patterns such as
-- "^%s*(.-)%s*$" or "%s+$" are quadratic on a long blank run that is not
-- at the end, so trimming finds the first non-blank with a single-class
-- find and the last one with a byte scan.
local BLANK = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

--- s without leading and trailing ASCII whitespace (what %s matches).
function _M.trim(s)
  local first = find(s, "%S")
  if not first then return "" end
  local last = #s
  while BLANK[byte(s, last)] do last = last - 1 end
  return sub(s, first, last)
end

--- s without trailing slashes (base URLs).
function _M.strip_slashes(s)
  local last = #s
  while byte(s, last) == 47 do last = last - 1 end
  return sub(s, 1, last)
end

--- A scalar of a decoded answer as a string: a string as it is, a whole
-- number as its digits (cjson decodes 100 as 100.0 under Lua 5.4; "%d"
-- raises beyond the 64-bit range), nil for anything else (a table, a
-- boolean, null, NaN, infinities, fractions).
function _M.str(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" and v == floor(v) and v >= -2 ^ 63 and v < 2 ^ 63 then return format("%d", v) end
  return nil
end

--- true for a number that is neither NaN nor infinite.
function _M.finite(n)
  return type(n) == "number" and n == n and n ~= HUGE and n ~= -HUGE
end

--- How a value from an answer reads in a message: never a table's address.
function _M.show(v)
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then return "an array or object" end
  if v == nil then return "nothing" end
  return "null"
end

--- A JSON document (a table) or nil.
function _M.decode_json(body)
  local doc = type(body) == "string" and json.decode(body) or nil
  if type(doc) ~= "table" then return nil end
  return doc
end

--- nil, err for input refused before sending: category invalid_input.
function _M.invalid(provider, code, fmt, ...)
  return nil, errors.new { category = "invalid_input", code = code, provider = provider,
    message = format(fmt, ...) }
end

--- A provider's answer to one request: parsed JSON, or an error. (A 429
-- never gets here through ksms.client, which maps it first with the
-- client's clock; read directly it is the same rate_limit refusal.)
function _M.parse_json(provider, res)
  if res.status == 429 then return nil, rate.http_429(provider, res, os.time()) end
  if res.status ~= 200 then
    return nil, errors.new {
      category = "server", code = "http_" .. tostring(res.status), provider = provider,
      message = "HTTP " .. tostring(res.status) .. " from the provider", -- %d raises on 200.5
      retryable = false, maybe_sent = res.status >= 500,
      raw = res.body,
    }
  end
  local doc = _M.decode_json(res.body)
  if not doc then
    return nil, errors.new {
      category = "protocol", code = "bad_response", provider = provider,
      message = "the provider's answer is not the documented JSON; it may have accepted the request",
      retryable = false, maybe_sent = true, raw = res.body,
    }
  end
  return doc
end

--- Maps a documented return code to a result or an error. code is the
-- answer's value as decoded: a code that is not a string or a whole
-- number (missing, a table, a boolean) is a protocol error; a code the
-- table does not list is ksms.codes' undocumented-code policy.
-- p = { name = provider, codes = a ksms.codes table }
function _M.outcome(p, code, raw, extra)
  local value = code
  code = _M.str(value)
  if not code then
    return nil, errors.new {
      category = "protocol", code = "bad_response", provider = p.name, retryable = false, maybe_sent = true,
      message = format("the answer's return code is %s, not a code; the provider may have accepted the request",
        _M.show(value)),
      raw = raw,
    }
  end
  local info = codes.lookup(p.codes, code)
  if not info then return nil, codes.undocumented(p.name, code, { raw = raw }, true, "return code") end
  if not info.ok then return nil, codes.error(p.name, p.codes, code, { raw = raw }) end
  local r = { ok = true, provider = p.name, code = code, raw = raw,
    description = info.en, description_ko = info.ko }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

--- list cut into lists of at most size.
-- @tparam table list
-- @tparam integer size
-- @treturn table
function _M.chunk(list, size)
  local out = {}
  for i = 1, #list, size do
    local c = {}
    for k = i, math.min(i + size - 1, #list) do c[#c + 1] = list[k] end
    out[#out + 1] = c
  end
  return out
end

--- Combines the outcomes of several requests of one call (chunks of
-- recipients, or one request per recipient) into one result, or one error
-- that says which parts failed and which were accepted.
function _M.combine(p, parts, outs, parse, extra)
  local results, failed = {}, {}
  for i, o in ipairs(outs) do
    local r, err
    if errors.is(o) then err = o else r, err = parse(o) end
    results[i] = { index = i, recipients = parts[i], ok = r ~= nil, result = r, error = err }
    if not r then failed[#failed + 1] = results[i] end
  end
  if #failed == 0 then
    local first = results[1].result
    if #parts == 1 then
      for k, v in pairs(extra) do first[k] = v end
      return first
    end
    local raws = {}
    for i, r in ipairs(results) do raws[i] = r.result.raw end
    local r = { ok = true, provider = p.name, code = first.code, raw = raws, parts = results,
      description = first.description, description_ko = first.description_ko }
    for k, v in pairs(extra) do r[k] = v end
    return r
  end
  if #parts == 1 then return nil, failed[1].error end
  local accepted, maybe = {}, false
  for _, r in ipairs(results) do
    if r.ok then for _, n in ipairs(r.recipients) do accepted[#accepted + 1] = n end end
    if r.error and r.error.maybe_sent then maybe = true end
  end
  local which = {}
  for i, f in ipairs(failed) do which[i] = tostring(f.index) end
  local first = failed[1].error
  return nil, errors.new {
    category = first.category, code = first.code, provider = p.name,
    retryable = false, maybe_sent = maybe, partial = #accepted > 0,
    message = format("part %s of %d failed (%s); %d recipients were accepted",
      concat(which, ", "), #parts, first.message, #accepted),
    parts = results, accepted = accepted,
  }
end

return _M
