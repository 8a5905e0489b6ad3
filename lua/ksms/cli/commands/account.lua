--- ksms balance | report | senders | register-sender | history: the account
-- calls, where the provider has them.
-- @module ksms.cli.commands.account
-- @alias _M

local flags = require "ksms.cli.flags"
local render = require "ksms.cli.render"
local status = require "ksms.cli.status"
local send = require "ksms.cli.commands.send"
local dryrun = require "ksms.cli.dryrun"
local provider = require "ksms.cli.provider"

local ipairs, tostring, error = ipairs, tostring, error
local format = string.format

local _M = { _VERSION = "0.2.0" }

local CLIENT = flags.join({ flags.DRY_RUN }, flags.PROVIDER_OPTIONS)

local function usage(msg) error(status.usage(msg), 0) end

-- Runs an account call; dry runs print the request, errors their code.
local function account_call(ctx, h, what, method, ...)
  local res, err = send.call(h, method, ...)
  if h.dry then
    if err and dryrun.is_dry(err) then return nil, render.dry_requests(ctx, h) end
    if not res then return nil, render.error(ctx, what, err, false) end
  end
  if not res then return nil, render.error(ctx, what, err, h:sent() > 0) end
  return res
end

local function run_balance(ctx)
  provider.need(ctx, "balance")
  local h = ctx:open()
  local res, code = account_call(ctx, h, "balance", "balance")
  if not res then return code end
  return render.ok(ctx, "balance", res,
    { format("%s %s (%s)", tostring(res.balance), tostring(res.unit or ""), h.name) })
end

local function run_report(ctx)
  provider.need(ctx, "report", "delivery reports by id", function(caps)
    return caps.reports == "push" and "OneShot pushes reports over its session: run `ksms listen`" or nil
  end)
  local h = ctx:open()
  local id = ctx.args[1]
  if not id or id == "" then usage("give the message id: ksms report ID") end
  local res, code = account_call(ctx, h, "report", "report", id)
  if not res then return code end
  local lines = { format("%s: %s%s", id, tostring(res.status),
    res.description and (" (" .. res.description .. (res.description_ko and (", " .. res.description_ko) or "") .. ")") or "") }
  if res.dest_phone then lines[#lines + 1] = "to: " .. tostring(res.dest_phone) end
  if res.report_time then lines[#lines + 1] = "reported: " .. tostring(res.report_time) end
  return render.ok(ctx, "report", res, lines)
end

local function run_senders(ctx)
  provider.need(ctx, "sender_numbers", "listing caller numbers")
  local h = ctx:open()
  local res, code = account_call(ctx, h, "senders", "sender_numbers", ctx.args[1])
  if not res then return code end
  local lines = {}
  for _, n in ipairs(res.numbers or {}) do
    lines[#lines + 1] = n.number .. ((n.comment and n.comment ~= "") and ("  " .. n.comment) or "")
  end
  if #lines == 0 then lines[1] = "(no caller numbers registered)" end
  return render.ok(ctx, "senders", res, lines)
end

local function run_register(ctx)
  provider.need(ctx, "register_sender", "registering caller numbers")
  local h = ctx:open()
  local number = ctx.args[1]
  if not number then usage("give the number: ksms register-sender NUMBER --comment TEXT") end
  if not ctx.opts.comment then usage("give --comment TEXT (the provider requires one)") end
  local res, code = account_call(ctx, h, "register-sender", "register_sender", number, ctx.opts.comment)
  if not res then return code end
  return render.ok(ctx, "register-sender", res, { "registered " .. tostring(res.number or number) })
end

local function run_history(ctx)
  local o = ctx.opts
  provider.need(ctx, "history", "history")
  local h = ctx:open()
  local q = { date = o.date, days = o.days, start = o.start, count = o.count, send_type = o.type,
    status = o.status, to = o.to, from = o.from, kind = o.kind }
  if q.date then
    local compact = q.date:gsub("%-", "")
    if not compact:match("^%d%d%d%d%d%d%d%d$") then usage("--date takes YYYY-MM-DD (Korea time)") end
    q.date = compact
  end
  local res, code = account_call(ctx, h, "history", "history", q)
  if not res then return code end
  local lines = {}
  for _, r in ipairs(res.records or {}) do
    lines[#lines + 1] = format("%s  %s -> %s  %s  %s", tostring(r.sent_at), tostring(r.from), tostring(r.to),
      tostring(r.status), tostring(r.text))
  end
  if #lines == 0 then lines[1] = "(no messages)" end
  return render.ok(ctx, "history", res, lines)
end

_M.commands = {
  {
    name = "balance", summary = "the account's remaining balance (senders, messageme, cafe24)",
    usage = "ksms balance --provider NAME [--json]",
    flags = CLIENT,
    examples = { "ksms balance --provider senders", "KSMS_CAFE24_USER_ID=me KSMS_CAFE24_SECURE_KEY=... ksms balance --provider cafe24 --json" },
    run = run_balance,
  },
  {
    name = "report", summary = "the delivery report of a sent message (ppurio: the cmid)",
    usage = "ksms report ID --provider NAME [--json]",
    flags = CLIENT,
    examples = { "ksms report 20261201090000123 --provider ppurio" },
    run = run_report,
  },
  {
    name = "senders", summary = "the registered caller numbers (ppurio, cafe24)",
    usage = "ksms senders [NUMBER] --provider NAME [--json]",
    flags = CLIENT,
    examples = { "ksms senders --provider ppurio", "ksms senders 0212345678 --provider cafe24 --json" },
    run = run_senders,
  },
  {
    name = "register-sender", summary = "register a caller number (ppurio)",
    usage = "ksms register-sender NUMBER --comment TEXT --provider ppurio",
    flags = flags.join({ { name = "comment", kind = "string", arg = "TEXT", help = "what the number is (required)" } }, CLIENT),
    examples = { "ksms register-sender 031-123-4567 --comment '경기 사무실' --provider ppurio" },
    run = run_register,
  },
  {
    name = "history", summary = "messages sent, as the provider recorded them (cafe24)",
    usage = "ksms history --provider cafe24 [--date YYYY-MM-DD] [--days N] [--count N] [--start N] [--to N] [--from N]",
    flags = flags.join({
      { name = "date", kind = "string", arg = "YYYY-MM-DD", help = "first day (Korea time; default today)" },
      { name = "days", kind = "number", arg = "N", help = "days from --date (1-7)" },
      { name = "start", kind = "number", arg = "N", help = "skip N records" },
      { name = "count", kind = "number", arg = "N", help = "records per page (1-50)" },
      { name = "type", kind = "string", arg = "T", help = "all | general | reserve" },
      { name = "status", kind = "string", arg = "S", help = "success | failure" },
      { name = "to", kind = "string", arg = "NUMBER", help = "only this recipient" },
      { name = "from", kind = "string", arg = "NUMBER", help = "only this caller number" },
      { name = "kind", kind = "string", arg = "KIND", help = "sms | lms" },
    }, CLIENT),
    examples = { "ksms history --provider cafe24 --days 3 --json" },
    run = run_history,
  },
}

return _M
