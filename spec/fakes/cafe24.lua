-- cafe24.lua - the fake Cafe24 SMS hosting API (seeds/003): sms_sender.php
-- (SMS/LMS, reservations, repeats, test flag, name substitution),
-- sms_remain.php and smsSenderPhone.php on the main site (sslsms.cafe24.com,
-- HTTPS when run.lua gets --tls-cert/--tls-key), and sms_list.php (history
-- as XML) on the history site (smsapi.cafe24.com), a second port of the same
-- process so both share one state. Every field may be Base64 (when `mode` is
-- Base64 of "1"); records keep the raw and the decoded fields. Answers are
-- plain text `code,remaining`, a bare number, JSON or XML, as the document
-- and the public clients of the service show. See spec/fakes/README.md.
local socket = require "socket"
local json = require "fakes.json"
local korean = require "fakes.korean"
local euckr = require "fakes.euckr"
local base64 = require "fakes.base64"
local listen = require "fakes.listen"

local _M = { name = "cafe24", routes = {} }

local MAIN = { ["/sms_sender.php"] = true, ["/sms_remain.php"] = true, ["/smsSenderPhone.php"] = true }
local HISTORY = { ["/sms_list.php"] = true }
local B64_ONE = "MQ=="                       -- base64_encode("1"): the mode that says "all Base64"

function _M.default_state()
  return {
    user_id = "ksmstest",
    api_key = "test-cafe24-key",            -- the `secure` field (smsSenderPhone.php: `passwd`)
    senders = json.array({ "02-1234-5678", "010-1234-5678", "1588-4567" }),  -- completed caller numbers
    balance = 10000,                        -- remaining messages (잔여건수)
    costs = { sms = 1, lms = 3 },           -- counted per recipient and per repeat
    max_recipients = 999,                   -- -110 "1000건 이상 발송 불가"
    sms_max_bytes = 90,                     -- EUC-KR bytes of an SMS (0004 beyond)
    lms_max_bytes = 2000,
    subject_max_bytes = 60,                 -- "한글30자이하"
    min_reserve_lead = 600,                 -- "최소 10분 이상" (seconds)
    repeat_max = 10, repeat_min_minutes = 15,
    spam_words = json.array({ "배팅", "바카라", "도박", "섹스", "liveno1", "카지노" }),   -- 0044
    ad_prefix = "(광고)",                    -- an advertisement: needs opt_out_word (3223), not 21:00-08:00 (3224)
    opt_out_word = "수신거부",
    duplicate_window = 0,                   -- seconds; > 0: the same text to the same number again within it: 3218
    monthly_limit = false,                  -- messages per Korea-time month; false: none (3219 beyond)
    failing_numbers = json.array(),         -- recipients whose delivery fails: history status 9, refunded
    delivery_delay = 0,                     -- seconds from send time until the history shows 3 or 9
    server_error = false,                   -- true: sms_sender.php answers -100
    history = json.array(),                 -- one record per recipient and repeat (see sms_list.php)
    now = false,
    content_type = "text/html; charset=UTF-8",
    xml_content_type = "text/xml; charset=UTF-8",
  }
end

---------------------------------------------------------------- helpers

local function now(state) return state.now or os.time() end

local function undocumented(message)
  return 400, { ["Content-Type"] = "application/json" }, json.encode({ fake_error = message })
end

local function text(state, body)
  return 200, { ["Content-Type"] = state.content_type }, body
end

local function digits(s) return (s or ""):gsub("%D", "") end

local function listed(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function kst(epoch, pattern)
  local t = os.date("!*t", math.floor(epoch) + 9 * 3600)
  return (pattern:gsub("YYYY", string.format("%04d", t.year)):gsub("MM", string.format("%02d", t.month))
    :gsub("DD", string.format("%02d", t.day)):gsub("hh", string.format("%02d", t.hour))
    :gsub("mm", string.format("%02d", t.min)):gsub("ss", string.format("%02d", t.sec)))
end

local function kst_hour(epoch) return tonumber(kst(epoch, "hh")) end

-- Plain (non-pattern) replacement of every `from` in s.
local function replace_all(s, from, to)
  local out, start = {}, 1
  while true do
    local i, j = s:find(from, start, true)
    if not i then break end
    out[#out + 1] = s:sub(start, i - 1) .. to
    start = j + 1
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

---------------------------------------------------------------- Base64 fields

-- The request's fields, decoded when mode is Base64 of "1": returns the
-- ordered list { {name, decoded}, ... }, the name -> value map (the last one
-- wins), whether Base64 was on, and the names that did not decode.
-- destination may come as PHP's strtr(base64_encode(x), '+/=', '-,').
function _M.decode_fields(req)
  local base64_on = req.fields.mode == B64_ONE
  local list, map, bad, seen_bad = {}, {}, {}, {}
  for i, f in ipairs(req.form) do
    local name, value = f[1], f[2]
    if base64_on and name ~= "mode" then
      local raw = value
      if name == "destination" then raw = raw:gsub("%-", "+"):gsub(",", "/") end
      local decoded = base64.decode(raw)
      if decoded then
        value = decoded
      elseif not seen_bad[name] then
        seen_bad[name] = true
        bad[#bad + 1] = name
      end
    elseif name == "mode" and base64_on then
      value = "1"
    end
    list[i] = { name, value }
    map[name] = value
  end
  return list, map, base64_on, bad
end

---------------------------------------------------------------- numbers

local AREA3 = { ["031"] = true, ["032"] = true, ["033"] = true, ["041"] = true, ["042"] = true,
                ["043"] = true, ["044"] = true, ["051"] = true, ["052"] = true, ["053"] = true,
                ["054"] = true, ["055"] = true, ["061"] = true, ["062"] = true, ["063"] = true,
                ["064"] = true }

-- nil when entry is a recipient number Cafe24 takes (hyphens allowed
-- between digit groups), else the code: 3202 an empty entry, 3205 not
-- digits and hyphens, 3222 no such prefix, 3221 a wrong number of digits.
function _M.recipient_error(entry)
  if entry == "" then return "3202" end
  if not entry:match("^%d+$") and not entry:match("^%d+%-[%d%-]*%d$") or entry:find("--", 1, true) then
    return "3205"
  end
  local d = digits(entry)
  local lengths
  if d:match("^01[016789]") then lengths = { 10, 11 }
  elseif d:match("^02") then lengths = { 9, 10 }
  elseif AREA3[d:sub(1, 3)] then lengths = { 10, 11 }
  elseif d:match("^070") then lengths = { 11 }
  elseif d:match("^050[2-8]") then lengths = { 11, 12 }
  elseif d:match("^1[568]") then lengths = { 8 }
  else return "3222" end
  for _, n in ipairs(lengths) do
    if #d == n then return nil end
  end
  return "3221"
end

-- The recipients: { {phone =, name =} } from rphone or destination, or nil, code.
local function recipients(state, f)
  local list = {}
  local destination = f.destination or ""
  if destination ~= "" then
    for _, entry in ipairs(korean.split(destination, ",")) do
      local phone, name = entry:match("^([^|]*)|(.+)$")
      if not phone then return nil, "3217" end
      list[#list + 1] = { phone = phone, name = name }
    end
  else
    for _, phone in ipairs(korean.split(f.rphone or "", ",")) do list[#list + 1] = { phone = phone } end
  end
  for _, r in ipairs(list) do
    local code = _M.recipient_error(r.phone)
    if code then return nil, code end
  end
  if #list > state.max_recipients then return nil, "-110" end
  return list
end

---------------------------------------------------------------- history

-- Delivery: a record's final status shows delivery_delay seconds after its
-- send time; a failed one (failing_numbers) gives its messages back then.
local function settle(state)
  local t = now(state)
  for _, r in ipairs(state.history) do
    if not r.settled and type(r.at) == "number" and t >= r.at + state.delivery_delay then
      r.settled = true
      local failed = false
      for _, n in ipairs(state.failing_numbers) do
        if digits(n) == digits(r.receivePhone) then failed = true end
      end
      if failed then
        r.sendStatus = "9"
        r.refundDate = kst(r.at + state.delivery_delay, "YYYYMMDDhhmm")
        state.balance = state.balance + (r.cost or 0)
      else
        r.sendStatus = "3"
      end
    end
  end
end

local function month_count(state, t)
  local month, n = kst(t, "YYYYMM"), 0
  for _, r in ipairs(state.history) do
    if type(r.reg) == "number" and kst(r.reg, "YYYYMM") == month then n = n + 1 end
  end
  return n
end

local function duplicate(state, t, phone, msg)
  if not state.duplicate_window or state.duplicate_window <= 0 then return false end
  for _, r in ipairs(state.history) do
    if type(r.reg) == "number" and t - r.reg < state.duplicate_window
       and digits(r.receivePhone) == digits(phone) and r.msg == msg then
      return true
    end
  end
  return false
end

---------------------------------------------------------------- sms_sender.php

local function sms_sender(app, req)
  local state = app.state
  local _, f, _, bad = _M.decode_fields(req)
  local bad_set = {}
  for _, name in ipairs(bad) do bad_set[name] = true end
  local function code(c) return text(state, c) end
  if state.server_error then return code("-100") end
  if not f.user_id or f.user_id == "" or not f.secure or f.secure == "" then return code("-101") end
  if bad_set.user_id or bad_set.secure or f.user_id ~= state.user_id or f.secure ~= state.api_key then
    return code("-102")
  end
  if bad_set.msg or bad_set.subject then return code("3203") end
  if bad_set.sphone1 or bad_set.sphone2 or bad_set.sphone3 then return code("3204") end
  if #bad > 0 then return undocumented("field " .. bad[1] .. " is not Base64 (mode is Base64 of 1)") end
  for name, allowed in pairs({ smsType = { S = true, L = true }, testflag = { Y = true },
                               repeatFlag = { Y = true }, nointeractive = { ["1"] = true } }) do
    local v = f[name]
    if v ~= nil and v ~= "" and not allowed[v] then
      return undocumented(name .. " must be empty or one of the documented values, not '" .. v .. "'")
    end
  end
  if f.returnurl and f.returnurl ~= "" and not f.returnurl:match("^https?://") then
    return undocumented("returnurl must start with http:// (the document)")
  end
  if (f.destination or "") ~= "" and (f.rphone or "") ~= "" then
    return undocumented("with destination the document says to send rphone empty")
  end
  local msg = f.msg
  if not msg or msg == "" or not f.sphone1 or f.sphone1 == "" or not f.sphone2 or f.sphone2 == ""
     or ((f.rphone or "") == "" and (f.destination or "") == "") then
    return code("-101")
  end
  local subject = f.subject or ""
  for _, s in ipairs({ msg, subject, f.destination or "" }) do
    if not korean.is_utf8(s) then return code("0003") end
  end
  for _, s in ipairs({ msg, subject, f.destination or "" }) do
    if not euckr.fits(s) then return code("-202") end
  end
  local caller = f.sphone1 .. "-" .. f.sphone2
  if f.sphone3 and f.sphone3 ~= "" then caller = caller .. "-" .. f.sphone3 end
  if not listed(state.senders, caller) then return code("-114") end
  local to, rcode = recipients(state, f)
  if not to then return code(rcode) end
  local kind = f.smsType == "L" and "lms" or "sms"
  local limit = kind == "lms" and state.lms_max_bytes or state.sms_max_bytes
  for _, r in ipairs(to) do
    r.msg = r.name and replace_all(msg, "{name}", r.name) or msg
    if korean.cp949_len(r.msg) > limit then return code("0004") end
  end
  if kind == "lms" and korean.cp949_len(subject) > state.subject_max_bytes then return code("0004") end
  for _, word in ipairs(state.spam_words) do
    if msg:lower():find(word:lower(), 1, true) or subject:find(word, 1, true) then return code("0044") end
  end
  local t = now(state)
  local at, reserved = t, false
  local rdate, rtime = f.rdate or "", f.rtime or ""
  if rdate ~= "" or rtime ~= "" then
    if not rdate:match("^%d%d%d%d%d%d%d%d$") or not rtime:match("^%d%d%d%d%d%d$") then return code("-105") end
    at = korean.parse_kst(table.concat({ rdate:sub(1, 4), rdate:sub(5, 6), rdate:sub(7, 8),
                                         rtime:sub(1, 2), rtime:sub(3, 4), rtime:sub(5, 6) }, "|"), "|")
    if not at or at - t < state.min_reserve_lead then return code("-105") end
    reserved = true
  end
  if state.ad_prefix ~= "" and msg:sub(1, #state.ad_prefix) == state.ad_prefix then
    if not msg:find(state.opt_out_word, 1, true) then return code("3223") end
    local h = kst_hour(at)
    if h >= 21 or h < 8 then return code("3224") end
  end
  local repeats, gap = 1, 0
  if f.repeatFlag == "Y" then
    repeats, gap = tonumber(f.repeatNum or ""), tonumber(f.repeatTime or "")
    if not repeats or repeats ~= math.floor(repeats) or repeats < 1 or repeats > state.repeat_max
       or not gap or gap ~= math.floor(gap) or gap < state.repeat_min_minutes then
      return code("3201")
    end
  end
  for _, r in ipairs(to) do
    if duplicate(state, t, r.phone, r.msg) then return code("3218") end
  end
  local count = #to * repeats
  if state.monthly_limit and month_count(state, t) + count > state.monthly_limit then return code("3219") end
  if f.testflag == "Y" then return code("Test Success!") end
  settle(state)
  local cost = state.costs[kind]
  if state.balance < cost * count then return code("-201") end
  state.balance = state.balance - cost * count
  app.cafe24_seq = (app.cafe24_seq or 0) + 1
  for k = 1, repeats do
    local when = at + (k - 1) * gap * 60
    local send_type = (reserved or k > 1) and "R" or "I"
    for _, r in ipairs(to) do
      state.history[#state.history + 1] = {
        sendType = send_type, sendPhone = caller, receivePhone = r.phone, msg = r.msg,
        sendDateTime = kst(when, "YYYYMMDDhhmm"), regDate = kst(t, "YYYY-MM-DD hh:mm:ss"),
        sendStatus = send_type == "I" and "1" or "2", refundDate = "",
        kind = kind, subject = kind == "lms" and subject or nil, at = when, reg = t,
        cost = cost, request = app.cafe24_seq, settled = false,
      }
    end
  end
  settle(state)
  return text(state, (reserved and "reserved," or "success,") .. string.format("%d", state.balance))
end

---------------------------------------------------------------- the others

local function auth(state, f)
  if not f.user_id or f.user_id == "" or not f.secure or f.secure == "" then return "-101" end
  if f.user_id ~= state.user_id or f.secure ~= state.api_key then return "-102" end
  return nil
end

local function sms_remain(app, req)
  local state = app.state
  local _, f = _M.decode_fields(req)
  local err = auth(state, f)
  if err then return text(state, err) end
  settle(state)
  return text(state, string.format("%d", state.balance))
end

local function sender_phone(app, req)
  local state = app.state
  local _, f = _M.decode_fields(req)
  local body = { result = "Fail" }
  if f.userId == state.user_id and f.passwd == state.api_key then
    local list = json.array()
    for i, n in ipairs(state.senders) do list[i] = n end
    body = { result = "Success", list = list }
  end
  return text(state, json.encode(body))
end

local function xml_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                        ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local RECORD_FIELDS = { "sendType", "sendPhone", "receivePhone", "msg", "sendDateTime", "regDate",
                        "sendStatus", "refundDate" }

function _M.xml(code, records)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>', "<result>", "<code>" .. xml_escape(code) .. "</code>" }
  if records then
    out[#out + 1] = "<data>"
    for _, r in ipairs(records) do
      local fields = {}
      for _, name in ipairs(RECORD_FIELDS) do
        fields[#fields + 1] = "<" .. name .. ">" .. xml_escape(r[name] or "") .. "</" .. name .. ">"
      end
      out[#out + 1] = "<record>" .. table.concat(fields) .. "</record>"
    end
    out[#out + 1] = "</data>"
  end
  out[#out + 1] = "</result>"
  return table.concat(out, "\n") .. "\n"
end

local SEND_TYPES = { [""] = "all", all = "all", genaral = "I", general = "I", reserve = "R" }

local function sms_list(app, req)
  local state = app.state
  local _, f = _M.decode_fields(req)
  local function xml(code, records)
    return 200, { ["Content-Type"] = state.xml_content_type }, _M.xml(code, records)
  end
  local err = auth(state, f)
  if err then return xml(err) end
  local t = now(state)
  local date = f.date or ""
  if date == "" then date = kst(t, "YYYYMMDD") end
  local base = date:match("^%d%d%d%d%d%d%d%d$")
    and korean.parse_kst(table.concat({ date:sub(1, 4), date:sub(5, 6), date:sub(7, 8), "00", "00", "00" }, "|"), "|")
  if not base then return undocumented("date must be YYYYMMDD") end
  local day = tonumber(f.day ~= "" and f.day or "1")
  if not day or day ~= math.floor(day) or day < 1 or day > 7 then return undocumented("day must be 1 to 7") end
  local start_no = tonumber(f.startNo ~= "" and f.startNo or "0")
  local display = tonumber(f.displayNo ~= "" and f.displayNo or "10")
  if not start_no or start_no < 0 or start_no ~= math.floor(start_no) then
    return undocumented("startNo must be a whole number from 0")
  end
  if not display or display < 1 or display > 50 or display ~= math.floor(display) then
    return undocumented("displayNo must be 1 to 50")
  end
  local send_type = SEND_TYPES[(f.sendType or ""):lower()]
  if not send_type then return undocumented("sendType must be all, genaral or reserve") end
  local status = f.sendStatus or ""
  if status ~= "" and status ~= "S" and status ~= "F" then return undocumented("sendStatus must be S or F") end
  local want_kind = (f.smsType or ""):lower() == "lms" and "lms" or "sms"
  settle(state)
  local from = base - day * 86400
  local found = {}
  for i, r in ipairs(state.history) do
    if (r.kind or "sms") == want_kind and (type(r.reg) ~= "number" or r.reg >= from)
       and (send_type == "all" or r.sendType == send_type)
       and (status == "" or (status == "S" and r.sendStatus == "3") or (status == "F" and r.sendStatus == "9"))
       and ((f.receivePhone or "") == "" or digits(f.receivePhone) == digits(r.receivePhone))
       and ((f.sendPhone or "") == "" or digits(f.sendPhone) == digits(r.sendPhone)) then
      found[#found + 1] = { r = r, i = i }
    end
  end
  table.sort(found, function(a, b)                 -- most recent first
    local ra, rb = a.r.reg or 0, b.r.reg or 0
    if ra ~= rb then return ra > rb end
    return a.i > b.i
  end)
  local page = {}
  for k = start_no + 1, math.min(#found, start_no + display) do page[#page + 1] = found[k].r end
  return xml("0000", page)
end

---------------------------------------------------------------- dispatch

local ROUTES = { ["/sms_sender.php"] = sms_sender, ["/sms_remain.php"] = sms_remain,
                 ["/smsSenderPhone.php"] = sender_phone, ["/sms_list.php"] = sms_list }

function _M.answer(app, req, site)
  local served = site == "history" and HISTORY or MAIN
  if not served[req.path] then
    local other = (site == "history" and MAIN or HISTORY)[req.path]
    return 404, { ["Content-Type"] = "application/json" }, json.encode({ fake_error =
      other and (req.path .. " is served on the " .. (site == "history" and "main" or "history") .. " port")
      or "no such path on cafe24" })
  end
  if req.method ~= "POST" then
    return 405, { ["Content-Type"] = "application/json", Allow = "POST" },
           json.encode({ fake_error = "the document says POST" })
  end
  return ROUTES[req.path](app, req)
end

-- A forced result: sms_sender.php answers "<result>,<remaining>" for
-- success and reserved, else the bare result; sms_remain.php the bare
-- result; sms_list.php XML with that <code>; smsSenderPhone.php {"result":...}.
function _M.forced(app, path, code)
  local state = app.state
  if path == "/sms_list.php" then
    return { ["Content-Type"] = state.xml_content_type }, _M.xml(code, (code == "0000") and {} or nil)
  end
  if path == "/smsSenderPhone.php" then
    return { ["Content-Type"] = state.content_type }, json.encode({ result = code })
  end
  if path == "/sms_sender.php" and (code == "success" or code == "reserved") then
    return { ["Content-Type"] = state.content_type }, code .. "," .. string.format("%d", state.balance)
  end
  return { ["Content-Type"] = state.content_type }, code
end

function _M.setup(app)
  local function site(req) return listen.site_of(app.server, req.conn) end
  app.provider_answer = function(self, req)
    return _M.answer(self, req, site(req))
  end
  app.scripted_answer = function(self, req, script)
    if script.result or script.status or script.body then
      local headers, body = script.headers, script.body
      if not body and script.result then
        local h
        h, body = _M.forced(self, req.path, script.result)
        headers = headers or h
      end
      local status = script.status or 200
      return status, headers or { ["Content-Type"] = self.state.content_type },
             body or ("scripted status " .. status .. "\n")
    end
    return self:provider_answer(req)
  end
  -- Records also say which port the request came to and hold the fields
  -- decoded: decoded = [[name, value], ...] (Base64 undone when mode is
  -- Base64 of 1), base64 = true/false, undecodable = [names].
  local base_record = app.record
  app.record = function(self, req)
    base_record(self, req)
    local r = self.records[#self.records]
    local list, _, on, bad = _M.decode_fields(req)
    local decoded = json.array()
    for i, f in ipairs(list) do decoded[i] = json.array({ f[1], f[2] }) end
    r.site, r.decoded, r.base64, r.undecodable = site(req), decoded, on, json.array(bad)
  end
end

return _M
