--- ksms check TEXT: offline. The CP949 byte count, the kind each provider
-- would send (SMS/LMS by its limits), and every character a provider's
-- charset cannot carry. Nothing is sent and no credentials are needed.
-- With --ad, the text composed as an advertising message (ksms.rules.ad)
-- is shown and checked instead.
-- @module ksms.cli.commands.check
-- @alias _M

local core = require "ksms.core"
local config = require "ksms.cli.config"
local input = require "ksms.cli.input"
local status = require "ksms.cli.status"
local text_rules = require "ksms.rules.text"
local ad_rules = require "ksms.rules.ad"

local ipairs, tostring, error, require = ipairs, tostring, error, require
local format, upper, concat = string.format, string.upper, table.concat

local _M = { _VERSION = "0.2.0" }

-- Each provider's limits, as the library declares them (ksms.client.info:
-- the adapters' tables; OneShot's are its protocol's defaults).
local function limits_of(name)
  return require("ksms.client").info(name).limits
end

-- The verdict of one provider on the text.
local function verdict(name, text)
  local limits = limits_of(name)
  local v = { provider = name, charset = upper(limits.charset), sms_limit = limits.sms, lms_limit = limits.lms }
  local ok, bad = core.charset_check(text, limits.charset)
  if not ok then
    v.ok = false
    v.unsupported = {}
    for i, b in ipairs(bad) do v.unsupported[i] = { char = b.char, position = b.pos } end
    v.reason = "charset"
    return v
  end
  local kind, err = text_rules.choose_kind(text, "auto", false, limits)
  if not kind then
    v.ok, v.reason, v.message = false, tostring(err.code), err.message
    return v
  end
  v.ok, v.kind = true, kind
  return v
end

local function run(ctx)
  local o = ctx.opts
  local text = ctx.args[1]
  if ctx.args[2] then error(status.usage("give the text as one argument (quote it), or on stdin"), 0) end
  if text == nil or text == "-" then text = input.stdin() end
  local bytes, uerr = core.cp949_len(text)
  if not bytes then error(status.usage("the text is not valid UTF-8: " .. tostring(uerr.message)), 0) end
  if bytes == 0 then error(status.usage("the text is empty"), 0) end
  local composed
  if o.ad then
    -- Composed as send --ad would (ksms.rules.ad): the verdicts are the
    -- composed text's, so an SMS the prefix and footer made an LMS shows.
    local aerr
    composed, aerr = ad_rules.compose(text, { name = o.ad_name, opt_out = o.ad_opt_out })
    if not composed then
      if ctx.out.json then
        ctx.out:json_doc({ ok = false, ad = true, error = { code = aerr.code, reason = aerr.reason, message = aerr.message } })
      else
        ctx.out:line("refused: " .. aerr.message)
      end
      return status.REFUSED
    end
    text = composed
    bytes = core.cp949_len(text)
  elseif o.ad_name or o.ad_opt_out then
    error(status.usage("--ad-name and --ad-opt-out need --ad"), 0)
  end
  local names = config.PROVIDERS
  if o.provider then
    if not config.OPTIONS[o.provider] then
      error(status.usage(format("unknown provider %q (known: %s)", o.provider, concat(config.PROVIDERS, ", "))), 0)
    end
    names = { o.provider }
  end
  local verdicts, all_ok = {}, true
  for i, name in ipairs(names) do
    verdicts[i] = verdict(name, text)
    all_ok = all_ok and verdicts[i].ok
  end
  local code = all_ok and status.OK or status.REFUSED
  local out = ctx.out
  if out.json then
    out:json_doc({ ok = all_ok, bytes = bytes, characters = text_rules.chars(text), providers = verdicts,
      ad = composed and true or nil, text = composed })
    return code
  end
  if composed then
    out:line("composed for an ad:")
    out:line(composed)
  end
  out:line(format("%d bytes in CP949 (Hangul 2, ASCII 1), %d characters", bytes, text_rules.chars(text)))
  for _, v in ipairs(verdicts) do
    local what
    if v.ok then
      what = format("%s (SMS up to %d bytes, LMS up to %d)", upper(v.kind), v.sms_limit, v.lms_limit)
    elseif v.reason == "charset" then
      local chars = {}
      for i, u in ipairs(v.unsupported) do chars[i] = format("'%s' at %d", u.char, u.position) end
      what = format("refused: %s cannot carry %s", v.charset, concat(chars, ", "))
    else
      what = "refused: " .. tostring(v.message)
    end
    out:line(format("%-10s %-7s %s", v.provider, v.charset, what))
  end
  return code
end

_M.commands = {
  {
    name = "check", summary = "offline: bytes, SMS/LMS per provider, characters a charset lacks",
    usage = "ksms check [TEXT | -] [--provider NAME] [--ad --ad-name NAME --ad-opt-out NUMBER] [--json]",
    flags = {
      { name = "ad", kind = "bool", help = "compose the text as an ad first, then check it" },
      { name = "ad-name", kind = "string", arg = "NAME", help = "the sender name after the ad marker" },
      { name = "ad-opt-out", kind = "string", arg = "NUMBER", help = "the free 080 opt-out number" },
    },
    offline = true,
    details = "Exit 0 when every provider shown can send the text, 1 when one cannot, 2 for invalid UTF-8.",
    examples = { "ksms check '됬나요? 😀'", "ksms check --ad --ad-name ksms상사 --ad-opt-out 0801234567 '주말 할인'", "cat notice.txt | ksms check --json", "ksms check --provider cafe24 '안녕하세요'" },
    run = run,
  },
}

return _M
