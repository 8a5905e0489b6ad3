--- ksms.outbox.lookup: what each provider can say about a message the
-- outbox sent, as a verdict the tracker (ksms.outbox.track) acts on.
--
--   verdict  "delivered" | "undelivered" | "pending" (no final word yet)
--            | "not_found" (a search ran and found nothing) | "error"
--   detail   what the provider said (the evidence), a small table
--
-- ppurio answers report(cmid); Cafe24's history is searched by recipient,
-- time and text; OneShot pushes its reports (ksms.outbox.track handles
-- them); Senders and MessageMe have no lookup. Nothing a provider answers
-- raises here: an answer that cannot be read is an "error" verdict.
-- @module ksms.outbox.lookup
-- @alias _M

local core = require "ksms.core"
local phone = require "ksms.rules.phone"
local schedule = require "ksms.rules.schedule"

local type, ipairs, pairs, tonumber, tostring, pcall = type, ipairs, pairs, tonumber, tostring, pcall
local gsub, match, format, sub = string.gsub, string.match, string.format, string.sub
local cp949_len = core.cp949_len

local _M = { _VERSION = "0.2.0" }

-- Which providers have a lookup, and of what kind.
_M.KIND = { ppurio = "report", cafe24 = "history", oneshot = "push" }

local function short(s, n)
  if type(s) ~= "string" then return nil end
  if #s > n then return sub(s, 1, n) end
  return s
end

-- An error object as evidence: its category, code and message only.
local function err_detail(err)
  if type(err) ~= "table" then return { message = short(tostring(err), 200) } end
  return { category = err.category, code = err.code, message = short(err.message, 200) }
end
_M.err_detail = err_detail

-- ---- ppurio ----

--- ppurio: the report for a cmid -> verdict, detail.
-- The document's call_status codes are final (4100 and 6600 "전달" are
-- delivered, the others are not); an undocumented code or an answer
-- without a report (result_code 300: no report for that cmid yet) is
-- pending; a failed request is an "error".
-- @param client a ksms.client("ppurio", ...)
-- @tparam string cmid
function _M.ppurio(client, cmid)
  if type(cmid) ~= "string" or cmid == "" then return "not_found", { reason = "no cmid" } end
  local r, err = client:report(cmid)
  if not r then
    local d = err_detail(err)
    d.cmid = cmid
    -- result_code 300 (parameter error) without a call_status: the fake
    -- and, as far as the document says, the provider have no report for
    -- that cmid (yet). Anything else (a key refused, the network, an
    -- answer that cannot be read) is a failed lookup.
    if type(err) == "table" and err.category == "invalid_input" then return "pending", d end
    return "error", d
  end
  local d = { cmid = cmid, call_status = r.call_status, report_time = r.report_time,
    description = short(r.description, 200), category = r.category, umid = short(r.umid, 64) }
  if r.delivered then return "delivered", d end
  if r.category == "unknown" then return "pending", d end -- undocumented: not a final word
  return "undelivered", d
end

-- ---- Cafe24 ----

-- "YYYY-MM-DD hh:mm:ss" (regDate) or "YYYYMMDDhhmm" (sendDateTime), Korea
-- time, to epoch seconds; nil for anything else.
local function kst_epoch(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, se = match(s, "^%s*(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)%s*$")
  if not y then
    y, mo, d, h, mi = match(s, "^%s*(%d%d%d%d)(%d%d)(%d%d)(%d%d)(%d%d)%s*$")
    se = "0"
  end
  if not y then return nil end
  local ok, e = pcall(schedule.from_kst, { year = tonumber(y), month = tonumber(mo), day = tonumber(d),
    hour = tonumber(h), min = tonumber(mi), sec = tonumber(se) })
  if ok and type(e) == "number" then return e end
  return nil
end
_M.kst_epoch = kst_epoch

local function digits(s) return type(s) == "string" and (gsub(s, "%D", "")) or nil end

-- Text as the history shows it may differ in line ends and trailing
-- blanks from what was sent.
local function norm_text(s)
  if type(s) ~= "string" then return nil end
  s = gsub(s, "\r\n", "\n")
  s = gsub(s, "[ \t\n]+$", "")
  return s
end

-- The recipients of a stored message (digits) and the text each got
-- ({name} filled in when the message named them), or nil, why.
local MAX_RECIPIENTS = 20
local function recipients(msg)
  if type(msg) ~= "table" or type(msg.text) ~= "string" then return nil, "the record has no message text" end
  local list = {}
  local function add(number, name)
    if type(number) ~= "string" then return false end
    local ok, d = pcall(phone.normalize, number)
    if not ok or not d then return false end
    local text = msg.text
    if name then text = gsub(text, "{name}", (gsub(name, "%%", "%%%%"))) end
    list[#list + 1] = { number = d, text = norm_text(text) }
    return true
  end
  if type(msg.names) == "table" then
    if #msg.names > 0 then
      for _, e in ipairs(msg.names) do
        if type(e) ~= "table" or not add(e[1], type(e[2]) == "string" and e[2] or "") then
          return nil, "a recipient of the record cannot be read"
        end
      end
    else
      for n, name in pairs(msg.names) do
        if not add(n, type(name) == "string" and name or "") then return nil, "a recipient of the record cannot be read" end
      end
    end
  elseif type(msg.to) == "string" then
    if not add(msg.to) then return nil, "the record's recipient cannot be read" end
  elseif type(msg.to) == "table" then
    for _, n in ipairs(msg.to) do
      if not add(n) then return nil, "a recipient of the record cannot be read" end
    end
  end
  if #list == 0 then return nil, "the record has no recipient" end
  if #list > MAX_RECIPIENTS then
    return nil, format("the record has %d recipients; ksms searches the history for at most %d", #list, MAX_RECIPIENTS)
  end
  return list
end

-- The reservation time of a stored message (epoch seconds or a Korea-time
-- date table, as send takes it), or nil.
local function reserved_at(msg)
  local at = msg.at
  if type(at) == "number" then return at end
  if type(at) == "table" then
    local ok, e = pcall(schedule.from_kst, at)
    if ok and type(e) == "number" then return e end
  end
  return nil
end

local function kind_of(msg)
  if msg.kind == "sms" or msg.kind == "lms" then return msg.kind end
  local n = cp949_len(msg.text)
  if type(n) == "number" and n > 90 then return "lms" end
  return "sms"
end

-- The reference an entry is claimed by (the record's provider_id once
-- settled): Cafe24 gives entries no id, so recipient, registration time
-- and the entry's rank among identical ones.
local function ref_of(number, reg, rank)
  return format("c24:%s:%d:%d", number, reg, rank)
end

local STATUS = { delivered = "delivered", failed = "undelivered", requested = "pending", reserved = "pending" }

--- Cafe24: searches the history for one recipient of a record.
-- @param client a ksms.client("cafe24", ...)
-- @tparam table r { number, text, kind, lo, hi (epoch window), at (a reservation), own_ref, claimed = fn(ref) -> true when another record holds it }
-- @tparam table opts max_pages, page_size
-- @return "found", match, detail | "not_found", detail | "error", err (the history call failed)
local function search_one(client, r, opts)
  local pages, size = opts.max_pages or 4, opts.page_size or 50
  local q = { date = schedule.format(r.lo + 86400, "YYYYMMDD"), days = 1, count = size,
    to = r.number, kind = r.kind == "lms" and "lms" or nil }
  local detail = { to = r.number, date = q.date, kind = r.kind, pages = 0, entries = 0, candidates = 0,
    window = { r.lo, r.hi } }
  local candidates = {}
  local seen_rank = {}
  local done = false
  for page = 1, pages do
    q.start = (page - 1) * size
    local res, err = client:history(q)
    detail.pages = page
    if not res then return "error", err end
    local list = type(res.records) == "table" and res.records or {}
    for _, e in ipairs(list) do
      detail.entries = detail.entries + 1
      local raw = type(e.raw) == "table" and e.raw or {}
      -- regDate (when it was accepted: the fake's, and what public clients
      -- of the service read) is in the record's window; without it, the
      -- document's sendDateTime (to the minute): the send time, which for
      -- a reservation is the reserved time.
      local reg = kst_epoch(raw.regDate)
      local lo, hi = r.lo, r.hi
      if not reg then
        reg = kst_epoch(e.sent_at)
        lo = lo - 60 -- cut to the minute
        if r.at then lo, hi = r.at - 120, r.at + 120 end
      elseif reg < lo then
        done = true -- newest first (by registration): older ones follow
        break
      end
      if reg then
        local to = digits(e.to)
        if reg >= lo and reg <= hi and to == r.number and norm_text(e.text) == r.text then
          local k = to .. ":" .. reg
          seen_rank[k] = (seen_rank[k] or 0) + 1
          candidates[#candidates + 1] = { entry = e, reg = reg, rank = seen_rank[k] }
        end
      end
    end
    if done or #list < size then done = true; break end
  end
  detail.candidates = #candidates
  detail.complete = done
  -- Oldest first (the listing is newest first); ranks count from the
  -- newest, so one entry keeps its reference as older ones are listed.
  for i = #candidates, 1, -1 do
    local c = candidates[i]
    local ref = ref_of(r.number, c.reg, c.rank)
    if ref == r.own_ref or not r.claimed(ref) then
      local e = c.entry
      detail.ref = ref
      detail.entry = { from = short(e.from, 32), to = short(e.to, 32), sent_at = short(e.sent_at, 16),
        reg_date = short(type(e.raw) == "table" and e.raw.regDate or nil, 32), status = short(e.status, 16),
        send_type = e.send_type, refunded_at = short(e.refunded_at, 16) }
      return "found", { ref = ref, verdict = STATUS[e.status] or "pending", status = e.status }, detail
    end
  end
  return "not_found", detail
end

--- Cafe24: finds a record's entries in the history.
-- Every recipient must be found for a match; the verdict is delivered
-- when every entry says delivered, undelivered when every entry is final
-- and one failed, else pending.
-- @param client a ksms.client("cafe24", ...)
-- @tparam table rec the outbox record (message, provider_id)
-- @tparam table opts lo, hi (epoch seconds: the window the send happened in), claimed(ref), max_pages
-- @return verdict, detail (detail.ref: the provider_id to record)
function _M.cafe24(client, rec, opts)
  local list, why = recipients(rec.message)
  if not list then return "not_found", { reason = why } end
  local kind = kind_of(rec.message)
  local own = type(rec.provider_id) == "string" and rec.provider_id or nil
  local detail = { recipients = #list, searched = {} }
  local refs, verdict = {}, "delivered"
  for i, r in ipairs(list) do
    r.kind, r.lo, r.hi, r.claimed, r.at = kind, opts.lo, opts.hi, opts.claimed, reserved_at(rec.message)
    -- The record's own reference names its first recipient's entry.
    r.own_ref = i == 1 and own or nil
    local how, m, d = search_one(client, r, opts)
    if how == "error" then
      detail.error = err_detail(m)
      return "error", detail
    end
    if how == "not_found" then
      detail.searched[i] = m
      return "not_found", detail
    end
    detail.searched[i] = d
    refs[i] = m.ref
    if m.verdict == "pending" then verdict = "pending"
    elseif m.verdict == "undelivered" and verdict ~= "pending" then verdict = "undelivered" end
  end
  detail.ref = refs[1]
  detail.refs = refs
  return verdict, detail
end

-- For the specs and the tracker: at most this many recipients are searched.
_M.MAX_RECIPIENTS = MAX_RECIPIENTS
_M.kind_of = kind_of

return _M
