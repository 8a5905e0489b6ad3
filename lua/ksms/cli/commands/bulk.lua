--- ksms bulk FILE: one message per CSV row, resumable through a journal.
--
-- The file is read twice, streaming: first to check it (CSV syntax, the
-- phone column, every {placeholder}) and count its rows, so a bad file
-- sends nothing; then to send, in batches (client:send_many). Each batch's
-- rows are journaled "pending" before it is sent and get their outcome
-- after. A re-run with the same journal skips rows whose outcome is known
-- and lists the rows that may have been sent (maybe_sent, or pending with
-- no outcome: the run was killed mid-send); it never sends those again on
-- its own (--resend-unknown does, --accept-unknown records them as sent).
-- @module ksms.cli.commands.bulk
-- @alias _M

local csv = require "ksms.cli.csv"
local template = require "ksms.cli.template"
local journal = require "ksms.cli.journal"
local progress = require "ksms.cli.progress"
local flags = require "ksms.cli.flags"
local input = require "ksms.cli.input"
local status = require "ksms.cli.status"
local dryrun = require "ksms.cli.dryrun"
local provider = require "ksms.cli.provider"
local core = require "ksms.core"
local phone = require "ksms.rules.phone"
local trim = require("ksms.cli.input").trim
local text_rules = require "ksms.rules.text"

local ipairs, pcall, error, tostring, type = ipairs, pcall, error, tostring, type
local format, concat, find, max, sub, upper = string.format, table.concat, string.find, math.max, string.sub, string.upper
local collectgarbage, monotonic, os_date = collectgarbage, core.monotonic, os.date

local _M = { _VERSION = "0.2.0" }

local LIST_LIMIT = 1000 -- rows listed in a summary (the counts stay exact)

local function usage(msg) error(status.usage(msg), 0) end

local function is_interrupt(e)
  return type(e) == "string" and find(e, "interrupted!", 1, true) ~= nil
end

-- The template's fixed text (template.compile) checked against the
-- provider's rules (ksms.rules.text, the limits of ksms.client.info):
-- what no row's fields can mend stops the run before the first row.
local function check_fixed(flag, source, fixed, limits, kind, subject)
  local parts = {}
  for i, seg in ipairs(fixed) do
    parts[i] = seg.text
    local ok, bad = core.charset_check(seg.text, limits.charset)
    if not ok and type(bad) == "table" and bad[1] then
      local before = text_rules.chars(sub(source, 1, seg.at - 1))
      local named = {}
      for j, b in ipairs(bad) do named[j] = format("'%s' at %d", b.char, before + b.pos) end
      usage(format("%s: the template has characters %s cannot carry: %s (nothing was sent)", flag,
        upper(limits.charset), concat(named, ", ")))
    end
  end
  local constant = concat(parts)
  local bytes = core.cp949_len(constant) or 0
  if bytes == 0 then return end
  if subject then
    if limits.subject and bytes > limits.subject then
      usage(format("%s: the template's fixed text alone is %d bytes; the subject takes at most %d (nothing was sent)",
        flag, bytes, limits.subject))
    end
    return
  end
  local ok, chosen, err = pcall(text_rules.choose_kind, constant, kind or "auto", false, limits)
  if ok and not chosen and err and (err.code == "too_long" or err.code == "kind") then
    usage(format("%s: the template's fixed text alone: %s (nothing was sent)", flag, tostring(err.message)))
  end
end

-- Pass 1: the header, the templates, and the number of rows.
local function scan(path, o, limits)
  local r, err = csv.open(path)
  if not r then usage("cannot read " .. path .. ": " .. tostring(err)) end
  local header, herr = r:next()
  if not header then r:close(); usage(path .. ": " .. (herr or "the file is empty (a header row is needed)")) end
  local columns, cerr = template.columns(header)
  if not columns then r:close(); usage(path .. ": " .. cerr) end
  local phone_column = o.phone_column or "phone"
  local phone_index = columns[phone_column]
  if not phone_index then
    r:close()
    usage(format("%s: no column %q (use --phone-column NAME; columns: %s)", path, phone_column, concat(header, ", ")))
  end
  local text = input.text(o.text, o.text_file, "text")
  if text == nil or text == "" then r:close(); usage("give the message template: --text TEXT (with {column} placeholders)") end
  local render_text, fixed = template.compile(text, columns)
  if not render_text then r:close(); usage("--text: " .. fixed) end
  local ok, cerr = pcall(check_fixed, "--text", text, fixed, limits, o.kind)
  if not ok then r:close(); error(cerr, 0) end
  local render_subject
  if o.subject then
    render_subject, fixed = template.compile(o.subject, columns)
    if not render_subject then r:close(); usage("--subject: " .. fixed) end
    ok, cerr = pcall(check_fixed, "--subject", o.subject, fixed, limits, nil, true)
    if not ok then r:close(); error(cerr, 0) end
  end
  local total = 0
  while true do
    local fields, ferr = r:next()
    if not fields then
      if ferr then r:close(); usage(format("%s: %s (nothing was sent)", path, ferr)) end
      break
    end
    total = total + 1
  end
  r:close()
  return { header = header, header_line = concat(header, ","), phone_index = phone_index,
    render_text = render_text, render_subject = render_subject, total = total, text = text }
end

local function error_detail(err)
  if type(err) ~= "table" then return tostring(err) end
  return format("%s %s: %s", tostring(err.category), tostring(err.code), tostring(err.message))
end

-- Why a recipient cannot be sent to, or nil: checked before batching so
-- that such rows never get a pending line.
local function bad_number(to)
  if to == "" then return "invalid_input no_phone: the phone column is empty" end
  local ok, err = phone.normalize(to, "to")
  if ok then return nil end
  return error_detail(err)
end

local function result_detail(res)
  local id = res.id or res.cmid
  if id then return "id=" .. tostring(id) end
  return "code=" .. tostring(res.code)
end

local function run(ctx)
  local o = ctx.opts
  local path = ctx.args[1]
  if not path then usage("give the CSV file: ksms bulk FILE --text TEMPLATE --journal FILE") end
  if path == "-" then usage("bulk reads a file, not stdin (a re-run must read the same rows again)") end
  if ctx.args[2] then usage("bulk takes one file") end
  local dry = o.dry_run and true or false
  if not o.journal and not dry then
    usage("give --journal FILE: it records every row's outcome so that a re-run resumes without sending twice")
  end
  if o.resend_unknown and o.accept_unknown then usage("give --resend-unknown or --accept-unknown, not both") end
  local batch_size = o.batch or 100
  if batch_size < 1 or batch_size % 1 ~= 0 then usage("--batch takes a positive whole number") end
  local show = o.show or (dry and 3 or 0)

  local h = ctx:open()
  local from = o.from or h.from
  if not from or from == "" then usage("give --from NUMBER (a registered caller number), or from = in the config") end
  local info = scan(path, o, require("ksms.client").info(h.name).limits)
  local out = ctx.out

  local state = o.journal and journal.load(o.journal) or journal.empty()
  if state.columns and state.columns ~= info.header_line then
    usage(format("%s was written for a CSV with columns %q; %s has %q. Use a new journal for a different file.",
      o.journal, state.columns, path, info.header_line))
  end
  -- What shapes every message, never a secret: a re-run with other text
  -- would mix two messages in one journal.
  local fp = journal.fingerprint({ provider = h.name, from = from, text = info.text, subject = o.subject or "",
    kind = o.kind or "auto", phone_column = o.phone_column or "phone" })
  if state.template and state.template ~= fp and not o.force then
    usage(format("%s was written for another template or options (%s; now %s): the rows it records were sent "
      .. "with other text. Use a new journal, or --force to go on with this one.", o.journal, state.template, fp))
  end
  local writer
  if not dry then
    local werr
    writer, werr = journal.open(o.journal, out)
    if not writer then usage("cannot write the journal " .. o.journal .. ": " .. tostring(werr)) end
    if not state.exists or state.lines == 0 then
      writer:comment("ksms bulk journal v1: row, recipient, outcome (pending | ok | failed | maybe_sent), detail")
      writer:columns(info.header_line)
    end
    if state.template ~= fp then writer:template(fp) end
    writer:comment(format("run %s provider=%s file=%s rows=%d", os_date("!%Y-%m-%dT%H:%M:%SZ"), h.name, path, info.total))
  end
  if state.unknown.count > 0 then
    out:note(format("ksms bulk: %d rows may have been sent by an earlier run; %s", state.unknown.count,
      o.resend_unknown and "sending them again (--resend-unknown)"
      or o.accept_unknown and "recording them as sent (--accept-unknown)"
      or "they are skipped and listed at the end"))
  end

  local counts = { ok = 0, failed = 0, maybe_sent = 0, skipped_done = 0, skipped_failed = 0,
    skipped_unknown = 0, accepted_unknown = 0, would_send = 0, requests = 0, not_sent = 0, sent = 0 }
  local unknown_list, failed_list = {}, {}
  local function list_unknown(row, to, outcome, detail)
    if #unknown_list < LIST_LIMIT then
      unknown_list[#unknown_list + 1] = { row = row, to = to, outcome = outcome, detail = detail }
    end
  end
  local function list_failed(row, to, detail)
    if #failed_list < LIST_LIMIT then failed_list[#failed_list + 1] = { row = row, to = to, error = detail } end
  end
  local shown, shown_docs = 0, {}
  local function show_request(text, doc)
    if shown >= show then return end
    shown = shown + 1
    if out.json then shown_docs[#shown_docs + 1] = doc else out:line(text); out:line("") end
  end

  local peak_kb = collectgarbage("count")
  local processed = 0
  local bar = progress.new(out, { total = info.total, mode = o.no_progress and "none" or "auto" })
  local function detail_text()
    return format("%d ok, %d failed, %d unknown", counts.ok, counts.failed, counts.maybe_sent)
  end

  local inflight -- the batch between its pending lines and its outcomes
  local abort_message

  local function record_outcome(b, res, err)
    if res and res.ok then
      counts.ok = counts.ok + 1
      writer:record(b.row, b.to, "ok", result_detail(res))
      return
    end
    local outcome = status.row_outcome(err)
    counts[outcome] = counts[outcome] + 1
    if outcome == "failed" and status.not_sent(err, h:sent() == 0) then counts.not_sent = counts.not_sent + 1 end
    writer:record(b.row, b.to, outcome, error_detail(err))
    if outcome == "maybe_sent" then list_unknown(b.row, b.to, outcome, error_detail(err))
    else list_failed(b.row, b.to, error_detail(err)) end
  end

  -- Dry run: plan each row (the adapter's checks), print the first requests.
  local function dry_batch(batch)
    local msgs = {}
    for i, b in ipairs(batch) do msgs[i] = b.msg end
    if h.capabilities.session then -- OneShot: the MsgSendReq frames
      for _, b in ipairs(batch) do
        local ok, frames, err = pcall(dryrun.oneshot_frames, h.options, { b.msg })
        if not ok then abort_message = provider.clean(frames); return end
        if frames then
          counts.would_send, counts.requests = counts.would_send + 1, counts.requests + 1
          show_request(frames[1].json, frames[1].body)
        else
          counts.failed = counts.failed + 1
          list_failed(b.row, b.to, error_detail(err))
        end
      end
      return
    end
    local ok, outcomes = pcall(h.client.send_many, h.client, msgs)
    if not ok then abort_message = provider.clean(outcomes); return end
    for i, b in ipairs(batch) do
      local oc = outcomes[i]
      if dryrun.is_dry(oc) then counts.would_send = counts.would_send + 1
      else counts.failed = counts.failed + 1; list_failed(b.row, b.to, error_detail(oc)) end
    end
    counts.requests = counts.requests + #h.recorded
    for _, req in ipairs(h.recorded) do
      if shown >= show then break end
      local d = dryrun.describe(req, h.name)
      show_request(dryrun.render(d), d)
    end
    h.recorded = {} -- only the first few are ever printed: memory stays flat
  end

  local function send_batch(batch)
    if #batch == 0 then return end
    if dry then
      dry_batch(batch)
    else
      for _, b in ipairs(batch) do writer:record(b.row, b.to, "pending", "") end
      counts.sent = counts.sent + #batch
      inflight = batch
      local msgs = {}
      for i, b in ipairs(batch) do msgs[i] = b.msg end
      local ok, outcomes = pcall(h.client.send_many, h.client, msgs)
      if not ok then
        if is_interrupt(outcomes) then error(outcomes, 0) end
        -- The library raises before any I/O: nothing of this batch left.
        abort_message = provider.clean(outcomes)
        for _, b in ipairs(batch) do
          writer:record(b.row, b.to, "failed", "usage " .. abort_message)
          counts.failed = counts.failed + 1
        end
        inflight = nil
        return
      end
      for i, b in ipairs(batch) do
        local oc = outcomes[i]
        if type(oc) == "table" and oc.ok then record_outcome(b, oc) else record_outcome(b, nil, oc) end
      end
      inflight = nil
    end
    local kb = collectgarbage("count")
    if kb > peak_kb then peak_kb = kb end
    bar:update(processed, detail_text(), nil, dry and processed or counts.sent)
  end

  local function loop()
    local r, oerr = csv.open(path)
    if not r then abort_message = "cannot read " .. path .. ": " .. tostring(oerr); return end
    r:next() -- the header
    local batch, row = {}, 0
    local pi, render_text, render_subject = info.phone_index, info.render_text, info.render_subject
    while not abort_message do
      local fields, ferr = r:next()
      if not fields then
        -- The first pass read the file cleanly: it changed since.
        if ferr then abort_message = format("%s: %s (the file changed while sending)", path, ferr) end
        break
      end
      row = row + 1
      processed = row
      local to = trim(fields[pi] or "")
      if state.ok:has(row) then
        counts.skipped_done = counts.skipped_done + 1
      elseif state.failed:has(row) and not o.retry_failed then
        counts.skipped_failed = counts.skipped_failed + 1
      elseif state.unknown:has(row) and not o.resend_unknown then
        if o.accept_unknown then
          counts.accepted_unknown = counts.accepted_unknown + 1
          if writer then writer:record(row, to, "ok", "accepted by the operator (--accept-unknown)") end
        else
          counts.skipped_unknown = counts.skipped_unknown + 1
          list_unknown(row, to, state.pending:has(row) and "pending" or "maybe_sent",
            state.pending:has(row) and "no outcome recorded (the run stopped while sending)" or "earlier run")
        end
      else
        local bad = bad_number(to)
        if bad then
          -- Refused before it could be sent: no pending line needed.
          counts.failed = counts.failed + 1
          list_failed(row, to, bad)
          if writer then writer:record(row, to, "failed", bad) end
        else
          local msg = { to = to, from = from, text = render_text(fields) }
          if render_subject then msg.subject = render_subject(fields) end
          if o.kind then msg.kind = o.kind end
          batch[#batch + 1] = { row = row, to = to, msg = msg }
          if #batch >= batch_size then
            send_batch(batch)
            batch = {}
          end
        end
      end
      if #batch == 0 then bar:update(processed, detail_text(), nil, dry and processed or counts.sent) end
    end
    send_batch(batch)
    r:close()
  end

  local started = monotonic()
  local ok, err = pcall(loop)
  local interrupted = false
  if not ok then
    if not is_interrupt(err) then
      if writer then writer:close() end
      error(err, 0)
    end
    interrupted = true
    if inflight then
      for _, b in ipairs(inflight) do list_unknown(b.row, b.to, "pending", "interrupted while sending") end
      counts.maybe_sent = counts.maybe_sent + #inflight
    end
  end
  bar:finish(processed, detail_text(), dry and processed or counts.sent)
  if writer then
    if interrupted then writer:comment("interrupted") end
    writer:close()
  end
  h:close()
  local kb = collectgarbage("count")
  if kb > peak_kb then peak_kb = kb end

  local unknown_total = counts.maybe_sent + counts.skipped_unknown
  local code = status.OK
  if abort_message then code = status.USAGE
  elseif interrupted or unknown_total > 0 then code = status.UNKNOWN
  elseif counts.failed > 0 then
    -- Every failure a network one before anything left: safe to retry.
    code = counts.not_sent == counts.failed and status.NOT_SENT or status.REFUSED
  end
  local elapsed = monotonic() - started

  if out.json then
    local doc = { ok = code == status.OK, command = "bulk", exit_code = code, provider = h.name, file = path,
      journal = o.journal, dry_run = dry, rows = info.total, processed = processed,
      sent_ok = counts.ok, failed = counts.failed, not_sent = counts.not_sent, maybe_sent = counts.maybe_sent,
      skipped_done = counts.skipped_done, skipped_failed = counts.skipped_failed,
      skipped_unknown = counts.skipped_unknown, accepted_unknown = counts.accepted_unknown,
      unknown = unknown_list, unknown_total = unknown_total, failures = failed_list,
      interrupted = interrupted or nil, error = abort_message,
      -- the rate of rows handed to the provider, not of rows skipped
      sent = not dry and counts.sent or nil,
      elapsed = elapsed, rows_per_second = (dry and processed or counts.sent) / max(elapsed, 1e-6), memory_kb = peak_kb }
    if dry then
      doc.would_send, doc.requests, doc.shown = counts.would_send, counts.requests, shown_docs
    end
    out:json_doc(doc)
    return code
  end

  local lines = {}
  lines[#lines + 1] = format("ksms bulk: %d rows in %s via %s%s", info.total, path, h.name, dry and " (dry run: nothing sent)" or "")
  if dry then
    lines[#lines + 1] = format("  would send: %d rows (%d requests); refused before sending: %d", counts.would_send,
      counts.requests, counts.failed)
  else
    lines[#lines + 1] = format("  sent now:   %d ok, %d failed, %d may have been sent", counts.ok, counts.failed, counts.maybe_sent)
  end
  lines[#lines + 1] = format("  skipped:    %d done earlier, %d failed earlier%s, %d may have been sent earlier%s",
    counts.skipped_done, counts.skipped_failed, o.retry_failed and "" or " (--retry-failed sends them)",
    counts.skipped_unknown, counts.accepted_unknown > 0 and format(", %d accepted as sent", counts.accepted_unknown) or "")
  if o.journal then lines[#lines + 1] = "  journal:    " .. o.journal end
  if interrupted then lines[#lines + 1] = "  interrupted: re-run the same command to resume" end
  if abort_message then lines[#lines + 1] = "  stopped: " .. abort_message end
  if #unknown_list > 0 then
    lines[#lines + 1] = format("rows that may have been sent (%d; not resent: check the provider's history, then re-run with"
      .. " --resend-unknown to send them again or --accept-unknown to record them as sent):", unknown_total)
    for _, u in ipairs(unknown_list) do
      lines[#lines + 1] = format("  row %d  %s  %s  %s", u.row, u.to, u.outcome, u.detail or "")
    end
  end
  if #failed_list > 0 then
    lines[#lines + 1] = format("rows refused (%d, not sent):", counts.failed)
    for i, f in ipairs(failed_list) do
      if i > 20 then lines[#lines + 1] = "  ... (see the journal)"; break end
      lines[#lines + 1] = format("  row %d  %s  %s", f.row, f.to, f.error)
    end
  end
  for _, l in ipairs(lines) do out:line(l) end
  return code
end

_M.commands = {
  {
    name = "bulk", summary = "one message per CSV row, with a journal that makes re-runs safe",
    usage = "ksms bulk FILE --provider NAME --from NUMBER --text TEMPLATE --journal FILE [--phone-column NAME] [--dry-run]",
    flags = flags.join({
      { name = "from", kind = "string", arg = "NUMBER", help = "registered caller number (or from = in the config)" },
      { name = "text", kind = "string", arg = "TEMPLATE", help = "message with {column} placeholders ({{ }} for braces)" },
      { name = "text-file", kind = "string", arg = "PATH", help = "the template from a file" },
      { name = "subject", kind = "string", arg = "TEMPLATE", help = "LMS subject, with placeholders" },
      { name = "kind", kind = "string", arg = "KIND", help = "auto (default) | sms | lms" },
      { name = "phone-column", kind = "string", arg = "NAME", help = "the recipients' column (default phone)" },
      { name = "journal", kind = "string", arg = "FILE", help = "outcome journal; the same file resumes a run (required)" },
      { name = "batch", kind = "number", arg = "N", help = "rows per send_many call (default 100)" },
      { name = "resend-unknown", kind = "bool", help = "send again the rows that may have been sent" },
      { name = "accept-unknown", kind = "bool", help = "record the rows that may have been sent as sent" },
      { name = "retry-failed", kind = "bool", help = "send again rows the provider refused (known not sent)" },
      { name = "force", kind = "bool", help = "go on with a journal written for another template or options" },
      { name = "show", kind = "number", arg = "N", help = "dry run: requests printed in full (default 3)" },
      { name = "no-progress", kind = "bool", help = "no progress on stderr (KSMS_PROGRESS=bar|lines|none)" },
    }, { flags.DRY_RUN }, flags.PROVIDER_OPTIONS),
    details = [[
The CSV has a header row; RFC 4180 quoting; UTF-8. Row N is the Nth record
after the header. The journal gets one line per row and event (row,
recipient, pending | ok | failed | maybe_sent, provider id or error),
flushed at once; "pending" is written before a batch is sent. A re-run with
the same journal skips rows that are ok or failed, and skips and lists
rows that may have been sent: maybe_sent, or pending with no outcome (the
run was killed while sending). The template's fixed text is checked
against the provider's charset and length before the first row; the
journal records a fingerprint (FNV-1a, not cryptographic, of the template
and the options, never a secret) and a re-run with another template stops
unless --force. Exit 0 all sent, 1 some rows refused,
2 bad input (nothing sent), 3 some rows may have been sent, 4 the only
failures were network ones before anything left (--retry-failed sends
those rows again).]],
    examples = {
      "ksms bulk customers.csv --provider senders --from 0212345678 --text '{name}님, 주문 {order}이 발송되었습니다' --journal customers.journal",
      "ksms bulk customers.csv --provider senders --from 0212345678 --text '{name}님 안녕하세요' --dry-run",
      "ksms bulk customers.csv ... --journal customers.journal     # again: resumes, sends nothing twice",
    },
    run = run,
  },
}

return _M
