--- ksms.cli.ad: the advertising flags (--ad, --ad-name, --ad-opt-out,
-- --night-consent, --night) that send, friendtalk and bulk share, and the
-- message fields they give (ksms.rules.ad, docs/ads.md).
-- @module ksms.cli.ad
-- @alias _M

local status = require "ksms.cli.status"

local ipairs, pairs, error = ipairs, pairs, error
local format = string.format

local _M = { _VERSION = "0.2.0" }

--- The flags, as ksms.cli.flags takes them.
_M.FLAGS = {
  { name = "ad", kind = "bool", help = "an advertising message: the ad marker and the name first, the free 080 opt-out line last" },
  { name = "ad-name", kind = "string", arg = "NAME", help = "the sender name after the ad marker (with --ad)" },
  { name = "ad-opt-out", kind = "string", arg = "NUMBER", help = "the free 080 opt-out number (with --ad)" },
  { name = "night-consent", kind = "bool", help = "the recipients consented to ads 21:00-08:00 KST (with --ad)" },
  { name = "night", kind = "string", arg = "refuse|hold",
    help = "an ad 21:00-08:00 KST: refuse (default) or hold until 08:00 as a reservation" },
}

local DEPENDENT = { "ad_name", "ad_opt_out", "night_consent", "night" }

local function usage(msg) error(status.usage(msg), 0) end

--- The message fields the flags give: { ad, ad_name, ad_opt_out,
-- night_consent, night }, or nil when --ad is not given. Any of the other
-- flags without --ad, and --night other than refuse or hold, are a usage
-- error (exit 2).
-- @tparam table o the parsed options
-- @return a table, or nil
function _M.fields(o)
  if not o.ad then
    for _, k in ipairs(DEPENDENT) do
      if o[k] ~= nil then usage(format("--%s needs --ad", (k:gsub("_", "-")))) end
    end
    return nil
  end
  if o.night ~= nil and o.night ~= "refuse" and o.night ~= "hold" then usage("--night takes refuse or hold") end
  return { ad = true, ad_name = o.ad_name, ad_opt_out = o.ad_opt_out, night_consent = o.night_consent or nil,
    night = o.night }
end

--- Copies the flags' fields into msg (nothing without --ad); returns msg.
-- @tparam table o the parsed options
-- @tparam table msg
-- @treturn table msg
function _M.apply(o, msg)
  local f = _M.fields(o)
  if f then
    for k, v in pairs(f) do msg[k] = v end
  end
  return msg
end

return _M
