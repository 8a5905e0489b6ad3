--- ksms.message: checks and normalises what a caller hands to send(), the
-- same way for every provider, before any request exists.
--
-- Programmer misuse (wrong types, unknown fields, missing required fields)
-- raises. Data a provider would refuse (a bad number, text too long, a
-- character the charset lacks, a reservation in the past) returns nil, err.
-- @module ksms.message
-- @alias _M

local ad_rules = require "ksms.rules.ad"
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
  at = true, kind = true, expires_at = true,
  -- advertising (ksms.rules.ad, docs/ads.md): ad = true composes the
  -- text; ad_name / ad_opt_out override the client's ad option; night
  -- ("refuse" | "hold") and night_consent decide 21:00-08:00 KST.
  ad = true, ad_name = true, ad_opt_out = true, night = true, night_consent = true }
_M.ad_fields = { ad = true, ad_name = true, ad_opt_out = true, night = true, night_consent = true }

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

local NIGHT = { refuse = true, hold = true }

--- Checks the client's `ad` option (raises on misuse) and returns it.
-- @param opt nil or { name = string, opt_out = string, night = "refuse"|"hold" }
-- @tparam string who the caller, for the message
-- @return the option table or nil
function _M.check_ad_option(opt, who)
  if opt == nil then return nil end
  if type(opt) ~= "table" then misuse(who .. ": option 'ad' must be a table { name = ..., opt_out = ... }") end
  for k, v in pairs(opt) do
    if k ~= "name" and k ~= "opt_out" and k ~= "night" then
      misuse(format("%s: unknown field '%s' in option 'ad' (name, opt_out, night)", who, tostring(k)))
    end
    if k == "night" then
      if not NIGHT[v] then misuse(who .. ": ad.night must be \"refuse\" or \"hold\"") end
    elseif type(v) ~= "string" then
      misuse(format("%s: ad.%s must be a string", who, k))
    end
  end
  return opt
end

-- Misuse in a message's ad fields raises at the caller's line.
local function check_ad_fields(msg)
  local ad = msg.ad
  if ad ~= nil and type(ad) ~= "boolean" then misuse("ksms: 'ad' must be a boolean (true: an advertising message)") end
  if msg.night_consent ~= nil and type(msg.night_consent) ~= "boolean" then
    misuse("ksms: 'night_consent' must be a boolean")
  end
  for _, k in ipairs { "ad_name", "ad_opt_out" } do
    if msg[k] ~= nil and type(msg[k]) ~= "string" then misuse(format("ksms: '%s' must be a string", k)) end
  end
  if msg.night ~= nil and not NIGHT[msg.night] then misuse("ksms: 'night' must be \"refuse\" or \"hold\"") end
  if ad ~= true then
    for k in pairs(_M.ad_fields) do
      if k ~= "ad" and msg[k] ~= nil then misuse(format("ksms: '%s' is for advertising messages (ad = true)", k)) end
    end
  end
  return ad == true
end

--- An ad's text composed (ksms.rules.ad) from the message and the
-- client's ad option (ctx.ad); the text as it is when msg.ad is not true.
-- @tparam table msg
-- @tparam table ctx the client's context (ad, now)
-- @tparam string kind named in refusals
-- @return text, or nil, err (code ad_rules)
function _M.ad_text(msg, ctx, kind)
  if not check_ad_fields(msg) then return msg.text end
  local opt = ctx and ctx.ad or {}
  return ad_rules.compose(msg.text, { name = msg.ad_name or opt.name, opt_out = msg.ad_opt_out or opt.opt_out,
    kind = kind })
end

--- An ad's subject (ksms.rules.ad.subject: "(광고)" at its start); the
-- subject as it is when msg.ad is not true.
-- @tparam table msg
-- @return the subject (nil when none), or nil, err (code ad_rules)
function _M.ad_subject(msg)
  if msg.ad ~= true then return msg.subject end
  local subject, err = ad_rules.subject(msg.subject)
  if err then return nil, err end
  return subject
end

--- The night rule for an ad going out at `at` (nil: now, by ctx.now).
-- @tparam table msg
-- @tparam table ctx
-- @param at the reservation epoch or nil
-- @tparam boolean can_hold whether the provider takes reservations
-- @tparam[opt] number min_lead seconds a reservation must be ahead
-- @return the reservation epoch to use (nil: send now), or nil, err (code ad_night)
function _M.ad_night(msg, ctx, at, can_hold, min_lead)
  if msg.ad ~= true then return at end
  local now = ctx.now()
  local opt = ctx.ad or {}
  local verdict, err = ad_rules.night(at or now, { consent = msg.night_consent,
    night = msg.night or opt.night, can_hold = can_hold })
  if not verdict then return nil, err end
  if verdict == true then return at end
  -- Held: 08:00 KST, or later when the provider needs more lead (a
  -- minute more: the request leaves a moment after this check).
  local lead = now + (min_lead or 0) + 60
  if verdict < lead then verdict = lead end
  return verdict
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
  -- An ad is composed first: the prefix and footer count in the bytes
  -- and may make an SMS an LMS.
  local text
  text, err = _M.ad_text(msg, ctx, msg.kind or "auto")
  if not text then return nil, err end
  local kind, bytes = text_rules.choose_kind(text, msg.kind, has_image, spec.limits)
  if not kind then return nil, bytes end
  local subject, serr = _M.ad_subject(msg)
  if serr then return nil, serr end
  if subject and subject ~= "" then
    local ok, cerr = text_rules.check_charset(subject, spec.limits.charset or "cp949", "subject")
    if not ok then return nil, cerr end
  end
  local at
  if msg.at ~= nil then
    at, err = _M.reservation(msg.at, ctx, spec.min_lead)
    if not at then return nil, err end
  end
  local held_until
  if msg.ad then
    local given = at
    at, err = _M.ad_night(msg, ctx, at, spec.reservation ~= false, spec.min_lead)
    if err then return nil, err end
    if at ~= given then held_until = at end
  end
  local out = { to = to, from = from, text = text, ad = msg.ad == true, held_until = held_until, subject = subject, image = msg.image,
    image_data = image_data, at = at, kind = kind, bytes = bytes }
  for k in pairs(spec.extra_fields or {}) do out[k] = msg[k] end
  return out
end

--- What the checks decided of a normalised message, for client:check and
-- the results: kind, bytes, the text as sent (an ad composed), ad, and
-- held_until (an ad held by the night rule: the reservation it got).
-- @tparam table m a normalize_send result
-- @treturn table
function _M.checked(m)
  return { kind = m.kind, bytes = m.bytes, text = m.text, ad = m.ad or nil, held_until = m.held_until,
    subject = m.ad and m.subject or nil }
end

--- Adds an ad's facts to a result's extra fields (text composed, held_until).
-- @tparam table extra
-- @tparam table m a normalize_send result
-- @treturn table extra
function _M.ad_extra(extra, m)
  if m.ad then extra.ad, extra.text, extra.subject, extra.held_until = true, m.text, m.subject, m.held_until end
  return extra
end

return _M
