-- ppurio.lua - the fake KTH API Store "ppurio" v1 (seeds/001): sms, lms,
-- mms (multipart with JPEG `file` parts), report (GET by cmid),
-- sendnumber/save and sendnumber/list, under /ppurio/1/... with the client id
-- in the path and the key in the x-waple-authorization header. Answers JSON
-- with result_code 100 200 300 400 500 600 (sendnumber/save: 500 = already
-- registered); reports carry the appendix's call_status codes (SMS 4xxx,
-- LMS/MMS 66xx, common 9xxx and -1). See spec/fakes/README.md.
local socket = require "socket"
local json = require "fakes.json"
local forms = require "fakes.forms"
local korean = require "fakes.korean"
local euckr = require "fakes.euckr"

local _M = { name = "ppurio", routes = {} }

local PREFIX = "/ppurio/1"
local SEND_KINDS = { sms = true, lms = true, mms = true }

function _M.default_state()
  return {
    client_id = "ksmstest",                -- the {client_id} of every path
    api_key = "test-ppurio-key",           -- the x-waple-authorization header
    account_blocked = false,               -- true: right key, account refused (100)
    senders = json.array({ "0212345678", "01012345678", "15884567" }),   -- registered caller numbers
    sender_comments = {},                  -- number -> comment given to sendnumber/save
    balance = 100000,                      -- prepaid won
    costs = { sms = 20, lms = 50, mms = 200 },   -- won per recipient
    max_recipients = 1000,                 -- the document gives no limit: the fake's choice
    sms_max_bytes = 90,                    -- /sms: over this many CP949 bytes it goes as LMS
    lms_max_bytes = 1999,                  -- "2000byte 미만"
    subject_max_bytes = 59,                -- "60byte 미만"
    name_max_bytes = 31,                   -- send_name, dest_name: "32byte 미만"
    image_max_bytes = 20480,               -- each JPEG "20kbyte 이하"
    images_max_bytes = 40960,              -- all JPEGs "합 40kbyte 이하"
    max_images = 3,
    comment_max_chars = 200,               -- sendnumber/save comment "200자"
    reports = {},                          -- cmid -> call_status it reports
    report_default = false,                -- a call_status for every report; false: 4100 SMS, 6600 LMS/MMS
    report_time_format = "epoch",          -- "epoch" as the document's example, or "kst14" as its table
    messages = json.array(),               -- accepted sends (read them through GET /_fake/state)
    server_error = false,                  -- true: every call answers 400 (Etc Error)
    now = false,                           -- epoch seconds to pin the clock, false = real time
    content_type = "application/json",
  }
end

---------------------------------------------------------------- helpers

local function now(state) return state.now or socket.gettime() end

local function result(code, extra)
  local out = { result_code = code }
  for k, v in pairs(extra or {}) do out[k] = v end
  return 200, out
end
local function undocumented(message) return 400, { fake_error = message } end

-- "20130529171111" (Korea time) -> epoch, or nil.
local function parse_kst14(s)
  if type(s) ~= "string" or not s:match("^%d%d%d%d%d%d%d%d%d%d%d%d%d%d$") then return nil end
  return korean.parse_kst(table.concat({ s:sub(1, 4), s:sub(5, 6), s:sub(7, 8), s:sub(9, 10),
                                         s:sub(11, 12), s:sub(13, 14) }, "|"), "|")
end

local function kst14(epoch)
  return korean.format_kst(epoch, "")
end

local function listed(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- sendnumber/save's rules (document section 5): 8 to 11 digits; a landline
-- with its area code; a mobile number; 15xx/16xx/18xx with no area code in
-- front. 070 is taken as a landline. Anything else needs the provider's staff.
local AREA = { ["02"] = true, ["031"] = true, ["032"] = true, ["033"] = true, ["041"] = true,
               ["042"] = true, ["043"] = true, ["044"] = true, ["051"] = true, ["052"] = true,
               ["053"] = true, ["054"] = true, ["055"] = true, ["061"] = true, ["062"] = true,
               ["063"] = true, ["064"] = true }

function _M.registrable(n)
  if type(n) ~= "string" or not n:match("^%d+$") or #n < 8 or #n > 11 then return false end
  if n:match("^1[568]%d%d") then return #n == 8 end
  if n:match("^01[016789]") then return #n == 10 or #n == 11 end
  if n:match("^070") then return #n == 11 end
  local area = n:match("^02") and "02" or n:sub(1, 3)
  if not AREA[area] then return false end
  local rest = n:sub(#area + 1)
  if rest:match("^1[568]%d%d%d%d%d%d$") then return false end   -- 02-1588-xxxx: no area code before 15xx
  if area == "02" then return #n == 9 or #n == 10 end
  return #n == 10 or #n == 11
end

-- A strictly increasing millisecond clock for cmids: the document's cmid
-- "20130314163439459" is the Korea time to the millisecond.
local function next_cmid(app)
  local ms = math.floor(now(app.state) * 1000)
  if app.ppurio_last_ms and ms <= app.ppurio_last_ms then ms = app.ppurio_last_ms + 1 end
  app.ppurio_last_ms = ms
  local sec = math.floor(ms / 1000)
  return kst14(sec) .. string.format("%03d", ms % 1000)
end

local function find_message(state, cmid)
  for _, m in ipairs(state.messages) do
    if m.cmid == cmid then return m end
  end
  return nil
end

---------------------------------------------------------------- sends

-- JPEG files of an MMS. Returns list (possibly empty), or nil, status, answer.
local function mms_files(state, req)
  local files, total = {}, 0
  for _, p in ipairs(req.multipart or {}) do
    if p.filename then
      local ext = (p.filename:match("%.([^.]+)$") or ""):lower()
      if not (ext == "jpg" or ext == "jpeg") or p.data:sub(1, 3) ~= "\255\216\255" then
        return nil, result("300")                        -- not a JPEG
      end
      if #p.data > state.image_max_bytes then return nil, result("300") end
      total = total + #p.data
      files[#files + 1] = { filename = p.filename, size = #p.data, content_type = p.content_type }
    end
  end
  if #files > state.max_images or total > state.images_max_bytes then return nil, result("300") end
  return files
end

local function send(app, kind, req)
  local state, f = app.state, req.fields
  for _, p in ipairs(req.multipart or {}) do
    if p.name == "smsExcel" then return undocumented("smsExcel (bulk by spreadsheet) is not faked") end
    if p.filename then
      if kind ~= "mms" then return undocumented("file parts go to /mms only") end
      if p.name ~= "file" then
        return undocumented("a file part must be named 'file' (got " .. tostring(p.name) .. ")")
      end
      local ext = (p.filename:match("%.([^.]+)$") or ""):lower()
      if ext == "txt" or ext == "ma3" then
        return undocumented("the fake takes JPEG files only (the document also lists TXT and MA3)")
      end
    end
  end
  for _, name in ipairs({ "msg_body", "subject", "send_name", "dest_name" }) do
    if f[name] ~= nil and not korean.is_utf8(f[name]) then
      return undocumented(name .. " is not UTF-8 (the document: charset=UTF-8)")
    end
  end
  if not f.send_phone or f.send_phone == "" or not f.dest_phone or f.dest_phone == ""
     or not f.msg_body or f.msg_body == "" then
    return result("300")
  end
  if not f.send_phone:match("^%d+$") then return result("300") end   -- "-" 제외/숫자만 입력
  local to = korean.split(f.dest_phone, ",")
  if #to > state.max_recipients then return result("300") end
  for _, n in ipairs(to) do
    if not korean.is_phone(n) then return result("300") end
  end
  for _, name in ipairs({ "send_name", "dest_name" }) do
    if f[name] and korean.cp949_len(f[name]) > state.name_max_bytes then return result("300") end
  end
  local subject = (kind ~= "sms") and f.subject or nil
  if subject and korean.cp949_len(subject) > state.subject_max_bytes then return result("300") end
  local bytes = korean.cp949_len(f.msg_body)
  if bytes > state.lms_max_bytes then return result("300") end
  if kind == "sms" and bytes > state.sms_max_bytes then kind = "lms" end   -- "LMS로 자동 변환 발송"
  local send_time
  if f.send_time and f.send_time ~= "" then
    send_time = parse_kst14(f.send_time)
    if not send_time or send_time <= now(state) then return result("300") end
  end
  local files = {}
  if kind == "mms" then
    local list, status, body = mms_files(state, req)
    if not list then return status, body end
    files = list
  end
  if not listed(state.senders, f.send_phone) then return result("500") end
  -- 600: as many recipients as the balance covers are sent, in order; the
  -- rest are listed in result_msg ("잔금 부족[미발송 목록] 010...").
  local cost = state.costs[kind]
  local affordable = math.min(#to, math.floor(state.balance / cost))
  local sent, unsent = {}, {}
  for i, n in ipairs(to) do
    if i <= affordable then sent[#sent + 1] = n else unsent[#unsent + 1] = n end
  end
  local extra = {}
  if #sent > 0 then
    state.balance = state.balance - cost * #sent
    local cmid = next_cmid(app)
    local all_euckr = euckr.fits(f.msg_body) and euckr.fits(subject or "")
    state.messages[#state.messages + 1] = {
      cmid = cmid, kind = kind, dest_phone = json.array(sent), send_phone = f.send_phone,
      msg_body = f.msg_body, subject = subject, send_name = f.send_name, dest_name = f.dest_name,
      send_time = f.send_time ~= "" and f.send_time or nil, at = send_time or now(state),
      files = json.array(files), cost = cost * #sent, ksc5601 = all_euckr,
    }
    extra.cmid = cmid
  end
  if #unsent > 0 then
    extra.result_msg = "잔금 부족[미발송 목록] " .. table.concat(unsent, ",")
    return result("600", extra)
  end
  return result("200", extra)
end

---------------------------------------------------------------- report

local function report_code(state, m, cmid)
  local set = state.reports[cmid]
  if set ~= nil then return tostring(set) end
  if m and not m.ksc5601 then return "-1" end         -- "KSC5601에 없는 ... 정상 발송되지 않음"
  if state.report_default then return tostring(state.report_default) end
  if m and m.kind == "sms" then return "4100" end
  return "6600"
end

local function report(app, req)
  local state = app.state
  local _, q = forms.parse_urlencoded(req.query)
  local cmid = q.cmid
  if not cmid or cmid == "" then return result("300") end
  local m = find_message(state, cmid)
  if not m and state.reports[cmid] == nil then return result("300") end
  local at = math.floor(m and m.at or now(state))
  local report_time = state.report_time_format == "kst14" and kst14(at) or string.format("%d", at)
  return 200, {
    dest_phone = m and m.dest_phone[1] or "",
    report_time = report_time,
    call_status = report_code(state, m, cmid),
    umid = "apisto_A" .. cmid:gsub("%D", ""),
  }
end

---------------------------------------------------------------- caller numbers

local function sendnumber_save(app, req)
  local state, f = app.state, req.fields
  local n, comment = f.sendnumber, f.comment
  local extra = n and { sendnumber = n } or nil
  if comment ~= nil and not korean.is_utf8(comment) then return undocumented("comment is not UTF-8") end
  if not n or n == "" or not comment or comment == ""
     or korean.char_len(comment) > state.comment_max_chars then
    return result("300", extra)
  end
  if not _M.registrable(n) then return result("300", extra) end
  if listed(state.senders, n) then return result("500", extra) end
  state.senders[#state.senders + 1] = n
  state.sender_comments[n] = comment
  return result("200", extra)
end

local function sendnumber_list(app, req)
  local state = app.state
  local _, q = forms.parse_urlencoded(req.query)
  local only = q.sendnumber
  if only == "" then only = nil end
  local list = json.array()
  for _, n in ipairs(state.senders) do
    if not only or only == n then
      list[#list + 1] = { sendnumber = n, comment = state.sender_comments[n] or "" }
    end
  end
  return result("200", { numberList = list })
end

---------------------------------------------------------------- dispatch

-- path -> { name, method, client_id } or nil
local function route(path)
  local kind, client = path:match("^" .. PREFIX .. "/message/(%a+)/([^/]+)$")
  if kind and (SEND_KINDS[kind] or kind == "report") then
    return { name = kind, method = kind == "report" and "GET" or "POST", client_id = client }
  end
  local op
  op, client = path:match("^" .. PREFIX .. "/sendnumber/(%a+)/([^/]+)$")
  if op == "save" then return { name = "save", method = "POST", client_id = client } end
  if op == "list" then return { name = "list", method = "GET", client_id = client } end
  return nil
end

local function body_readable(req)
  if req.method == "GET" then return true end
  if req.form_error then return false end
  local ct = (req.headers["content-type"] or ""):lower()
  if req.body == "" then return true end
  return ct:find("^application/x%-www%-form%-urlencoded") ~= nil or ct:find("^multipart/form%-data") ~= nil
end

function _M.answer(app, req)
  local r = route(req.path)
  if not r then return 404, { fake_error = "no such path on ppurio" } end
  if req.method ~= r.method then return 405, { fake_error = "the document says " .. r.method }, r.method end
  local state = app.state
  if r.client_id ~= state.client_id or req.headers["x-waple-authorization"] ~= state.api_key
     or state.account_blocked then
    return result("100")
  end
  if state.server_error or not body_readable(req) then return result("400") end
  if SEND_KINDS[r.name] then return send(app, r.name, req) end
  if r.name == "report" then return report(app, req) end
  if r.name == "save" then return sendnumber_save(app, req) end
  return sendnumber_list(app, req)
end

---------------------------------------------------------------- app hooks

local function headers_for(app, allow)
  local h = { ["Content-Type"] = app.state.content_type, ["Access-Control-Allow-Origin"] = "*" }
  if allow then h["Allow"] = allow end
  return h
end

-- Installs the provider's answers into an app (fakes.app) made for it.
function _M.setup(app)
  app.provider_answer = function(self, req)
    local status, value, allow = _M.answer(self, req)
    return status, headers_for(self, allow), json.encode(value)
  end
  -- A forced result answers {"result_code": result}; "200" on a send path
  -- also gets a fresh cmid, remembered (uncharged) so its report answers.
  app.scripted_answer = function(self, req, script)
    if script.result or script.status or script.body then
      local headers = script.headers or headers_for(self)
      local body = script.body
      if not body and script.result then
        local value = { result_code = script.result }
        local r = route(req.path)
        if script.result == "200" and r and SEND_KINDS[r.name] then
          value.cmid = next_cmid(self)
          self.state.messages[#self.state.messages + 1] = {
            cmid = value.cmid, kind = r.name, dest_phone = json.array({ req.fields.dest_phone or "" }),
            at = now(self.state), cost = 0, ksc5601 = true, scripted = true }
        end
        body = json.encode(value)
      end
      local status = script.status or 200
      return status, headers, body or ("scripted status " .. status .. "\n")
    end
    return self:provider_answer(req)
  end
end

return _M
