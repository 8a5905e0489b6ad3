--- ksms.rules.ad: advertising messages as Korean law wants them, decided
-- before sending. Pure functions: no I/O, no host time zone.
--
--   ad.compose(text, { name, opt_out, kind, channel }) -> text, info | nil, err
--   ad.subject(subject)                          -> subject | nil, err
--   ad.opt_out_number(s)                         -> "080-123-4567" | nil, err
--   ad.is_night(epoch)                           -> true between 21:00 and 08:00 KST
--   ad.morning(epoch)                            -> the next 08:00 KST at or after epoch
--   ad.night(epoch, { consent, night, can_hold }) -> true | hold_until | nil, err
--
-- The rules (정보통신망법 제50조 제4항, its enforcement decree 제61조 and
-- 별표 6, as the KISA guide to the law spells them out for text messages):
--   * the message starts with "(광고)", written exactly so: "(광 고)",
--     "[광고]", "( 광고 )", "<광고>", full-width brackets and the like are
--     named by the guide as not meeting it, so they are refused, not fixed;
--   * the sender's name (and contact) follows it, at the start;
--   * a free way to refuse: for SMS/LMS/MMS "무료거부" or "무료수신거부"
--     with a free (080) number, at the end;
--   * 제50조 제3항: between 21:00 and 08:00 (Korea time) an ad needs the
--     recipient's separate prior consent.
-- FriendTalk ads follow the same composition (Kakao's own guide asks for
-- "(광고)" and the channel name at the start and a refusal way; the 080
-- line is one).
--
-- Accepted forms when the text already carries them (kept as is):
--   prefix: "(광고)" at the very start, then the name, with or without one
--     space: "(광고)ksms상사 ..." or "(광고) ksms상사 ...";
--   footer: the last non-empty line is "무료거부" or "무료수신거부", an
--     optional ":" and spaces, then an 080 number with or without hyphens
--     or spaces: "무료거부 080-123-4567", "무료수신거부: 0801234567".
-- Composed: "(광고)" .. name .. "\n" .. text .. "\n무료거부 " .. number.
-- A subject (LMS/MMS) given with an ad starts with "(광고)" too: the
-- handset shows the subject before the text, so an ad whose subject came
-- first without the marker would open unmarked (ksms's choice; the text
-- keeps its own prefix, which is what the rules name). The name and the
-- footer stay in the text.
-- Refusals are category invalid_input, code ad_rules (err.reason says
-- which rule); the night rule's is code ad_night.
-- @module ksms.rules.ad
-- @alias _M

local errors = require "ksms.errors"

local type, ipairs, floor = type, ipairs, math.floor
local format, find, sub, gsub, match, byte = string.format, string.find, string.sub, string.gsub, string.match, string.byte

local _M = { _VERSION = "0.2.0" }

local PREFIX = "(광고)"
local KST_OFFSET = 9 * 3600
local NIGHT_FROM, NIGHT_TO = 21 * 3600, 8 * 3600 -- seconds into the Korea day

local function refuse(reason, message)
  return nil, errors.new { category = "invalid_input", code = "ad_rules", reason = reason,
    message = "advertising message: " .. message }
end

local function trim(s) return (gsub(gsub(s, "^%s+", ""), "%s+$", "")) end

--- An opt-out number checked: a free 080 number, digits with optional
-- hyphens or spaces, returned as 080-XXX-XXXX (or 080-XXXX-XXXX).
-- @tparam string s
-- @return the number formatted, or nil, err (code ad_rules)
function _M.opt_out_number(s)
  if type(s) ~= "string" then return refuse("opt_out", "no opt-out number (ad.opt_out: an 080 number)") end
  local digits = gsub(s, "[%-%s]", "")
  if not match(digits, "^080%d%d%d%d%d%d%d%d?$") then
    return refuse("opt_out", format("opt-out number %q is not a free 080 number (무료거부 needs 080)", s))
  end
  if #digits == 10 then return sub(digits, 1, 3) .. "-" .. sub(digits, 4, 6) .. "-" .. sub(digits, 7) end
  return sub(digits, 1, 3) .. "-" .. sub(digits, 4, 7) .. "-" .. sub(digits, 8)
end

-- Opening and closing marks a look-alike "광고" is wrapped in (ASCII and
-- the full-width and CJK brackets Korean keyboards give).
local OPEN = { "%(", "%[", "<", "{", "（", "［", "〈", "《", "【", "「", "『", "＜", "〔" }
local CLOSE = { "%)", "%]", ">", "}", "）", "］", "〉", "》", "】", "」", "』", "＞", "〕" }

-- The first look-alike of the prefix in s: a bracket, spaces or not,
-- 광, spaces or not, 고, spaces or not, a bracket; the exact "(광고)" is
-- not one. Returns the look-alike or nil. Linear: one find per bracket pair.
local function variant(s)
  for i = 1, #OPEN do
    for j = 1, #CLOSE do
      local pat = OPEN[i] .. "[%s%.%-/·]*광[%s%.%-/·]*고[%s%.%-/·]*" .. CLOSE[j]
      local init = 1
      while true do
        local a, b = find(s, pat, init)
        if not a then break end
        local found = sub(s, a, b)
        if found ~= PREFIX then return found end
        init = b + 1
      end
    end
  end
  return nil
end

local WS = " \t\r\n\v\f"
local FOOTER_WORDS = { "무료수신거부", "무료거부" }

-- The footer of s when its last non-empty line is an accepted one:
-- returns true; false, why when that line is an opt-out line the rules do
-- not accept; nil when it is no opt-out line at all.
local function footer(s)
  -- The last non-empty line, found from the end (linear in the text).
  local e = #s
  while e > 0 and find(WS, sub(s, e, e), 1, true) do e = e - 1 end
  local b = e
  while b > 0 and byte(s, b) ~= 10 do b = b - 1 end
  local last = trim(sub(s, b + 1, e))
  for _, w in ipairs(FOOTER_WORDS) do
    if sub(last, 1, #w) == w then
      local rest = trim(gsub(sub(last, #w + 1), "^%s*:?", ""))
      local digits = gsub(rest, "[%-%s]", "")
      if match(digits, "^080%d%d%d%d%d%d%d%d?$") then return true end
      return false, format("the opt-out line %q needs a free 080 number", last)
    end
  end
  if find(last, "수신거부", 1, true) or find(last, "무료 거부", 1, true) then
    return false, format("the opt-out line %q must start with 무료거부 or 무료수신거부", last)
  end
  return nil
end

--- Composes an ad's text: "(광고)" and the name at the start, the opt-out
-- line at the end, unless the text carries them in an accepted form.
-- @tparam string text
-- @tparam table opts name (the sender's name), opt_out (an 080 number),
--   kind ("sms", "lms", "mms", "friendtalk", ...: named in refusals), channel (unused by the rules, kept for callers)
-- @return the composed text and { prefixed = bool, footed = bool }, or nil, err
function _M.compose(text, opts)
  if type(text) ~= "string" then return refuse("text", "text must be a string") end
  opts = opts or {}
  local name = opts.name
  if type(name) ~= "string" or trim(name) == "" then
    return refuse("name", "no sender name (ad.name or ad_name): the law asks for it after (광고)")
  end
  name = trim(name)
  local bad = variant(text)
  if bad then
    return refuse("prefix", format("%q is not the (광고) marker the law asks for; write exactly (광고) at the start", bad))
  end
  local info = { prefixed = false, footed = false }
  local out = text
  if sub(text, 1, #PREFIX) == PREFIX then
    local after = gsub(sub(text, #PREFIX + 1), "^ ", "")
    if sub(after, 1, #name) ~= name then
      return refuse("name", format("the text starts with (광고) but not with the sender name %q after it", name))
    end
  else
    out = PREFIX .. name .. "\n" .. out
    info.prefixed = true
  end
  local has, why = footer(text)
  if has == false then return refuse("opt_out", why) end
  if not has then
    local number, err = _M.opt_out_number(opts.opt_out)
    if not number then return nil, err end
    out = out .. "\n무료거부 " .. number
    info.footed = true
  end
  return out, info
end

--- An ad's subject: "(광고)" put at its start unless it starts so; a
-- look-alike ("[광고]", "(광 고)", ...) anywhere in it is refused, as in
-- the text. nil or "" comes back as it is (no subject).
-- @param subject string or nil
-- @return the subject, or nil, err (code ad_rules, reason prefix)
function _M.subject(subject)
  if type(subject) ~= "string" or subject == "" then return subject end
  local bad = variant(subject)
  if bad then
    return refuse("prefix", format("the subject's %q is not the (광고) marker the law asks for; write exactly (광고)", bad))
  end
  if sub(subject, 1, #PREFIX) == PREFIX then return subject end
  return PREFIX .. subject
end

--- Whether an epoch falls between 21:00 and 08:00 Korea time.
-- @tparam number epoch
-- @treturn boolean
function _M.is_night(epoch)
  local s = (floor(epoch) + KST_OFFSET) % 86400
  return s >= NIGHT_FROM or s < NIGHT_TO
end

--- The first 08:00 Korea time at or after epoch.
-- @tparam number epoch
-- @treturn number
function _M.morning(epoch)
  local k = floor(epoch) + KST_OFFSET
  local day, s = floor(k / 86400), k % 86400
  if s > NIGHT_TO then day = day + 1 end
  return day * 86400 + NIGHT_TO - KST_OFFSET
end

--- The night rule for an ad sent (or reserved) at epoch.
-- @tparam number epoch when it would go out
-- @tparam table opts consent (night_consent), night ("refuse" (default) or
--   "hold"), can_hold (the provider takes reservations)
-- @return true (send it), a number (hold it until then), or nil, err (code ad_night)
function _M.night(epoch, opts)
  opts = opts or {}
  if not _M.is_night(epoch) or opts.consent == true then return true end
  local when = require("ksms.rules.schedule").format(epoch, "YYYY-MM-DD hh:mm")
  if opts.night == "hold" then
    if opts.can_hold then return _M.morning(epoch) end
    return nil, errors.new { category = "invalid_input", code = "ad_night", reason = "cannot_hold",
      message = format("advertising message at %s KST (21:00-08:00) cannot be held until 08:00: "
        .. "this provider takes no reservations; send it after 08:00 or with night_consent", when) }
  end
  return nil, errors.new { category = "invalid_input", code = "ad_night", reason = "night",
    message = format("advertising message at %s KST: between 21:00 and 08:00 an ad needs the recipient's "
      .. "prior consent (night_consent = true) or night = \"hold\" (정보통신망법 제50조 제3항)", when) }
end

return _M
