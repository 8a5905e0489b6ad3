--- ksms listen: holds a OneShot session and prints every report, spam
-- notice and number change the server pushes, one JSON object per line on
-- stdout, until Ctrl-C (or --for SECONDS), then unbinds and exits 0.
--
-- Ctrl-C: the standalone interpreter turns SIGINT into the Lua error
-- "interrupted!" at the next Lua instruction. The core's poll retries on
-- EINTR until its timeout, so the loop polls in short slices to notice it
-- soon. A push is acknowledged only after its line is written and flushed.
-- @module ksms.cli.commands.listen
-- @alias _M

local flags = require "ksms.cli.flags"
local status = require "ksms.cli.status"
local provider = require "ksms.cli.provider"
local output = require "ksms.cli.output"
local render = require "ksms.cli.render"
local core = require "ksms.core"

local pcall, error, tostring, type, ipairs = pcall, error, tostring, type, ipairs
local find, format = string.find, string.format
local monotonic = core.monotonic

local _M = { _VERSION = "0.2.0" }

local SLICE = 0.2 -- seconds per poll: how soon Ctrl-C and --for are seen

local function is_interrupt(e)
  return find(tostring(e), "interrupted!", 1, true) ~= nil
end

local FIELDS = {
  report = { "user_msg_id", "sub_id", "server_msg_id", "msg_type", "phone", "result", "ok", "telecom",
    "delivery_time", "user_data", "result_message" },
  spam = { "spam_id", "phone", "deny_no" },
  change_phone = { "server_msg_id", "phone", "change_phone" },
}

local function event_doc(kind, ev)
  local doc = { type = kind }
  for _, k in ipairs(FIELDS[kind]) do doc[k] = ev[k] end
  if kind == "report" and ev.outcome and not ev.outcome.ok then
    doc.error = output.error_fields(ev.outcome)
  end
  return doc
end

local function run(ctx)
  local o = ctx.opts
  local name = provider.name(ctx)
  if require("ksms.client").info(name).capabilities.reports ~= "push" then
    error(status.usage(format("%s does not push reports; listen works with oneshot (HTTP providers: ksms report ID)", name)), 0)
  end
  local options = provider.options(ctx, name)
  options.from = nil
  local missing = require("ksms.cli.config").missing(name, options)
  if missing then error(status.usage(missing), 0) end
  if o["for"] ~= nil and (type(o["for"]) ~= "number" or o["for"] <= 0) then
    error(status.usage("--for takes a number of seconds"), 0)
  end
  if jit and jit.off then jit.off() end -- LuaJIT: hooks (Ctrl-C) run only in the interpreter

  local out = ctx.out
  local interrupted, count = false, 0
  local function handler(kind)
    return function(ev)
      local ok, err = pcall(function() out:line(out:encode(event_doc(kind, ev))) end)
      if not ok then
        if is_interrupt(err) then interrupted = true end
        error(err, 0) -- not acknowledged: the server pushes it again
      end
      count = count + 1
    end
  end
  options.on_report, options.on_spam, options.on_change_phone =
    handler("report"), handler("spam"), handler("change_phone")
  -- Through ksms.client, which checks the options (require_tls too).
  local okn, client = pcall(require("ksms").client, name, options)
  if not okn then error(status.usage(provider.clean(client)), 0) end
  local s = client.session

  local deadline = o["for"] and (monotonic() + o["for"]) or nil
  local ok, bound, cerr = pcall(function()
    local b, e = s:connect()
    if not b then return nil, e end
    out:note(format("ksms listen: bound to %s:%s as %s; Ctrl-C to stop", tostring(options.host),
      tostring(options.port), tostring(options.id)))
    while not interrupted and (not deadline or monotonic() < deadline) do
      s:poll(SLICE)
      -- An interrupt inside a callback is caught by the session's pcall.
      if s.last_error and is_interrupt(s.last_error.message) then interrupted = true end
    end
    return true
  end)
  if not ok then
    if not is_interrupt(bound) then
      pcall(s.close, s)
      error(bound, 0)
    end
    interrupted = true
  elseif not bound then
    pcall(s.close, s)
    return render.error(ctx, "listen", cerr, false)
  end
  -- UnBind. A second Ctrl-C here ends the process (the interpreter's default).
  local closed, close_err = pcall(s.close, s)
  if not closed then out:debug("close: " .. tostring(close_err)) end
  out:note(format("ksms listen: %d pushes printed%s", count, interrupted and "; interrupted" or ""))
  return status.OK
end

_M.commands = {
  {
    name = "listen", summary = "oneshot: print pushed delivery reports as JSON lines until Ctrl-C",
    usage = "ksms listen --provider oneshot [--for SECONDS]",
    flags = flags.join({
      { name = "for", kind = "number", arg = "SECONDS", help = "stop after this many seconds" },
    }, flags.PROVIDER_OPTIONS),
    details = "One JSON object per line: {\"type\":\"report\"|\"spam\"|\"change_phone\", ...}. "
      .. "Each push is acknowledged after its line is flushed. Exit 0 on Ctrl-C or --for; 3 when the bind fails.",
    examples = { "ksms listen --provider oneshot | tee reports.jsonl", "ksms listen --provider oneshot --for 60 --json" },
    run = run,
  },
}

return _M
