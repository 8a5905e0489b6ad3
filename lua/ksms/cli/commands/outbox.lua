--- ksms outbox: the records of an outbox file (ksms.outbox over SQLite;
-- `ksms bulk --journal FILE` writes one): one record's status, a listing
-- by state, the counts, and the operator's decision on a record that may
-- have been sent. Offline: no provider, nothing is sent (resend queues the
-- record again; the next bulk run or worker on the file sends it).
-- @module ksms.cli.commands.outbox
-- @alias _M

local cli_outbox = require "ksms.cli.outbox"
local status = require "ksms.cli.status"
local output = require "ksms.cli.output"

local ipairs, error, tostring, type, pcall = ipairs, error, tostring, type, pcall
local io_open = io.open
local format, concat = string.format, table.concat

local _M = { _VERSION = "0.2.0" }

local verbatim = output.verbatim

local DEFAULT_LIMIT = 100
local ACTIONS = { resend = true, sent = true, drop = true }

local function usage(msg) error(status.usage(msg), 0) end

local SUBCOMMANDS = {
  { name = "status", summary = "one record: its state, message, outcome" },
  { name = "list", summary = "records, by state (--state), at most --limit" },
  { name = "resolve", summary = "decide a record: resend | sent | drop" },
  { name = "counts", summary = "records per state" },
}

local function file_of(o)
  if o.outbox and o.journal and o.outbox ~= o.journal then usage("give --outbox FILE or --journal FILE, not both") end
  local path = o.outbox or o.journal
  if not path or path == "" then usage("give the outbox file: --outbox FILE (the file ksms bulk --journal FILE wrote)") end
  -- A missing file would be created empty: say so instead.
  local f = io_open(path, "rb")
  if not f then usage(format("no outbox %s (nothing was changed)", path)) end
  f:close()
  return path
end

local function json(out, sub, code, doc)
  doc.ok, doc.command, doc.exit_code = code == status.OK, "outbox " .. sub, code
  cli_outbox.json_doc(out, doc)
  return code
end

local function key_arg(ctx, sub)
  local key = ctx.args[2]
  if key == nil or key == "" then usage(format("give the record's key: ksms outbox %s KEY", sub)) end
  if key:find("\0", 1, true) then usage("a key has no NUL byte") end
  return key
end

local function not_found(ctx, sub, path, key)
  local msg = format("no record %q in %s (nothing was changed)", key, path)
  if ctx.out.json then
    return json(ctx.out, sub, status.USAGE, { outbox = path, key = key,
      error = { category = "invalid_input", code = "not_found", message = msg } })
  end
  ctx.out:note("ksms outbox " .. sub .. ": " .. msg)
  return status.USAGE
end

local function do_status(ctx, ob, path)
  local key = key_arg(ctx, "status")
  if ctx.args[3] then usage("ksms outbox status takes one KEY") end
  local rec = cli_outbox.status(ob, key)
  if not rec then return not_found(ctx, "status", path, key) end
  if ctx.out.json then return json(ctx.out, "status", status.OK, { outbox = path, record = cli_outbox.fields(rec) }) end
  for _, l in ipairs(cli_outbox.lines(rec)) do ctx.out:line(l) end
  return status.OK
end

local function do_list(ctx, ob, path)
  local o, out = ctx.opts, ctx.out
  if ctx.args[2] then usage("ksms outbox list takes no KEY (--state STATE, --limit N)") end
  local state = o.state
  if state ~= nil and not cli_outbox.is_state(state) then
    usage(format("--state: no state %q (states: %s)", state, concat(cli_outbox.STATES, ", ")))
  end
  local limit = o.limit or DEFAULT_LIMIT
  if limit < 0 or limit % 1 ~= 0 then usage("--limit takes a whole number (0: no limit)") end
  -- One more than shown tells whether the listing was cut. Records are
  -- written as they come from the store's pages: memory stays flat.
  local n, truncated = 0, false
  if out.json then
    out:write(out.stdout, verbatim('{"command":"outbox list","outbox":'), output.encode(path), verbatim(',"records":['))
  end
  cli_outbox.each(ob, { state = state, limit = limit > 0 and limit + 1 or nil }, function(rec)
    if limit > 0 and n >= limit then truncated = true; return false end
    n = n + 1
    if out.json then
      out:write(out.stdout, verbatim(n > 1 and "," or ""), cli_outbox.encode(out, rec))
    else
      out:line(cli_outbox.line(rec))
    end
  end)
  if out.json then
    out:write(out.stdout, verbatim(format('],"count":%d,"limit":%d,"state":', n, limit)),
      state and output.encode(state) or verbatim("null"),
      verbatim(format(',"truncated":%s,"ok":true,"exit_code":0}\n', truncated and "true" or "false")))
  elseif truncated then
    out:note(format("ksms outbox list: the first %d shown (--limit N for more, --limit 0 for all)", limit))
  elseif n == 0 then
    out:note(format("ksms outbox list: no record%s", state and (" in state " .. state) or ""))
  end
  return status.OK
end

local function do_counts(ctx, ob, path)
  if ctx.args[2] then usage("ksms outbox counts takes no argument") end
  local c = cli_outbox.counts(ob)
  local all, total = {}, 0
  for _, s in ipairs(cli_outbox.STATES) do
    local v = type(c[s]) == "number" and c[s] or 0
    all[s], total = v, total + v
  end
  if ctx.out.json then return json(ctx.out, "counts", status.OK, { outbox = path, counts = all, total = total }) end
  for _, s in ipairs(cli_outbox.STATES) do ctx.out:line(format("%-12s %d", s, all[s])) end
  ctx.out:line(format("%-12s %d", "total", total))
  return status.OK
end

local function do_resolve(ctx, ob, path)
  local key = key_arg(ctx, "resolve")
  local action = ctx.args[3]
  if not ACTIONS[action] then usage("give the decision: ksms outbox resolve KEY resend | sent | drop") end
  if ctx.args[4] then usage("ksms outbox resolve takes KEY and one decision") end
  local before = cli_outbox.status(ob, key)
  if not before then return not_found(ctx, "resolve", path, key) end
  local rec, err = ob:resolve(key, action)
  if not rec then
    local msg = format("%s %s: %s (nothing was changed)", key, action, cli_outbox.message(err))
    if ctx.out.json then
      return json(ctx.out, "resolve", status.USAGE, { outbox = path, key = key, action = action,
        previous_state = before.state, error = { category = "invalid_input", code = "not_allowed", message = msg } })
    end
    ctx.out:note("ksms outbox resolve: " .. msg)
    return status.USAGE
  end
  if ctx.out.json then
    return json(ctx.out, "resolve", status.OK, { outbox = path, action = action, previous_state = before.state,
      record = cli_outbox.fields(rec) })
  end
  local after = action == "resend" and "the next ksms bulk run (or worker) on this file sends it"
    or action == "sent" and "recorded as sent; never sent again"
    or "dropped; never sent"
  ctx.out:line(format("%s: %s -> %s (%s)", key, tostring(before.state), tostring(rec.state), after))
  return status.OK
end

local RUN = { status = do_status, list = do_list, counts = do_counts, resolve = do_resolve }

local function run(ctx)
  local sub = ctx.args[1]
  if sub == nil then usage("give what to do: ksms outbox status KEY | list | resolve KEY ACTION | counts") end
  local fn = RUN[sub]
  if not fn then
    local names = {}
    for i, s in ipairs(SUBCOMMANDS) do names[i] = s.name end
    local hint = require("ksms.errors").closest(sub, names)
    usage(format("no outbox command %q%s (%s)", sub, hint and format(" (did you mean %s?)", hint) or "",
      concat(names, ", ")))
  end
  local path = file_of(ctx.opts)
  local ob = cli_outbox.open(path)
  local ok, code = pcall(fn, ctx, ob, path)
  pcall(ob.close, ob)
  if not ok then error(code, 0) end
  return code
end

_M.commands = {
  {
    name = "outbox", summary = "an outbox file's records: status, list, resolve, counts",
    usage = "ksms outbox status KEY | list [--state STATE] [--limit N] | resolve KEY resend|sent|drop | counts"
      .. " --outbox FILE",
    subcommands = SUBCOMMANDS,
    offline = true,
    flags = {
      { name = "outbox", kind = "string", arg = "FILE", help = "the outbox file (the one ksms bulk --journal FILE writes)" },
      { name = "journal", kind = "string", arg = "FILE", help = "the same as --outbox (bulk's name for the file)" },
      { name = "state", kind = "string", arg = "STATE",
        help = "list: only this state (" .. concat(cli_outbox.STATES, " | ") .. ")" },
      { name = "limit", kind = "number", arg = "N", help = "list: at most N records (default 100; 0: all)" },
    },
    details = [[
status KEY prints one record (bulk's keys are row:N): its state, client,
message, times, attempts, the provider's id or the error. list prints one
line per record (key, state, recipient, last change, detail), oldest
first, --state STATE only. counts prints the records per state. resolve
KEY ACTION is the operator's decision on a record that may have been sent
(maybe_sent), after checking the provider's history: resend queues it
again (the next ksms bulk run with this file, or a worker, sends it),
sent records it as sent, drop gives it up unsent. ksms never resends a
maybe_sent record by itself. Nothing here sends or talks to a provider.
Exit 0 done, 2 a usage error, a file that is not an outbox, a key with no
record, or a decision the record's state does not allow (nothing was
changed).]],
    examples = {
      "ksms outbox counts --outbox customers.outbox",
      "ksms outbox list --state maybe_sent --outbox customers.outbox",
      "ksms outbox status row:17 --outbox customers.outbox --json",
      "ksms outbox resolve row:17 sent --outbox customers.outbox      # the provider's history shows it",
    },
    run = run,
  },
}

return _M
