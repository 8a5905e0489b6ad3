--- ksms.message: checks and normalises what a caller hands to send(), the
-- same way for every provider, before any request exists.
--
-- Programmer misuse (wrong types, unknown fields, missing required fields)
-- raises. Data a provider would refuse (a bad number, text too long, a
-- character the charset lacks, a reservation in the past) returns nil, err.
-- @module ksms.message
-- @alias _M

local phone = require "ksms.rules.phone"
local schedule = require "ksms.rules.schedule"
local text_rules = require "ksms.rules.text"

local type, ipairs, pairs, error = type, ipairs, pairs, error
local format = string.format
local misuse = require("ksms.errors").misuse

local _M = { _VERSION = "0.2.0" }

-- expires_at (epoch seconds): the client sends nothing for the message
-- once it has passed (ksms.client's send_many, the OneShot session).
local COMMON_FIELDS = { to = true, from = true, text = true, subject = true, image = true,
  at = true, kind = true, expires_at = true }

local function check_fields(msg, extra, what)
  if type(msg) ~= "table" then misuse(format("ksms: %s needs a message table", what)) end
  for k in pairs(msg) do
    if not COMMON_FIELDS[k] and not (extra and extra[k]) then
      misuse(format("ksms: unknown field '%s' in %s", tostring(k), what))
    end
  end
end

--- Recipients: one number or a list; each normalised, all checked. A Lua
-- number goes to phone.normalize too, which says why it cannot be one.
function _M.recipients(to, max, what)
  local t = type(to)
  if t == "string" or t == "number" then to = { to } end
  if type(to) ~= "table" or #to == 0 then
    misuse(format("ksms: %s needs 'to' (a phone number as a string, or a list of them)", what or "send"))
  end
  local out = {}
  for i, n in ipairs(to) do
    local d, err = phone.normalize(n, "to")
    if not d then return nil, err end
    out[i] = d
  end
  if max and #out > max then
    return nil, require("ksms.errors").new {
      category = "recipient", code = "too_many",
      message = format("%d recipients; this operation takes at most %d", #out, max),
    }
  end
  return out
end

--- The caller number checked and normalised.
-- @param from
-- @tparam[opt] string what the call, for the message
-- @treturn string digits
function _M.sender(from, what)
  if from == nil then misuse(format("ksms: %s needs 'from' (the caller number)", what or "send")) end
  return phone.normalize(from, "from")
end

--- A reservation time checked (not in the past, min_lead ahead), Korea time.
-- @param at epoch or date table
-- @param ctx
-- @tparam[opt] number min_lead seconds
-- @return epoch or nil, or nil, err
function _M.reservation(at, ctx, min_lead)
  if at == nil then return nil end
  return schedule.resolve(at, { now = ctx.now(), min_lead = min_lead })
end

--- normalize_send(msg, spec, ctx) -> normalised message | nil, err
-- spec: limits (see ksms.rules.text), extra_fields (provider fields
-- allowed beside the common ones), check_image(image) -> true | nil, err,
-- min_lead (seconds a reservation must be ahead).
function _M.normalize_send(msg, spec, ctx)
  check_fields(msg, spec.extra_fields, "send")
  if type(msg.text) ~= "string" then misuse("ksms: send needs 'text' (a string)") end
  if msg.subject ~= nil and type(msg.subject) ~= "string" then misuse("ksms: 'subject' must be a string") end
  if msg.expires_at ~= nil and type(msg.expires_at) ~= "number" then
    misuse("ksms: 'expires_at' must be a number (epoch seconds)")
  end
  local to, err = _M.recipients(msg.to, nil, "send")
  if not to then return nil, err end
  local from
  from, err = _M.sender(msg.from, "send")
  if not from then return nil, err end
  local has_image = msg.image ~= nil
  local image_data
  if has_image then
    if not spec.check_image then misuse("ksms: this provider does not send images") end
    local ok, ierr = spec.check_image(msg.image)
    if not ok then return nil, ierr end
    if type(ok) == "table" then image_data = ok end -- what the check loaded
  end
  local kind, bytes = text_rules.choose_kind(msg.text, msg.kind, has_image, spec.limits)
  if not kind then return nil, bytes end
  if msg.subject and msg.subject ~= "" then
    local ok, serr = text_rules.check_charset(msg.subject, spec.limits.charset or "cp949", "subject")
    if not ok then return nil, serr end
  end
  local at
  if msg.at ~= nil then
    at, err = _M.reservation(msg.at, ctx, spec.min_lead)
    if not at then return nil, err end
  end
  local out = { to = to, from = from, text = msg.text, subject = msg.subject, image = msg.image,
    image_data = image_data, at = at, kind = kind, bytes = bytes }
  for k in pairs(spec.extra_fields or {}) do out[k] = msg[k] end
  return out
end

return _M
