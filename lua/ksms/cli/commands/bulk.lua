--- ksms bulk FILE: one message per CSV row, resumable through the outbox.
--
-- The file is read twice, streaming (ksms.cli.bulk_rows): first to check it
-- (CSV syntax, the phone column, every {placeholder}, the template's fixed
-- text) and count its rows, so a bad file sends nothing; then to send. The
-- sending pass (ksms.cli.bulk_send) stores each row in the outbox file
-- --journal names (ksms.outbox over SQLite, key "row:N") and lets the
-- outbox's worker send them: a re-run sends the rows that never left,
-- skips those whose outcome is known and lists those that may have been
-- sent, which it never sends again on its own (--resend-unknown does,
-- --accept-unknown records them as sent, `ksms outbox resolve` decides one).
-- The dry run plans every row and opens no outbox.
-- @module ksms.cli.commands.bulk
-- @alias _M

local bulk_rows = require "ksms.cli.bulk_rows"
local bulk_send = require "ksms.cli.bulk_send"
local cli_outbox = require "ksms.cli.outbox"
local progress = require "ksms.cli.progress"
local flags = require "ksms.cli.flags"
local status = require "ksms.cli.status"
local dryrun = require "ksms.cli.dryrun"
local provider = require "ksms.cli.provider"
local ad = require "ksms.cli.ad"
local core = require "ksms.core"

local ipairs, pcall, error = ipairs, pcall, error
local format, max = string.format, math.max
local collectgarbage, monotonic = collectgarbage, core.monotonic

local _M = { _VERSION = "0.2.0" }

local LIST_LIMIT = 1000 -- rows listed in a summary (the counts stay exact)

local error_detail = bulk_rows.error_detail

local function usage(msg) error(status.usage(msg), 0) end

-- Dry run: plan each row (the adapter's checks), print the first requests.
local function dry_pass(path, info, h, from, o, rep, show_request)
  local counts = rep.counts
  local function dry_batch(batch)
    local msgs = {}
    for i, b in ipairs(batch) do msgs[i] = b.msg end
    if h.capabilities.session then -- OneShot: the MsgSendReq frames
      for _, b in ipairs(batch) do
        local ok, frames, err = pcall(dryrun.oneshot_frames, h.options, { b.msg })
        if not ok then rep.abort = provider.clean(frames); return end
        if frames then
          counts.would_send, counts.requests = counts.would_send + 1, counts.requests + 1
          show_request(frames[1].json, frames[1].body)
        else
          counts.failed = counts.failed + 1
          rep.list_failed(b.row, b.to, error_detail(err))
        end
      end
      return
    end
    local ok, outcomes = pcall(h.client.send_many, h.client, msgs)
    if not ok then rep.abort = provider.clean(outcomes); return end
    for i, b in ipairs(batch) do
      local oc = outcomes[i]
      if dryrun.is_dry(oc) then counts.would_send = counts.would_send + 1
      else counts.failed = counts.failed + 1; rep.list_failed(b.row, b.to, error_detail(oc)) end
    end
    counts.requests = counts.requests + #h.recorded
    for _, req in ipairs(h.recorded) do
      if not show_request() then break end
      local d = dryrun.describe(req, h.name)
      show_request(dryrun.render(d), d)
    end
    h.recorded = {} -- only the first few are ever printed: memory stays flat
  end

  local r, rerr = bulk_rows.reader(path, info, { from = from, kind = o.kind, ad = ad.fields(o) })
  if not r then rep.abort = rerr; return end
  local batch, batch_size = {}, o.batch or 100
  while not rep.abort do
    local e, ferr = r:next()
    if not e then
      if ferr then rep.abort = ferr end
      break
    end
    rep.processed = e.row
    if e.bad then
      counts.failed = counts.failed + 1
      rep.list_failed(e.row, e.to, e.bad)
    else
      batch[#batch + 1] = e
      if #batch >= batch_size then dry_batch(batch); batch = {}; rep.tick() end
    end
    if #batch == 0 then rep.tick(false) end
  end
  if not rep.abort and #batch > 0 then dry_batch(batch) end
  r:close()
end

local function run(ctx)
  local o = ctx.opts
  local path = ctx.args[1]
  if not path then usage("give the CSV file: ksms bulk FILE --text TEMPLATE --journal FILE") end
  if path == "-" then usage("bulk reads a file, not stdin (a re-run must read the same rows again)") end
  if ctx.args[2] then usage("bulk takes one file") end
  local dry = o.dry_run and true or false
  if not o.journal and not dry then
    usage("give --journal FILE: the outbox that records every row, so that a re-run resumes without sending twice")
  end
  if o.resend_unknown and o.accept_unknown then usage("give --resend-unknown or --accept-unknown, not both") end
  local batch_size = o.batch or 100
  if batch_size < 1 or batch_size % 1 ~= 0 then usage("--batch takes a positive whole number") end
  local show = o.show or (dry and 3 or 0)
  ad.fields(o) -- the advertising flags checked (a usage error) before the file is read

  local h = ctx:open()
  local from = o.from or h.from
  if not from or from == "" then usage("give --from NUMBER (a registered caller number), or from = in the config") end
  local info = bulk_rows.scan(path, o, require("ksms.client").info(h.name).limits)
  local out = ctx.out

  local counts = { ok = 0, failed = 0, maybe_sent = 0, expired = 0, skipped_done = 0, skipped_failed = 0,
    skipped_unknown = 0, skipped_expired = 0, accepted_unknown = 0, resent_unknown = 0, retried_failed = 0,
    resumed = 0, left_queued = 0, would_send = 0, requests = 0, not_sent = 0, sent = 0 }
  local unknown_list, failed_list = {}, {}
  local peak_kb = collectgarbage("count")
  local rep = { counts = counts, processed = 0 }
  function rep.list_unknown(row, to, outcome, detail)
    if #unknown_list < LIST_LIMIT then
      unknown_list[#unknown_list + 1] = { row = row, key = "row:" .. row, to = to, outcome = outcome, detail = detail }
    end
  end
  function rep.list_failed(row, to, detail)
    if #failed_list < LIST_LIMIT then failed_list[#failed_list + 1] = { row = row, to = to, error = detail } end
  end
  local bar = progress.new(out, { total = info.total, mode = o.no_progress and "none" or "auto" })
  local function detail_text()
    return format("%d ok, %d failed, %d unknown", counts.ok, counts.failed, counts.maybe_sent)
  end
  -- After each chunk (and, rate-limited, each row): the bar and the peak heap.
  function rep.tick(sample)
    if sample ~= false then
      local kb = collectgarbage("count")
      if kb > peak_kb then peak_kb = kb end
    end
    bar:update(rep.processed, detail_text(), nil, dry and rep.processed or counts.sent)
  end
  local shown, shown_docs = 0, {}
  -- show_request() alone: whether another may be shown.
  local function show_request(text, doc)
    if shown >= show then return false end
    if text == nil then return true end
    shown = shown + 1
    if out.json then shown_docs[#shown_docs + 1] = doc else out:line(text); out:line("") end
    return true
  end

  local started = monotonic()
  local result = {}
  if dry then
    dry_pass(path, info, h, from, o, rep, show_request)
    result.abort = rep.abort
  else
    result = bulk_send.run { o = o, path = path, info = info, h = h, from = from, out = out, rep = rep }
  end
  local abort_message, interrupted = result.abort, result.interrupted and true or false
  bar:finish(rep.processed, detail_text(), dry and rep.processed or counts.sent)
  h:close()
  local kb = collectgarbage("count")
  if kb > peak_kb then peak_kb = kb end

  local unknown_total = counts.maybe_sent + counts.skipped_unknown
  local failed_total = counts.failed + counts.expired
  local code = status.OK
  if abort_message then code = status.USAGE
  elseif interrupted or unknown_total > 0 then code = status.UNKNOWN
  elseif failed_total > 0 then
    -- Every failure a network one before anything left: safe to retry.
    code = counts.not_sent == failed_total and status.NOT_SENT or status.REFUSED
  end
  local elapsed = monotonic() - started
  local processed = rep.processed

  if out.json then
    local doc = { ok = code == status.OK, command = "bulk", exit_code = code, provider = h.name, file = path,
      journal = o.journal, dry_run = dry, rows = info.total, processed = processed,
      sent_ok = counts.ok, failed = counts.failed, not_sent = counts.not_sent, maybe_sent = counts.maybe_sent,
      expired = counts.expired, resumed = counts.resumed, left_queued = counts.left_queued,
      skipped_done = counts.skipped_done, skipped_failed = counts.skipped_failed,
      skipped_unknown = counts.skipped_unknown, skipped_expired = counts.skipped_expired,
      accepted_unknown = counts.accepted_unknown, resent_unknown = counts.resent_unknown,
      retried_failed = counts.retried_failed,
      unknown = unknown_list, unknown_total = unknown_total, failures = failed_list,
      interrupted = interrupted or nil, error = abort_message,
      -- what the outbox file holds now, by state
      outbox = result.counts,
      -- the rate of rows handed to the provider, not of rows skipped
      sent = not dry and counts.sent or nil,
      elapsed = elapsed, rows_per_second = (dry and processed or counts.sent) / max(elapsed, 1e-6), memory_kb = peak_kb }
    if dry then
      doc.would_send, doc.requests, doc.shown = counts.would_send, counts.requests, shown_docs
    end
    cli_outbox.json_doc(out, doc) -- the listed rows' keys are not secrets
    return code
  end

  local lines = {}
  lines[#lines + 1] = format("ksms bulk: %d rows in %s via %s%s", info.total, path, h.name, dry and " (dry run: nothing sent)" or "")
  if dry then
    lines[#lines + 1] = format("  would send: %d rows (%d requests); refused before sending: %d", counts.would_send,
      counts.requests, counts.failed)
  else
    lines[#lines + 1] = format("  sent now:   %d ok, %d failed, %d may have been sent%s", counts.ok, counts.failed,
      counts.maybe_sent, counts.expired > 0 and format(", %d expired (not sent)", counts.expired) or "")
    if counts.resumed > 0 or counts.resent_unknown > 0 or counts.retried_failed > 0 then
      lines[#lines + 1] = format("  resumed:    %d rows were queued (never left an earlier run, or resolve resend);"
        .. " %d resent (--resend-unknown), %d retried (--retry-failed)", counts.resumed, counts.resent_unknown,
        counts.retried_failed)
    end
    if counts.left_queued > 0 then
      lines[#lines + 1] = format("  not sent:   %d rows still queued (the run stopped): re-run to send them", counts.left_queued)
    end
  end
  lines[#lines + 1] = format("  skipped:    %d done earlier, %d failed earlier%s, %d may have been sent earlier%s%s",
    counts.skipped_done, counts.skipped_failed, o.retry_failed and "" or " (--retry-failed sends them)",
    counts.skipped_unknown, counts.accepted_unknown > 0 and format(", %d accepted as sent", counts.accepted_unknown) or "",
    counts.skipped_expired > 0 and format(", %d expired earlier", counts.skipped_expired) or "")
  if o.journal and not dry then
    lines[#lines + 1] = "  outbox:     " .. o.journal .. "  (ksms outbox counts --outbox " .. o.journal .. ")"
  end
  if interrupted then lines[#lines + 1] = "  interrupted: re-run the same command to resume" end
  if abort_message then lines[#lines + 1] = "  stopped: " .. abort_message end
  if #unknown_list > 0 then
    lines[#lines + 1] = format("rows that may have been sent (%d; not resent: check the provider's history, then"
      .. " `ksms outbox resolve row:N resend|sent|drop`, or re-run with --resend-unknown or --accept-unknown):", unknown_total)
    for _, u in ipairs(unknown_list) do
      lines[#lines + 1] = format("  row %d  %s  %s  %s", u.row, u.to, u.outcome, u.detail or "")
    end
  end
  if #failed_list > 0 then
    lines[#lines + 1] = format("rows refused (%d, not sent):", failed_total)
    for i, f in ipairs(failed_list) do
      if i > 20 then lines[#lines + 1] = "  ... (ksms outbox list --state failed)"; break end
      lines[#lines + 1] = format("  row %d  %s  %s", f.row, f.to, f.error)
    end
  end
  for _, l in ipairs(lines) do out:line(l) end
  return code
end

_M.commands = {
  {
    name = "bulk", summary = "one message per CSV row, through an outbox file that makes re-runs safe",
    usage = "ksms bulk FILE --provider NAME --from NUMBER --text TEMPLATE --journal FILE [--phone-column NAME] [--dry-run]",
    flags = flags.join({
      { name = "from", kind = "string", arg = "NUMBER", help = "registered caller number (or from = in the config)" },
      { name = "text", kind = "string", arg = "TEMPLATE", help = "message with {column} placeholders ({{ }} for braces)" },
      { name = "text-file", kind = "string", arg = "PATH", help = "the template from a file" },
      { name = "subject", kind = "string", arg = "TEMPLATE", help = "LMS subject, with placeholders" },
      { name = "kind", kind = "string", arg = "KIND", help = "auto (default) | sms | lms" },
      { name = "phone-column", kind = "string", arg = "NAME", help = "the recipients' column (default phone)" },
      { name = "journal", kind = "string", arg = "FILE",
        help = "the outbox file (SQLite) of every row; the same file resumes a run (required)" },
      { name = "batch", kind = "number", arg = "N", help = "rows stored and sent per round (default 100)" },
      { name = "resend-unknown", kind = "bool", help = "send again the rows that may have been sent" },
      { name = "accept-unknown", kind = "bool", help = "record the rows that may have been sent as sent" },
      { name = "retry-failed", kind = "bool", help = "send again rows the provider refused (known not sent)" },
      { name = "force", kind = "bool", help = "go on with an outbox written for another template or options" },
      { name = "show", kind = "number", arg = "N", help = "dry run: requests printed in full (default 3)" },
      { name = "no-progress", kind = "bool", help = "no progress on stderr (KSMS_PROGRESS=bar|lines|none)" },
    }, ad.FLAGS, { flags.DRY_RUN }, flags.PROVIDER_OPTIONS),
    details = [[
The CSV has a header row; RFC 4180 quoting; UTF-8. Row N is the Nth record
after the header; its key in the outbox is row:N. --journal FILE is an
outbox (ksms.outbox, SQLite, WAL): the rows are stored --batch at a time
and the outbox's worker sends them (--concurrency N at once, default 8),
marking each row sending only as its request leaves. A re-run with the
same file sends the rows that never left, skips rows that were sent or
refused, and skips and lists the rows that may have been sent: after a
kill, only those that were in flight. It never sends those again on its
own: --resend-unknown does, --accept-unknown records them as sent, and
`ksms outbox resolve row:N resend|sent|drop` decides one. The template's
fixed text is checked against the provider's charset and length before
the first row; the outbox records a fingerprint (FNV-1a, not
cryptographic, of the template and the options, never a secret) and a
re-run with another template stops unless --force. The dry run plans every
row and opens no outbox. Exit 0 all sent, 1 some rows refused, 2 bad input
(nothing sent), 3 some rows may have been sent, 4 the only failures were
network ones before anything left (--retry-failed sends those rows again).]],
    examples = {
      "ksms bulk customers.csv --provider senders --from 0212345678 --text '{name}님, 주문 {order}이 발송되었습니다' --journal customers.outbox",
      "ksms bulk customers.csv --provider senders --from 0212345678 --text '{name}님 안녕하세요' --dry-run",
      "ksms bulk customers.csv ... --journal customers.outbox     # again: resumes, sends nothing twice",
      "ksms outbox list --state maybe_sent --outbox customers.outbox",
    },
    run = run,
  },
}

return _M
