--- ksms send | alimtalk | friendtalk: one message to one or more recipients.
-- @module ksms.cli.commands.send
-- @alias _M

local flags = require "ksms.cli.flags"
local input = require "ksms.cli.input"
local provider = require "ksms.cli.provider"
local render = require "ksms.cli.render"
local status = require "ksms.cli.status"
local when = require "ksms.cli.when"
local dryrun = require "ksms.cli.dryrun"
local ad = require "ksms.cli.ad" -- the advertising flags (docs/ads.md)

local ipairs, pairs, pcall, error, tostring = ipairs, pairs, pcall, error, tostring
local format = string.format

local _M = { _VERSION = "0.2.0" }

local RECIPIENTS = {
  { name = "to", kind = "list", arg = "NUMBER", help = "recipient; repeatable or comma-separated" },
  { name = "from", kind = "string", arg = "NUMBER", help = "registered caller number (or from = in the config)" },
  { name = "at", kind = "string", arg = "TIME",
    help = "reservation, Korea time: \"2026-12-01 09:00\", @EPOCH or +30m" },
}

local SEND_FLAGS = {
  { name = "text", kind = "string", arg = "TEXT", help = "message text (\"-\": read stdin)" },
  { name = "text-file", kind = "string", arg = "PATH", help = "message text from a file" },
  { name = "subject", kind = "string", arg = "S", help = "LMS/MMS subject" },
  { name = "kind", kind = "string", arg = "KIND", help = "auto (default) | sms | lms | mms" },
  { name = "image", kind = "multi", arg = "URL|PATH",
    help = "MMS image: a JPEG URL (senders, messageme) or file (ppurio, oneshot); repeatable" },
  { name = "opt-out", kind = "bool", help = "senders: the 080 opt-out flag (call_block)" },
  { name = "from-name", kind = "string", arg = "NAME", help = "ppurio: sender name" },
  { name = "to-name", kind = "string", arg = "NAME", help = "ppurio: recipient name" },
  { name = "name", kind = "multi", arg = "NUMBER=NAME", help = "cafe24: recipient with a name for {name}; repeatable" },
  { name = "repeat", kind = "number", arg = "COUNT", help = "cafe24: send COUNT more times (1-10)" },
  { name = "repeat-interval", kind = "number", arg = "MINUTES", help = "cafe24: minutes between repeats (>= 15)" },
  { name = "msg-id", kind = "string", arg = "ID", help = "oneshot: UserMsgId (default: generated)" },
  { name = "user-data", kind = "string", arg = "S", help = "oneshot: UserData echoed in reports" },
  { name = "tran-id", kind = "string", arg = "ID", help = "oneshot: TranId" },
  { name = "reseller-code", kind = "string", arg = "CODE", help = "oneshot: ResellerCode" },
}

local ALIM_FLAGS = {
  { name = "template", kind = "string", arg = "CODE", help = "approved template code" },
  { name = "var", kind = "multi", arg = "VALUE", help = "template variable, in order; repeatable" },
  { name = "fallback", kind = "bool", help = "send an SMS/LMS when KakaoTalk fails" },
  { name = "text", kind = "string", arg = "TEXT", help = "oneshot: the message text (\"-\": stdin)" },
  { name = "sender-key", kind = "string", arg = "KEY", help = "oneshot: Kakao sender key" },
  { name = "button-json", kind = "string", arg = "JSON", help = "oneshot: KakaoButton as given" },
}

local FRIEND_FLAGS = {
  { name = "channel", kind = "string", arg = "ID", help = "Kakao channel id, e.g. @shop" },
  { name = "text", kind = "string", arg = "TEXT", help = "message text (\"-\": read stdin)" },
  { name = "text-file", kind = "string", arg = "PATH", help = "message text from a file" },
  { name = "button-name", kind = "string", arg = "NAME", help = "button label (up to 10 characters)" },
  { name = "button-url", kind = "string", arg = "URL", help = "button link" },
  { name = "image", kind = "string", arg = "URL", help = "image URL (JPEG)" },
  { name = "image-link", kind = "string", arg = "URL", help = "where the image links to" },
  { name = "fallback", kind = "bool", help = "send an SMS/LMS when KakaoTalk fails" },
  { name = "sender-key", kind = "string", arg = "KEY", help = "oneshot: Kakao sender key" },
  { name = "button-json", kind = "string", arg = "JSON", help = "oneshot: KakaoButton as given" },
}

local function usage(msg) error(status.usage(msg), 0) end

-- Flags that belong to one provider: refused elsewhere, not ignored.
local OWNER = { opt_out = "senders", from_name = "ppurio", to_name = "ppurio", name = "cafe24",
  ["repeat"] = "cafe24", repeat_interval = "cafe24", msg_id = "oneshot", user_data = "oneshot",
  tran_id = "oneshot", reseller_code = "oneshot", sender_key = "oneshot", button_json = "oneshot" }

local function check_owners(o, pname)
  for key, owner in pairs(OWNER) do
    if o[key] ~= nil and owner ~= pname then
      usage(format("--%s is for %s, not %s", key:gsub("_", "-"), owner, pname))
    end
  end
end

local function recipients(o)
  local to = o.to
  if not to or #to == 0 then usage("give at least one --to NUMBER") end
  return to
end

local function caller(o, h)
  local from = o.from or h.from
  if not from or from == "" then usage("give --from NUMBER (a registered caller number), or from = in the config") end
  return from
end

local function reservation(o, h)
  if o.at == nil then return nil end
  if not h.capabilities.reservation then usage(h.name .. " has no reservations (--at)") end
  local at, err = when.parse(o.at)
  if not at then usage(err) end
  return at
end

--- Runs one client call; a raise from the library is a usage error unless
-- something was already sent.
function _M.call(h, method, ...)
  local ok, res, err = pcall(h.client[method], h.client, ...)
  if not ok then
    local msg = provider.clean(res)
    if h:sent() > 0 then error(msg, 0) end
    usage(msg)
  end
  return res, err
end

--- The shared end of every send: dry-run output, result or error.
function _M.finish(ctx, h, what, res, err)
  if h.dry then
    if err and dryrun.is_dry(err) then return render.dry_requests(ctx, h) end
    if res == nil then return render.error(ctx, what, err, false) end
  end
  if not res then return render.error(ctx, what, err, h:sent() > 0) end
  local lines = { render.sent_line(res, h.name) }
  if res.id then lines[#lines + 1] = "id: " .. tostring(res.id) end
  if res.reserved_at then lines[#lines + 1] = "reserved for " .. render.result_fields(res).reserved_at_kst .. " KST" end
  if res.held_until then lines[#lines + 1] = "held until 08:00 KST by the night rule for ads" end
  if res.ad and res.subject then lines[#lines + 1] = "subject sent: " .. res.subject end
  if res.ad and res.text then lines[#lines + 1] = "text sent (composed for an ad):\n" .. res.text end
  return render.ok(ctx, what, res, lines)
end

-- A session provider (OneShot, capabilities.session): the MsgSendReq of
-- each recipient, or the real send.
local function oneshot_send(ctx, h, what, msg)
  if h.dry then
    local list = {}
    for i, to in ipairs(msg.to) do
      local m = {}
      for k, v in pairs(msg) do m[k] = v end
      m.to = to
      list[i] = m
    end
    if msg.ad ~= nil then
      -- Composed and night-checked as the real send does.
      local oc = require "ksms.oneshot.client"
      for i, m in ipairs(list) do
        local okm, am, aerr = pcall(oc.ad_message, { now = os.time }, m)
        if not okm then usage(provider.clean(am)) end
        if not am then return render.error(ctx, what, aerr, false) end
        list[i] = am
      end
    end
    local ok, frames, err = pcall(dryrun.oneshot_frames, h.options, list)
    if not ok then usage(provider.clean(frames)) end
    if not frames then return render.error(ctx, what, err, false) end
    return render.dry_frames(ctx, h, frames)
  end
  if msg.images and #msg.to > 1 then usage("oneshot sends images to one recipient at a time") end
  if #msg.to == 1 then msg.to = msg.to[1] end
  local res, err = _M.call(h, "send", msg)
  return _M.finish(ctx, h, what, res, err)
end

local function run_send(ctx)
  local o = ctx.opts
  check_owners(o, provider.name(ctx))
  local h = ctx:open()
  local text = input.text(o.text, o.text_file, "text")
  if text == nil then usage("give --text TEXT (or --text - to read stdin, or --text-file PATH)") end
  local msg = { from = caller(o, h), text = text, subject = o.subject, kind = o.kind, at = reservation(o, h) }
  if o.name then
    if o.to then usage("give recipients with --to or with --name, not both") end
    local names = {}
    for _, kv in ipairs(o.name) do
      local n, label = kv:match("^([^=]+)=(.+)$")
      if not n then usage("--name takes NUMBER=NAME, got " .. kv) end
      names[#names + 1] = { n, label }
    end
    msg.names = names
  else
    msg.to = recipients(o)
  end
  if o.image then
    if h.capabilities.session then
      msg.images = o.image
    elseif h.capabilities.image == "file" then
      msg.image = o.image
    else
      if #o.image > 1 then usage(h.name .. " takes one --image URL") end
      msg.image = o.image[1]
    end
  end
  if o.opt_out then msg.opt_out = true end
  ad.apply(o, msg)
  msg.from_name, msg.to_name = o.from_name, o.to_name
  if o["repeat"] or o.repeat_interval then
    msg["repeat"] = { count = o["repeat"] or 1, interval = o.repeat_interval or 15 }
  end
  if h.capabilities.session then
    msg.id, msg.user_data, msg.tran_id, msg.reseller_code = o.msg_id, o.user_data, o.tran_id, o.reseller_code
    return oneshot_send(ctx, h, "send", msg)
  end
  return _M.finish(ctx, h, "send", _M.call(h, "send", msg))
end

local function oneshot_kakao(o, kind, text)
  if not o.sender_key then usage("oneshot " .. kind .. " needs --sender-key") end
  local kakao = { sender_key = o.sender_key, template_code = o.template, button = o.button_json,
    image_link = o.image_link }
  return { kind = kind, kakao = kakao, text = input.need(text, "oneshot " .. kind .. " needs --text") }
end

local function run_alimtalk(ctx)
  local o = ctx.opts
  check_owners(o, provider.need(ctx, "alimtalk", "AlimTalk"))
  local h = ctx:open()
  if not o.template then usage("give --template CODE (the approved template)") end
  local to, from = recipients(o), caller(o, h)
  if h.capabilities.session then
    local msg = oneshot_kakao(o, "alimtalk", input.text(o.text, nil, "text"))
    msg.to, msg.from = to, from
    return oneshot_send(ctx, h, "alimtalk", msg)
  end
  if o.text then usage("--text is for oneshot; AlimTalk text comes from the template and --var") end
  local msg = { template = o.template, variables = o.var or {}, to = to, from = from,
    fallback = o.fallback or nil, at = reservation(o, h) }
  return _M.finish(ctx, h, "alimtalk", _M.call(h, "alimtalk", msg))
end

local function run_friendtalk(ctx)
  local o = ctx.opts
  check_owners(o, provider.need(ctx, "friendtalk", "FriendTalk"))
  local h = ctx:open()
  local to, from = recipients(o), caller(o, h)
  local text = input.need(input.text(o.text, o.text_file, "text"), "give --text TEXT")
  if h.capabilities.session then
    local msg = ad.apply(o, oneshot_kakao(o, "friendtalk", text))
    msg.to, msg.from = to, from
    return oneshot_send(ctx, h, "friendtalk", msg)
  end
  if not o.channel then usage("give --channel ID (the Kakao channel, e.g. @shop)") end
  local button
  if o.button_name or o.button_url then
    if not (o.button_name and o.button_url) then usage("a button needs --button-name and --button-url") end
    button = { name = o.button_name, url = o.button_url }
  end
  local msg = { channel = o.channel, text = text, button = button, image = o.image, image_link = o.image_link,
    to = to, from = from, fallback = o.fallback or nil, at = reservation(o, h) }
  ad.apply(o, msg)
  return _M.finish(ctx, h, "friendtalk", _M.call(h, "friendtalk", msg))
end

local CLIENT = flags.join({ flags.DRY_RUN }, flags.PROVIDER_OPTIONS)

_M.commands = {
  {
    name = "send", summary = "send an SMS, LMS or MMS to one or more recipients",
    usage = "ksms send --provider NAME --to NUMBER --from NUMBER --text TEXT [--subject S] [--at TIME] [--json] [--dry-run]",
    flags = flags.join(RECIPIENTS, SEND_FLAGS, ad.FLAGS, CLIENT),
    examples = {
      "ksms send --provider senders --to 010-1111-2222 --from 02-1234-5678 --text '주문이 발송되었습니다'",
      "ksms send --provider cafe24 --to 01011112222,01033334444 --from 0212345678 --text '점검 안내' --at '2026-12-01 09:00'",
      "echo '긴 공지 ...' | ksms send --provider ppurio --to 01011112222 --from 0212345678 --text - --subject 공지",
      "ksms send --provider senders --to 01011112222 --from 0212345678 --text hi --dry-run",
      "ksms send --provider senders --to 01011112222 --from 0212345678 --text '주말 할인' --ad --ad-name ksms상사 --ad-opt-out 080-123-4567",
    },
    run = run_send,
  },
  {
    name = "alimtalk", summary = "send a KakaoTalk AlimTalk (approved template)",
    usage = "ksms alimtalk --provider NAME --template CODE [--var V]... --to NUMBER --from NUMBER [--fallback] [--at TIME]",
    flags = flags.join(RECIPIENTS, ALIM_FLAGS, CLIENT),
    examples = {
      "ksms alimtalk --provider messageme --template ORDER_02 --var 홍길동 --var A-1001 --to 01011112222 --from 0212345678 --fallback",
      "ksms alimtalk --provider oneshot --sender-key KEY --template T1 --text '주문 완료' --to 01011112222 --from 15666639",
    },
    run = run_alimtalk,
  },
  {
    name = "friendtalk", summary = "send a KakaoTalk FriendTalk",
    usage = "ksms friendtalk --provider NAME --channel ID --text TEXT --to NUMBER --from NUMBER [--button-name N --button-url U] [--image URL]",
    flags = flags.join(RECIPIENTS, FRIEND_FLAGS, ad.FLAGS, CLIENT),
    examples = {
      "ksms friendtalk --provider messageme --channel @shop --text '이번 주 할인' --to 01011112222 --from 0212345678 --button-name 쇼핑하기 --button-url https://shop.example",
    },
    run = run_friendtalk,
  },
}

return _M
