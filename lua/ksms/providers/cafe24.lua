--- ksms.providers.cafe24: Cafe24 SMS hosting (the provider's document). HTTPS form
-- POSTs whose every field is Base64 (with `mode` set), answered in plain
-- text "code,remaining". Strict EUC-KR (KS X 1001): '됬' and emoji are
-- refused before sending. Also the balance (sms_remain.php), registered
-- caller numbers (smsSenderPhone.php) and history (sms_list.php, XML, on
-- its own host, parsed with lua-expat).
-- @module ksms.providers.cafe24
-- @alias P

local common = require "ksms.providers.common"
local codes = require "ksms.providers.cafe24_codes"
local shared = require "ksms.codes"
local errors = require "ksms.errors"
local message = require "ksms.message"
local phone = require "ksms.rules.phone"
local schedule = require "ksms.rules.schedule"
local text_rules = require "ksms.rules.text"
local core = require "ksms.core"

local type, ipairs, pairs, tostring, tonumber, error = type, ipairs, pairs, tostring, tonumber, error
local format, concat, find = string.format, table.concat, string.find
local b64 = core.b64encode
local str = common.str
local cp949_len = core.cp949_len
local misuse = errors.misuse

local P = { name = "cafe24", _VERSION = "0.2.0" }

P.limits = { charset = "euc-kr", sms = 90, lms = 2000, subject = 60 }
P.capabilities = {
  sms = true, lms = true, mms = false, reservation = true, balance = true,
  alimtalk = false, friendtalk = false, report = false, sender_numbers = true,
  register_sender = false, history = true, image = false, repeat_send = true,
  names = true, test_mode = true,
  -- The document: "1000건 이상 발송 불가" (1000 or more cannot be sent).
  max_recipients_per_request = 999,
}

local MIN_LEAD = 600      -- reservations at least 10 minutes ahead
local MODE = b64("1")     -- "every field is Base64"

local function invalid(code, fmt, ...) return common.invalid("cafe24", code, fmt, ...) end

-- The options configure reads (ksms.client adds its own and refuses any
-- other).
P.options = {
  user_id = "string", secure_key = "string", base_url = "string", history_url = "string",
  test = "boolean", nointeractive = "boolean", max_recipients_per_request = "number",
}
P.required = { "user_id", "secure_key" } -- ksms.client raises without them

--- Checks Cafe24's options (user_id, secure_key, base_url, history_url, test).
-- @tparam table o
-- @treturn table cfg
function P.configure(o)
  local function url(v, default, name)
    v = v or default
    if type(v) ~= "string" or not v:match("^https?://") then
      errors.misuse(format("ksms.client: %s must be scheme://host[:port]", name))
    end
    return common.strip_slashes(v)
  end
  local base = url(o.base_url, "https://sslsms.cafe24.com", "base_url")
  -- The document gives the history host over plain HTTP only.
  local history = url(o.history_url, "http://smsapi.cafe24.com", "history_url")
  return {
    user_id = o.user_id, secure_key = o.secure_key, base_url = base, history_url = history,
    test = o.test and true or false,
    urls = {
      send = base .. "/sms_sender.php", remain = base .. "/sms_remain.php",
      senders = base .. "/smsSenderPhone.php", history = history .. "/sms_list.php",
    },
    max_per_request = o.max_recipients_per_request or 999,
    nointeractive = o.nointeractive ~= false,
  }
end

-- Every field Base64, in the given order, `mode` last.
local function encoded(fields)
  local out = {}
  for i, f in ipairs(fields) do out[i] = { f[1], b64(f[2]) } end
  out[#out + 1] = { "mode", MODE }
  return out
end

-- Cafe24 answers "code,remaining", "Test Success!" or a bare code.
local function parse_answer(kind)
  local table_ = kind == "lms" and codes.lms or codes.sms
  return function(res)
    if res.status ~= 200 then return common.parse_json("cafe24", res) end
    local body = common.trim(res.body or "")
    if body:lower():find("^test success") then
      return { ok = true, provider = "cafe24", code = "test", test = true, kind = kind, raw = res.body,
        description = "dry run accepted (testflag=Y): nothing was sent" }
    end
    local code, remaining = body:match("^([^,]+),?(.*)$")
    if not code then
      return nil, errors.new { category = "protocol", code = "bad_response", provider = "cafe24",
        maybe_sent = true, message = "empty answer; the provider may have accepted the request", raw = res.body }
    end
    -- The code in the kind's table first, then in either.
    local tbl = table_[code] and table_ or codes.sms[code] and codes.sms or codes.lms[code] and codes.lms
    if not tbl then
      return nil, shared.undocumented("cafe24", code, { raw = res.body,
        message = format("undocumented answer %q; the provider may have accepted the request", body:sub(1, 80)) }, true)
    end
    return common.outcome({ name = "cafe24", codes = tbl }, code, res.body,
      { kind = kind, remaining = tonumber(remaining), reserved = code == "reserved" })
  end
end

-- names: { ["010-1111-2222"] = "홍길동", ... } or { { "01011112222", "홍길동" }, ... }
local function destination(names, to)
  local pairs_ = {}
  if #names > 0 then
    for i, e in ipairs(names) do
      if type(e) ~= "table" or type(e[1]) ~= "string" or type(e[2]) ~= "string" then
        misuse("ksms: cafe24 'names' entries are { number, name }")
      end
      pairs_[i] = e
    end
  else
    for n, name in pairs(names) do
      if type(n) ~= "string" or type(name) ~= "string" then misuse("ksms: cafe24 'names' maps numbers to names") end
      pairs_[#pairs_ + 1] = { n, name }
    end
    table.sort(pairs_, function(a, b) return a[1] < b[1] end)
  end
  local out, numbers = {}, {}
  for i, e in ipairs(pairs_) do
    local d, err = phone.normalize(e[1], "to")
    if not d then return nil, err end
    if find(e[2], "[|,]") then return invalid("names", "name %q contains | or , which the provider uses as separators", e[2]) end
    local ok, cerr = text_rules.check_charset(e[2], "euc-kr", "name " .. i)
    if not ok then return nil, cerr end
    out[i] = phone.format(d) .. "|" .. e[2]
    numbers[i] = d
  end
  return out, numbers
end

local send_spec = {
  limits = P.limits, extra_fields = { names = true, ["repeat"] = true }, min_lead = MIN_LEAD,
}

--- Plans a send: to or names, from, text, at, repeat.
-- @tparam table cfg
-- @tparam table msg
-- @param ctx
-- @return a plan, or nil, err
function P.plan_send(cfg, msg, ctx)
  if type(msg) == "table" and msg.names ~= nil and msg.to ~= nil then
    misuse("ksms: cafe24 takes recipients from 'to' or from 'names', not both")
  end
  if type(msg) == "table" and msg.names ~= nil then
    -- Recipients come from names; normalize_send still wants `to`.
    local copy = {}
    for k, v in pairs(msg) do copy[k] = v end
    local list = {}
    if #msg.names > 0 then for i, e in ipairs(msg.names) do list[i] = type(e) == "table" and e[1] or e end
    else for n in pairs(msg.names) do list[#list + 1] = n end end
    copy.to = list
    msg = copy
  end
  local m, err = message.normalize_send(msg, send_spec, ctx)
  if not m then return nil, err end
  if m.subject and cp949_len(m.subject) > P.limits.subject then
    return nil, errors.new { category = "message_length", code = "too_long", provider = "cafe24",
      message = format("subject is %d bytes; Cafe24 takes at most %d", cp949_len(m.subject), P.limits.subject) }
  end
  local rep = m["repeat"]
  if rep ~= nil then
    if type(rep) ~= "table" or type(rep.count) ~= "number" or type(rep.interval) ~= "number" then
      misuse("ksms: cafe24 'repeat' is { count = 1..10, interval = minutes (>= 15) }")
    end
    if rep.count < 1 or rep.count > 10 or rep.count % 1 ~= 0 then
      return invalid("repeat", "repeat count %s must be 1 to 10", tostring(rep.count))
    end
    if rep.interval < 15 or rep.interval % 1 ~= 0 then
      return invalid("repeat", "repeat interval %s must be at least 15 minutes", tostring(rep.interval))
    end
  end
  local dest
  if m.names then
    dest, err = destination(m.names, m.to)
    if not dest then return nil, err end
  end
  local sphone = phone.split(m.from)
  local list = dest or m.to
  local parts = common.chunk(list, cfg.max_per_request)
  local reqs, recipient_parts = {}, {}
  for i, chunk in ipairs(parts) do
    -- The document's field order.
    local fields = { { "user_id", cfg.user_id }, { "secure", cfg.secure_key },
      { "sphone1", sphone[1] }, { "sphone2", sphone[2] }, { "sphone3", sphone[3] or "" } }
    local numbers = {}
    if dest then
      fields[#fields + 1] = { "rphone", "" }
      fields[#fields + 1] = { "destination", concat(chunk, ",") }
      for k, e in ipairs(chunk) do numbers[k] = e:match("^[^|]+"):gsub("%-", "") end
    else
      local formatted = {}
      for k, n in ipairs(chunk) do formatted[k] = phone.format(n); numbers[k] = n end
      fields[#fields + 1] = { "rphone", concat(formatted, ",") }
    end
    if m.kind == "lms" and m.subject and m.subject ~= "" then fields[#fields + 1] = { "subject", m.subject } end
    fields[#fields + 1] = { "msg", m.text }
    if m.at then
      fields[#fields + 1] = { "rdate", schedule.format(m.at, "YYYYMMDD") }
      fields[#fields + 1] = { "rtime", schedule.format(m.at, "hhmmss") }
    end
    if cfg.test then fields[#fields + 1] = { "testflag", "Y" } end
    if cfg.nointeractive then fields[#fields + 1] = { "nointeractive", "1" } end
    if rep then
      fields[#fields + 1] = { "repeatFlag", "Y" }
      fields[#fields + 1] = { "repeatNum", tostring(rep.count) }
    end
    if m.kind == "lms" then fields[#fields + 1] = { "smsType", "L" } end
    if rep then fields[#fields + 1] = { "repeatTime", tostring(rep.interval) } end
    reqs[i] = { method = "POST", url = cfg.urls.send, form = encoded(fields) }
    recipient_parts[i] = numbers
  end
  local extra = message.ad_extra({ kind = m.kind, bytes = m.bytes, recipients = #m.to, reserved_at = m.at,
    test = cfg.test or nil }, m)
  return { requests = reqs, checked = message.checked(m), finish = function(outs)
    return common.combine(P, recipient_parts, outs, parse_answer(m.kind), extra)
  end }
end

--- Plans the balance call.
-- @tparam table cfg
-- @return a plan
function P.plan_balance(cfg)
  local req = { method = "POST", url = cfg.urls.remain,
    form = encoded { { "user_id", cfg.user_id }, { "secure", cfg.secure_key } } }
  return { requests = { req }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    if o.status ~= 200 then return common.parse_json("cafe24", o) end
    local body = common.trim(o.body or "")
    local n = tonumber(body)
    if common.finite(n) and n >= 0 and not find(body, "^%-") then
      return { ok = true, provider = "cafe24", balance = n, unit = "message", code = "success", raw = o.body }
    end
    return parse_answer("sms")(o)
  end }
end

--- smsSenderPhone.php answers JSON; read leniently: "Success" in any case,
-- the numbers as strings or as objects with a number field.
function P.plan_sender_numbers(cfg, number)
  local wanted
  if number ~= nil then
    local err
    wanted, err = phone.normalize(number, "from")
    if not wanted then return nil, err end
  end
  local req = { method = "POST", url = cfg.urls.senders,
    form = { { "userId", cfg.user_id }, { "passwd", cfg.secure_key } } }
  return { requests = { req }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    local doc = o.status == 200 and common.decode_json(o.body)
    if not doc then return common.parse_json("cafe24", o) end
    local result = str(doc.result) or str(doc.Result)
    if not result or result:lower() ~= "success" then
      return nil, errors.new { category = "auth", code = result or "fail", provider = "cafe24",
        message = "the provider refused to list caller numbers (id or key wrong?)", raw = o.body }
    end
    local numbers = {}
    for _, item in ipairs(type(doc.list) == "table" and doc.list or {}) do
      local raw
      if type(item) == "table" then raw = str(item.number) or str(item.phone) or str(item[1])
      else raw = str(item) end
      if raw then
        local d = phone.normalize(raw)
        local entry = { number = d or raw, formatted = raw, valid = d ~= nil }
        if not wanted or entry.number == wanted then numbers[#numbers + 1] = entry end
      end
    end
    return { ok = true, provider = "cafe24", numbers = numbers, raw = o.body }
  end }
end

-- history{ date = "YYYYMMDD" | epoch | date table, days = 1..7, start = 0,
--   count = 1..50, send_type = "all" | "general" | "reserve",
--   status = "success" | "failure", to =, from =, kind = "sms" | "lms" }

-- Bounds on a history answer: the document pages at most 50 records
-- (displayNo), each a message of at most 2,000 bytes; beyond these the
-- answer is refused rather than held.
P.history_limits = { bytes = 1024 * 1024, records = 500 }

local RECORD = { record = true, item = true }

local function bad_xml(code, fmt, ...)
  return errors.new { category = "protocol", code = code, provider = "cafe24", maybe_sent = false,
    message = format(fmt, ...) }
end

-- The <code> and the records of a history answer, or nil, err. Never
-- raises: expat reports malformed XML (an undefined entity, an encoding
-- it lacks such as EUC-KR), and a DTD is refused before its entities can
-- be expanded (the documented answer has none; billion laughs needs one).
local function parse_history_xml(lxp, body)
  local limits = P.history_limits
  if #body > limits.bytes then
    return nil, bad_xml("too_large", "history answer is %d bytes; ksms reads at most %d", #body, limits.bytes)
  end
  local records, code, text, current = {}, nil, {}, nil
  local refused, parser
  local function refuse(err)
    refused = refused or err
    parser:stop()
  end
  parser = lxp.new {
    StartDoctypeDecl = function()
      refuse(bad_xml("bad_xml", "history answer declares a DTD, which the documented XML has not"))
    end,
    StartElement = function(_, name)
      text = {}
      if RECORD[name] then
        if #records >= limits.records then
          return refuse(bad_xml("too_large", "history answer has more than %d records", limits.records))
        end
        current = {}
      end
    end,
    CharacterData = function(_, s) text[#text + 1] = s end,
    EndElement = function(_, name)
      local value = concat(text)
      text = {}
      if RECORD[name] then
        records[#records + 1] = current
        current = nil
      elseif current then
        current[name] = value
      elseif name == "code" then
        code = common.trim(value)
      end
    end,
  }
  -- parse, then parse() to finish; close raises on a parser that did not
  -- finish, and the callbacks are ours, so the whole is guarded.
  local ok, done, perr, line = pcall(function()
    local r, e, l = parser:parse(body)
    if r then r, e, l = parser:parse() end
    return r, e, l
  end)
  pcall(parser.close, parser)
  if refused then return nil, refused end
  if not ok then return nil, bad_xml("bad_xml", "history answer could not be read as XML") end
  if not done then
    return nil, bad_xml("bad_xml", "history answer is not well-formed XML: %s at line %s",
      type(perr) == "string" and perr or "error", str(line) or "?")
  end
  if not code then return nil, bad_xml("bad_xml", "history answer has no <code>, unlike the documented XML") end
  return code, records
end

local SEND_TYPES = { all = "All", general = "genaral", reserve = "reserve" }
local STATUSES = { success = "S", failure = "F" }

--- Plans a history query (days, ...) read from XML.
-- @tparam table cfg
-- @tparam table q
-- @param ctx
-- @return a plan, or nil, err
function P.plan_history(cfg, q, ctx)
  if type(q) ~= "table" then misuse("ksms: history needs a query table") end
  -- Checked before the request: a missing module is the installation's.
  local has_lxp, lxp = pcall(require, "lxp")
  if not has_lxp then misuse("ksms: cafe24 history needs lua-expat (Debian: lua-expat)") end
  local date = q.date or ctx.now()
  if type(date) == "number" then date = schedule.format(date, "YYYYMMDD")
  elseif type(date) == "table" then
    local e, err = schedule.from_kst(date)
    if not e then return nil, err end
    date = schedule.format(e, "YYYYMMDD")
  end
  if type(date) ~= "string" or not date:match("^%d%d%d%d%d%d%d%d$") then
    misuse("ksms: history date is YYYYMMDD, epoch seconds or a date table")
  end
  local days, start, count = q.days or 1, q.start or 0, q.count or 10
  if days < 1 or days > 7 then return invalid("days", "days must be 1 to 7") end
  if count < 1 or count > 50 then return invalid("count", "count must be 1 to 50") end
  if start < 0 then return invalid("start", "start must be 0 or more") end
  local fields = { { "user_id", cfg.user_id }, { "secure", cfg.secure_key }, { "date", date },
    { "day", tostring(days) }, { "startNo", tostring(start) }, { "displayNo", tostring(count) } }
  if q.send_type then
    fields[#fields + 1] = { "sendType", SEND_TYPES[q.send_type] or misuse("ksms: send_type is all, general or reserve") }
  end
  if q.status then
    fields[#fields + 1] = { "sendStatus", STATUSES[q.status] or misuse("ksms: status is success or failure") }
  end
  for _, f in ipairs({ { "to", "receivePhone" }, { "from", "sendPhone" } }) do
    if q[f[1]] then
      local d, err = phone.normalize(q[f[1]], f[1])
      if not d then return nil, err end
      fields[#fields + 1] = { f[2], phone.format(d) }
    end
  end
  if q.kind == "lms" then fields[#fields + 1] = { "smsType", "lms" } end
  local req = { method = "POST", url = cfg.urls.history, form = fields }
  return { requests = { req }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    if o.status ~= 200 then return common.parse_json("cafe24", o) end
    local code, records = parse_history_xml(lxp, o.body or "")
    if not code then
      local err = records
      err.raw = o.body
      return nil, err
    end
    if code ~= "0000" then return common.outcome({ name = "cafe24", codes = codes.sms }, code, o.body) end
    local out = {}
    for i, rec in ipairs(records) do
      out[i] = {
        send_type = rec.sendType == "R" and "reserve" or "general",
        from = rec.sendPhone, to = rec.receivePhone, text = rec.msg,
        sent_at = rec.sendDateTime,
        status = ({ ["1"] = "requested", ["2"] = "reserved", ["3"] = "delivered", ["9"] = "failed" })[rec.sendStatus]
          or rec.sendStatus,
        refunded_at = rec.refundDate ~= "" and rec.refundDate or nil,
        raw = rec,
      }
    end
    return { ok = true, provider = "cafe24", code = code, records = out, raw = o.body }
  end }
end

return P
