--- ksms.cli.bulk_send: the sending pass of `ksms bulk`, on the outbox
-- (ksms.outbox over the SQLite file --journal names). The rows are
-- streamed from the CSV into enqueue_many, --batch at a time (key "row:N"),
-- and the outbox's worker (ob:run) sends each chunk: it marks a row
-- `sending` only as its request is handed to the transport, so after a
-- kill the only rows whose fate is unknown are the ones in flight (the
-- next open makes them maybe_sent). The store holds the rows; this pass
-- holds one chunk and a bitset of row numbers.
--
-- A re-run: enqueue returns the stored record (duplicate) and its state
-- says what happened: sent (skipped), failed (skipped; --retry-failed
-- resends), maybe_sent (listed, never resent unless --resend-unknown;
-- --accept-unknown records it as sent), queued (never left: sent now).
--
--   local result = bulk_send.run{ o =, path =, info =, h =, from =, out =, rep = }
--   result.abort (a message), result.interrupted, result.counts (the outbox's)
-- @module ksms.cli.bulk_send
-- @alias _M

local bulk_rows = require "ksms.cli.bulk_rows"
local cli_outbox = require "ksms.cli.outbox"
local fingerprint = require "ksms.cli.fingerprint"
local bitset = require "ksms.cli.bitset"
local status = require "ksms.cli.status"
local provider = require "ksms.cli.provider"
local ad = require "ksms.cli.ad"
local errors = require "ksms.errors"

local ipairs, pairs, pcall, error, type = ipairs, pairs, pcall, error, type
local format, find = string.format, string.find

local _M = { _VERSION = "0.2.0" }

local row_key, key_row, error_text = cli_outbox.row_key, cli_outbox.key_row, cli_outbox.error_text

local function usage(msg) error(status.usage(msg), 0) end

local function is_interrupt(e)
  return type(e) == "string" and find(e, "interrupted!", 1, true) ~= nil
end

local DONE = { sent = true, delivered = true, undelivered = true }

local function total(counts)
  local n = 0
  for _, v in pairs(counts or {}) do if type(v) == "number" then n = n + v end end
  return n
end

-- The outbox belongs to one CSV and one template: checked, then recorded.
local function check_file(ob, p)
  local o, info, h = p.o, p.info, p.h
  local columns = cli_outbox.meta_get(ob, "bulk.columns")
  if columns == nil then
    local n = total(cli_outbox.counts(ob))
    if n > 0 then
      usage(format("%s holds %d records that ksms bulk did not write: give bulk an outbox file of its own", o.journal, n))
    end
  elseif columns ~= info.header_line then
    usage(format("%s was written for a CSV with columns %q; %s has %q. Use a new journal for a different file.",
      o.journal, columns, p.path, info.header_line))
  end
  -- What shapes every message, never a secret: a re-run with other text
  -- would mix two messages in one outbox.
  local shape = { provider = h.name, from = p.from, text = info.text, subject = o.subject or "",
    kind = o.kind or "auto", phone_column = o.phone_column or "phone" }
  -- The ad flags count only when given, so a journal written before they
  -- existed keeps its fingerprint.
  for k, v in pairs(ad.fields(o) or {}) do shape[k] = v end
  local fp = fingerprint.of(shape)
  local old = cli_outbox.meta_get(ob, "bulk.template")
  if old and old ~= fp and not o.force then
    usage(format("%s was written for another template or options (%s; now %s): the rows it records were sent "
      .. "with other text. Use a new journal, or --force to go on with this one.", o.journal, old, fp))
  end
  if columns == nil then cli_outbox.meta_set(ob, "bulk.columns", info.header_line) end
  if old ~= fp then cli_outbox.meta_set(ob, "bulk.template", fp) end
end

local function body(ob, p, result)
  local o, h, out, rep = p.o, p.h, p.out, p.rep
  local counts = rep.counts
  local clients = { [h.name] = h.client }
  local chunk_size = o.batch or 100
  local inflight -- the rows of the chunk the worker is sending

  check_file(ob, p)

  local before = cli_outbox.counts(ob)
  if (before.maybe_sent or 0) > 0 then
    out:note(format("ksms bulk: %d rows may have been sent by an earlier run; %s", before.maybe_sent,
      o.resend_unknown and "sending them again (--resend-unknown)"
      or o.accept_unknown and "recording them as sent (--accept-unknown)"
      or "they are skipped and listed at the end"))
  end

  local function work()
    local summary, err = ob:run{ clients = clients, concurrency = h.options.concurrency, until_idle = true }
    if not summary then result.abort = "the outbox's worker stopped: " .. cli_outbox.message(err) end
  end

  -- The outcome of a row sent by this run, from its record.
  local function settle(row, to, rec)
    local state = type(rec) == "table" and rec.state
    if DONE[state] then
      counts.ok = counts.ok + 1
    elseif state == "failed" then
      counts.failed = counts.failed + 1
      if status.not_sent(rec.error, h:sent() == 0) then counts.not_sent = counts.not_sent + 1 end
      rep.list_failed(row, to, error_text(rec.error) or "failed")
    elseif state == "expired" then
      counts.expired = counts.expired + 1
      rep.list_failed(row, to, error_text(rec.error) or "expired: not sent")
    elseif state == "queued" then
      -- The worker stopped before it: never left, a re-run sends it.
      counts.left_queued = counts.left_queued + 1
    else -- maybe_sent, or sending when the run was stopped
      counts.maybe_sent = counts.maybe_sent + 1
      rep.list_unknown(row, to, "maybe_sent", error_text(type(rec) == "table" and rec.error)
        or (state == "sending" and "in flight when the run stopped" or "no record"))
    end
  end

  -- Rows queued by an earlier run that never left (killed before their
  -- turn, or `ksms outbox resolve KEY resend`): sent first, and counted as
  -- this run's when the stream reaches them.
  local resumed = bitset.new()
  if (before.queued or 0) > 0 then
    cli_outbox.each(ob, { state = "queued" }, function(rec)
      local row = key_row(rec.key)
      if row then resumed:add(row) end
    end)
    counts.resumed = resumed.count
    out:note(format("ksms bulk: %d rows are queued (an earlier run stopped before them, or resolve resend); "
      .. "sending them now", resumed.count))
    local wok, werr = pcall(work)
    if not wok then
      if not is_interrupt(werr) then error(werr, 0) end
      -- Stopped while sending them: what the store says of them, as counts.
      result.interrupted = true
      local cok, now = pcall(ob.counts, ob)
      if cok and type(now) == "table" then
        counts.ok = counts.ok + (now.sent or 0) - (before.sent or 0)
        counts.failed = counts.failed + (now.failed or 0) - (before.failed or 0)
        counts.maybe_sent = counts.maybe_sent + (now.maybe_sent or 0) - (before.maybe_sent or 0)
        counts.left_queued = now.queued or 0
      end
      return
    end
  end

  local function resolve(key, action)
    local rec, err = ob:resolve(key, action)
    if not rec then result.abort = format("cannot %s %s: %s", action, key, cli_outbox.message(err)) end
    return rec
  end

  -- What enqueue said of a row; to_send gets the rows this run sends.
  local function classify(e, rec, to_send)
    if type(rec) ~= "table" or errors.is(rec) or not rec.state then
      -- Refused by the client's checks: never stored.
      counts.failed = counts.failed + 1
      rep.list_failed(e.row, e.to, bulk_rows.error_detail(rec))
      return
    end
    local state, key = rec.state, e.key
    if not rec.duplicate or state == "queued" then to_send[#to_send + 1] = e; return end
    if resumed:has(e.row) then settle(e.row, e.to, rec); return end
    if DONE[state] then
      counts.skipped_done = counts.skipped_done + 1
    elseif state == "failed" then
      if o.retry_failed then
        if resolve(key, "resend") then to_send[#to_send + 1] = e; counts.retried_failed = counts.retried_failed + 1 end
      else
        counts.skipped_failed = counts.skipped_failed + 1
      end
    elseif state == "expired" then
      counts.skipped_expired = counts.skipped_expired + 1
    elseif state == "maybe_sent" and o.resend_unknown then
      if resolve(key, "resend") then to_send[#to_send + 1] = e; counts.resent_unknown = counts.resent_unknown + 1 end
    elseif state == "maybe_sent" and o.accept_unknown then
      if resolve(key, "sent") then counts.accepted_unknown = counts.accepted_unknown + 1 end
    else
      counts.skipped_unknown = counts.skipped_unknown + 1
      rep.list_unknown(e.row, e.to, "maybe_sent", state == "sending" and "being sent by another process"
        or error_text(rec.error) or "an earlier run")
    end
  end

  local items, entries = {}, {}
  local function flush()
    if #entries == 0 then return end
    local batch, list = entries, items
    items, entries = {}, {}
    local ok, recs, err = pcall(ob.enqueue_many, ob, list)
    if not ok then
      if is_interrupt(recs) then error(recs, 0) end
      -- A misuse raised before anything was stored.
      result.abort = provider.clean(recs)
      return
    end
    if type(recs) ~= "table" then
      result.abort = "cannot store the rows in the outbox: " .. cli_outbox.message(err)
      return
    end
    local to_send = {}
    for i, e in ipairs(batch) do
      classify(e, recs[i], to_send)
      if result.abort then return end
    end
    if #to_send == 0 then return end
    counts.sent = counts.sent + #to_send
    inflight = to_send
    work()
    for _, e in ipairs(to_send) do
      local rec, serr = ob:status(e.key)
      -- A store that cannot answer: the row's fate is not known here.
      settle(e.row, e.to, rec or { state = "maybe_sent", error = serr and cli_outbox.message(serr) or "no record" })
    end
    inflight = nil
  end

  local reader, rerr = bulk_rows.reader(p.path, p.info, { from = p.from, kind = o.kind, ad = ad.fields(o) })
  if not reader then result.abort = rerr; return end
  local function stream()
    while not result.abort do
      local e, ferr = reader:next()
      if not e then
        if ferr then result.abort = ferr end
        break
      end
      rep.processed = e.row
      if e.bad then
        counts.failed = counts.failed + 1
        rep.list_failed(e.row, e.to, e.bad)
      else
        e.key = row_key(e.row)
        items[#items + 1] = { e.msg, { key = e.key, client = h.name } }
        e.msg = nil
        entries[#entries + 1] = e
        if #entries >= chunk_size then flush(); rep.tick() end
      end
      if #entries == 0 then rep.tick(false) end
    end
    if not result.abort then flush() end
  end
  local ok, err = pcall(stream)
  reader:close()
  if not ok then
    if not is_interrupt(err) then error(err, 0) end
    result.interrupted = true
    -- The chunk being sent: what the store says of each row now.
    for _, e in ipairs(inflight or {}) do
      local sok, rec = pcall(ob.status, ob, e.key)
      settle(e.row, e.to, sok and rec or { state = "sending" })
    end
  end
end

--- Runs the sending pass; usage errors (a foreign or mismatched outbox)
-- raise before anything is sent.
-- @tparam table p o (the options), path, info (bulk_rows.scan), h (the
--   provider handle), from, out, rep (counts, list_failed, list_unknown, tick)
-- @treturn table abort, interrupted, counts
function _M.run(p)
  local ob = cli_outbox.open(p.o.journal, { [p.h.name] = p.h.client })
  local result = {}
  local ok, err = pcall(body, ob, p, result)
  if ok or is_interrupt(err) then
    local cok, c = pcall(ob.counts, ob)
    result.counts = cok and c or nil
  end
  pcall(ob.close, ob)
  if not ok then
    if is_interrupt(err) then result.interrupted = true else error(err, 0) end
  end
  return result
end

return _M
