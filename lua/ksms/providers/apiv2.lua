--- ksms.providers.apiv2: the "API V2" family that Senders and MessageMe
-- share (same vendor, form POSTs answered with {"result": "<code>"}).
-- Each provider module calls define{...} with its paths, codes and extras.
--
-- Separators and the reservation format are per-provider settings, and a
-- client option can override them (recipient_separator, variable_separator,
-- reserve_format), since the documents lost the `|` in extraction.
-- @module ksms.providers.apiv2
-- @alias _M

local common = require "ksms.providers.common"
local errors = require "ksms.errors"
local message = require "ksms.message"
local schedule = require "ksms.rules.schedule"
local text_rules = require "ksms.rules.text"

local type, ipairs, pairs, tostring, tonumber, error = type, ipairs, pairs, tostring, tonumber, error
local format, concat, find, lower = string.format, table.concat, string.find, string.lower

local _M = { _VERSION = "0.2.0" }

local parse_json, outcome, chunk, combine = common.parse_json, common.outcome, common.chunk, common.combine
local misuse = errors.misuse

local function image_url_check(image)
  if type(image) ~= "string" then
    misuse("ksms: for this provider 'image' is the URL of a JPEG the provider fetches")
  end
  local path = image:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/]+(/[^?#]*)")
  if not path then
    return nil, errors.new { category = "invalid_input", code = "image",
      message = format("image %q is not an http(s) URL", image) }
  end
  local ext = lower(path:match("%.(%w+)$") or "")
  if ext ~= "jpg" and ext ~= "jpeg" then
    return nil, errors.new { category = "invalid_input", code = "image",
      message = format("image %q must be a JPEG (.jpg)", image) }
  end
  return true
end
_M.image_url_check = image_url_check

local function url_with_scheme(u, field)
  if type(u) ~= "string" then misuse(format("ksms: '%s' must be a string URL", field)) end
  if not u:match("^[Hh][Tt][Tt][Pp][Ss]?://%S+$") then
    return nil, errors.new { category = "invalid_input", code = field,
      message = format("%s %q must be a full URL starting with http:// or https://", field, u) }
  end
  return true
end

local function post(url, form)
  return { method = "POST", url = url, form = form }
end

local function reserve_fields(cfg, form, at)
  form[#form + 1] = { "send_reserve", at and "1" or "0" }
  if at then form[#form + 1] = { "send_reserve_date", schedule.format(at, cfg.reserve_format) } end
end

--- define{ name, default_base_url, paths = { sms, balance, alimtalk?, friendtalk? },
--   balance_field, codes, call_block (bool: sms_send takes call_block) }
function _M.define(p)
  local P = { name = p.name, codes = p.codes, _VERSION = _M._VERSION }

  P.limits = { charset = "cp949", sms = 90, lms = 2000, mms = 2000 }
  P.capabilities = {
    sms = true, lms = true, mms = true, reservation = true, balance = true,
    alimtalk = p.paths.alimtalk ~= nil, friendtalk = p.paths.friendtalk ~= nil,
    report = false, sender_numbers = false, history = false,
    max_recipients_per_request = 500, image = "url",
  }

  -- The options configure reads (ksms.client adds its own and refuses
  -- any other).
  P.options = {
    api_key = "string", base_url = "string", recipient_separator = "string",
    variable_separator = "string", reserve_format = "string", max_recipients_per_request = "number",
  }
  P.required = { "api_key" } -- ksms.client raises without them

  function P.configure(o)
    local base = o.base_url or p.default_base_url
    if type(base) ~= "string" or not base:match("^https?://") then
      misuse("ksms.client: base_url must be scheme://host[:port]")
    end
    base = common.strip_slashes(base)
    local urls = {}
    for name, path in pairs(p.paths) do urls[name] = base .. path end
    return {
      api_key = o.api_key, base_url = base, urls = urls,
      recipient_separator = o.recipient_separator or "|",
      variable_separator = o.variable_separator or "|",
      reserve_format = o.reserve_format or "YYYY|MM|DD|hh|mm|ss",
      max_per_request = o.max_recipients_per_request or 500,
    }
  end

  local send_spec = {
    limits = P.limits, check_image = image_url_check,
    extra_fields = p.call_block and { opt_out = true } or nil,
  }

  local function parse_result(extra)
    return function(res)
      local doc, err = parse_json(p.name, res)
      if not doc then return nil, err end
      return outcome(P, doc.result, res.body, extra)
    end
  end

  function P.plan_send(cfg, msg, ctx)
    local m, err = message.normalize_send(msg, send_spec, ctx)
    if not m then return nil, err end
    local parts = chunk(m.to, cfg.max_per_request)
    local reqs = {}
    for i, rcpts in ipairs(parts) do
      local form = { { "api_key", cfg.api_key }, { "msg", m.text } }
      if m.subject and m.subject ~= "" then form[#form + 1] = { "subject", m.subject } end
      form[#form + 1] = { "callback", m.from }
      form[#form + 1] = { "dstaddr", concat(rcpts, cfg.recipient_separator) }
      if m.image then form[#form + 1] = { "image", m.image } end
      reserve_fields(cfg, form, m.at)
      -- An ad's 080 opt-out is the provider's call_block (docs/ads.md).
      if p.call_block then form[#form + 1] = { "call_block", (m.opt_out or m.ad) and "1" or "0" } end
      reqs[i] = post(cfg.urls.sms, form)
    end
    local extra = message.ad_extra({ kind = m.kind, bytes = m.bytes, recipients = #m.to, reserved_at = m.at }, m)
    local parse = parse_result({ kind = m.kind })
    return { requests = reqs, checked = message.checked(m), finish = function(outs) return combine(P, parts, outs, parse, extra) end }
  end

  function P.plan_balance(cfg)
    local req = post(cfg.urls.balance, { { "api_key", cfg.api_key } })
    return { requests = { req }, finish = function(outs)
      local o = outs[1] -- a response: the client keeps transport errors
      local doc, err = parse_json(p.name, o)
      if not doc then return nil, err end
      local value = doc[p.balance_field]
      if value == nil then return outcome(P, doc.result, o.body) end
      local n = (type(value) == "string" or type(value) == "number") and tonumber(value) or nil
      if not common.finite(n) then
        return nil, errors.new { category = "protocol", code = "bad_response", provider = p.name,
          message = format("balance %s is not a number", common.show(value)), raw = o.body }
      end
      return { ok = true, provider = p.name, balance = n, unit = p.balance_unit, code = "100", raw = o.body }
    end }
  end

  -- One request per recipient: the documents give AlimTalk and FriendTalk
  -- a single dstaddr.
  local function per_recipient(url, m, build, kind)
    local reqs, parts = {}, {}
    for i, n in ipairs(m.to) do
      reqs[i] = post(url, build(n))
      parts[i] = { n }
    end
    local parse = parse_result({ kind = kind })
    local extra = { kind = kind, recipients = #m.to, reserved_at = m.at }
    return { requests = reqs, finish = function(outs) return combine(P, parts, outs, parse, extra) end }
  end

  local function common_kakao(msg, ctx, what, fields)
    if type(msg) ~= "table" then misuse("ksms: " .. what .. " needs a message table") end
    for k in pairs(msg) do
      if not fields[k] then misuse(format("ksms: unknown field '%s' in %s", tostring(k), what)) end
    end
    local to, err = message.recipients(msg.to, nil, what)
    if not to then return nil, err end
    local from
    from, err = message.sender(msg.from, what)
    if not from then return nil, err end
    local at
    if msg.at ~= nil then
      at, err = message.reservation(msg.at, ctx)
      if not at then return nil, err end
    end
    if msg.fallback ~= nil and type(msg.fallback) ~= "boolean" then
      misuse("ksms: 'fallback' must be a boolean (send an SMS/LMS when Kakao fails)")
    end
    return { to = to, from = from, at = at, fallback = msg.fallback == true }
  end

  if p.paths.alimtalk then
    local FIELDS = { template = true, variables = true, to = true, from = true, fallback = true, at = true }
    function P.plan_alimtalk(cfg, msg, ctx)
      -- Programmer errors first: they raise whatever the data says.
      if type(msg) == "table" and (type(msg.template) ~= "string" or msg.template == "") then
        misuse("ksms: alimtalk needs 'template' (the approved template code)")
      end
      local m, err = common_kakao(msg, ctx, "alimtalk", FIELDS)
      if not m then return nil, err end
      local vars = msg.variables or {}
      if type(vars) ~= "table" then misuse("ksms: 'variables' must be a list of strings") end
      local values = {}
      for i, v in ipairs(vars) do
        if type(v) ~= "string" and type(v) ~= "number" then
          misuse(format("ksms: variable %d must be a string", i))
        end
        v = tostring(v)
        if find(v, cfg.variable_separator, 1, true) then
          return nil, errors.new { category = "invalid_input", code = "variable", provider = p.name,
            message = format("variable %d contains %q, the separator, which the provider forbids", i, cfg.variable_separator) }
        end
        local ok, cerr = text_rules.check_charset(v, "cp949", "variable " .. i)
        if m.fallback and not ok then return nil, cerr end
        values[i] = v
      end
      local variable = concat(values, cfg.variable_separator)
      return per_recipient(cfg.urls.alimtalk, m, function(n)
        local form = { { "api_key", cfg.api_key }, { "template_code", msg.template },
          { "variable", variable }, { "callback", m.from }, { "dstaddr", n } }
        reserve_fields(cfg, form, m.at)
        form[#form + 1] = { "next_type", m.fallback and "1" or "0" }
        return form
      end, "alimtalk")
    end
  end

  if p.paths.friendtalk then
    local FIELDS = { channel = true, text = true, button = true, image = true, image_link = true,
      to = true, from = true, fallback = true, at = true }
    for k in pairs(message.ad_fields) do FIELDS[k] = true end -- FriendTalk ads: docs/ads.md
    local function invalid(code, fmt, ...) return common.invalid(p.name, code, fmt, ...) end
    function P.plan_friendtalk(cfg, msg, ctx)
      if type(msg) == "table" then
        if type(msg.channel) ~= "string" or msg.channel == "" then
          misuse("ksms: friendtalk needs 'channel' (the Kakao channel id, e.g. @shop)")
        end
        if type(msg.text) ~= "string" then misuse("ksms: friendtalk needs 'text'") end
      end
      local m, err = common_kakao(msg, ctx, "friendtalk", FIELDS)
      if not m then return nil, err end
      -- An ad is composed before it is counted, and held or refused at night.
      local text
      text, err = message.ad_text(msg, ctx, "friendtalk")
      if not text then return nil, err end
      local given = m.at
      m.at, err = message.ad_night(msg, ctx, m.at, true)
      if err then return nil, err end
      if m.at ~= given then
        m.at, err = message.reservation(m.at, ctx)
        if not m.at then return nil, err end
      end
      local chars = text_rules.chars(text)
      local limit = msg.image and 400 or 1000
      if chars == 0 then
        return nil, errors.new { category = "message_length", code = "empty", provider = p.name, message = "text is empty" }
      end
      if chars > limit then
        return nil, errors.new { category = "message_length", code = "too_long", provider = p.name,
          message = format("text is %d characters; FriendTalk allows %d%s", chars, limit,
            msg.image and " with an image" or ""), chars = chars, limit = limit }
      end
      if m.fallback then
        local ok, cerr = text_rules.check_charset(text, "cp949", "text (for the SMS fallback)")
        if not ok then return nil, cerr end
      end
      local button = msg.button
      if button ~= nil then
        if type(button) ~= "table" or type(button.name) ~= "string" or type(button.url) ~= "string" then
          misuse("ksms: 'button' must be { name = ..., url = ... }")
        end
        local n = text_rules.chars(button.name)
        if n == 0 or n > 10 then return invalid("button", "button name %q must be 1 to 10 characters", button.name) end
        local ok, uerr = url_with_scheme(button.url, "button_url")
        if not ok then return nil, uerr end
      end
      if msg.image ~= nil then
        local ok, ierr = image_url_check(msg.image)
        if not ok then return nil, ierr end
      end
      if msg.image_link ~= nil then
        if msg.image == nil then return invalid("image_link", "image_link needs an image") end
        local ok, uerr = url_with_scheme(msg.image_link, "image_link_url")
        if not ok then return nil, uerr end
      end
      return per_recipient(cfg.urls.friendtalk, m, function(n)
        local form = { { "api_key", cfg.api_key }, { "kakaochannel", msg.channel }, { "msg", text },
          { "button_type", button and "1" or "0" } }
        if button then
          form[#form + 1] = { "button_name", button.name }
          form[#form + 1] = { "button_url", button.url }
        end
        if msg.image then form[#form + 1] = { "image", msg.image } end
        if msg.image_link then form[#form + 1] = { "image_link_url", msg.image_link } end
        form[#form + 1] = { "callback", m.from }
        form[#form + 1] = { "dstaddr", n }
        reserve_fields(cfg, form, m.at)
        form[#form + 1] = { "next_type", m.fallback and "1" or "0" }
        return form
      end, "friendtalk")
    end
  end

  return P
end

return _M
