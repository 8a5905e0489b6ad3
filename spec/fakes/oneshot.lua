-- oneshot.lua - a fake SMTNT OneShot server (seeds/004): raw TCP frames
-- "Content-Length:N\r\n" + N bytes of zlib(JSON), AES-128-CBC+Base64 bodies
-- for Bind/UnBind (and for every body after PrivateKeyReq), with the /_fake/
-- HTTP control API on a second port. See spec/fakes/README.md ("OneShot").
--
-- Independent of ksms's Lua modules: framing is lua-zlib + lua-cjson here.
-- Only the AES-128-CBC and Base64 primitives come from ksms.core (they are
-- checked against NIST vectors and the openssl command elsewhere).
local socket = require "socket"
local zlib = require "zlib"
local cjson = require("cjson").new()
local httpd = require "fakes.httpd"
local scripts = require "fakes.scripts"
local control_api = require "fakes.control_api"
local json = require "fakes.json"
local korean = require "fakes.korean"

local function load_core()
  local ok, core = pcall(require, "ksms.core")
  if ok then return core end
  local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".")
  local flavour = jit and "luajit" or "lua5.4"
  package.cpath = here .. "/../../build/" .. flavour .. "/?.so;" .. package.cpath
  return require "ksms.core"
end
local core = load_core()

local _M = {}

---------------------------------------------------------------- constants

-- Body field orders of the document's tables (section 3.3), for answers.
local ORDER = {
  PrivateKeyRes = { "Result", "PrivateKey" },
  BindRes = { "Result", "BindId", "Speed", "BeginTime", "EndTime", "EffectiveTime" },
  UnBindRes = { "Result" },
  MsgSendRes = { "UserMsgId", "UserMsgSubId", "PhoneNo", "MsgType", "Result", "UserData",
                 "ResultMessage" },
  ReportReq = { "UserMsgId", "UserMsgSubId", "ServerMsgId", "MsgType", "PhoneNo", "Result",
                "Telecom", "DeliveryTime", "UserData", "ResultMessage", "UserId" },
  SpamReq = { "SpamId", "PhoneNo", "DenyNo" },
  ChangePhoneReq = { "ServerMsgId", "PhoneNo", "ChangePhoneNo" },
  UploadFileNameRes = { "Result", "FileName" },
  UploadFileRes = { "Result" },
  UploadFileFinishRes = { "Result" },
}

local MESSAGES = {
  [0] = "성공", [2] = "인증실패", [5] = "메시지 형식 오류", [11] = "전송속도 초과",
  [16] = "파일이 없음", [18] = "전달 메시지 없음", [21] = "잘못된 파라메터",
  [22] = "발신 프로필 키가 유효하지 않음", [33] = "전화번호 오류", [36] = "템플릿을 찾을 수 없음",
  [39] = "특부가사업자 재판매사코드 미입력", [316] = "발신번호 미등록", [320] = "중복발송 에러",
  [901] = "발송 가능시간이 아님", [902] = "로그인 상태가 아님", [903] = "발송속도 초과",
  [906] = "보유 금액 부족", [908] = "특정필드가 허용된 길이를 초과함",
  [909] = "첨부파일 파일갯수 오류", [910] = "첨부파일 크기 오류", [911] = "수신데이터 오류입니다.",
}

local FAULTS = { close = true, half = true, garbage = true, bomb = true, silent = true, split = true,
                 drip = true, huge_length = true }

function _M.default_state()
  return {
    bind_id = "test001", bind_pwd = "test001#$$%", version = 1,
    key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!", private_key = "ksms-private-key",
    bind_result = false,            -- a number forces the login result (1, 3, 6, ...)
    speed = 10, begin_time = 0, end_time = 24, effective_time = 3,
    now = false,                    -- epoch seconds to pin the clock (the 901 window)
    idle_timeout = 30,              -- seconds without a frame before the server closes
    report_delay_ms = 50, report_result = 0, report_result_message = "성공",
    report_telecom = "KTF", report_user_id = false, reports = true,
    balance = 100000,               -- messages; 906 at 0
    callbacks = json.array({ "15666639", "0212345678", "01012345678", "15884567" }),
    upload_method = "UploadFileReq", upload_chunk_res = true, upload_max_data = 4096,
    upload_max_packet = false, upload_max_files = 3, upload_max_total = 1048576,
    max_frame = 1048576, max_inflated = 1048576,
    field_max = { UserMsgId = 20, UserMsgSubId = 20, TranId = 20, Subject = 40,
                  UserData = 200, KakaoButton = 4000, ResellerCode = 9 },
    message_max = { ["4"] = 90, ["6"] = 2000, ["7"] = 1000, ["71"] = 1000, ["8"] = 1000,
                    ["9"] = 100, ["10"] = 1300, ["11"] = 1300, ["12"] = 1300 },
    write_mode = "normal",          -- normal | bytes | coalesce
    coalesce_ms = 50,
    drip_ms = 100,                  -- the "drip" fault: one byte every drip_ms
    drop_after_received = false,    -- close a connection after N received frames
    drop_after_sent = false,        -- ... or after N sent frames
    record_messages = true,         -- false: MsgSendReq frames are not kept for
                                    -- /_fake/requests (benchmarks: a small heap, so the
                                    -- fake's GC does not delay its arrival stamps)
  }
end

local deep_copy = require("fakes.app").deep_copy

local validate_script -- checks a posted script; defined with the control endpoints

-- A OneShot script applies to frames of its method, or of any ("*").
local function method_matches(script, method)
  return script.method == "*" or script.method == method
end

local function to_hex(s)
  return core.hex(s):upper()
end

local function num(v)
  if type(v) == "number" and math.tointeger then return math.tointeger(v) or v end
  return v
end

local function strip_nulls(v)
  if v == cjson.null then return nil end
  if type(v) == "number" then return num(v) end
  if type(v) == "table" then for k, x in pairs(v) do v[k] = strip_nulls(x) end end
  return v
end

-- Compact JSON with the keys of a known body in the document's order.
local function encode_body(method, body)
  if type(body) ~= "table" then return json.encode(body) end
  local order, seen, parts = ORDER[method] or {}, {}, {}
  for _, k in ipairs(order) do
    if body[k] ~= nil then
      parts[#parts + 1] = json.encode(k) .. ":" .. json.encode(body[k])
      seen[k] = true
    end
  end
  local rest = {}
  for k in pairs(body) do if not seen[k] then rest[#rest + 1] = k end end
  table.sort(rest)
  for _, k in ipairs(rest) do parts[#parts + 1] = json.encode(k) .. ":" .. json.encode(body[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function deflate(s) return zlib.deflate(9)(s, "finish") end

local function frame(payload) return "Content-Length:" .. #payload .. "\r\n" .. payload end

-- Inflates with a ceiling: fed 1 KiB at a time, so a bomb stops early.
local function inflate_limited(data, limit)
  local stream, out, total = zlib.inflate(), {}, 0
  local pos = 1
  while pos <= #data do
    local ok, chunk, eof = pcall(stream, data:sub(pos, pos + 1023))
    if not ok then return nil, "zlib: " .. tostring(chunk) end
    pos = pos + 1024
    total = total + #chunk
    if total > limit then return nil, "inflated payload over " .. limit .. " bytes (zlib bomb?)" end
    out[#out + 1] = chunk
    if eof then
      if pos <= #data then return nil, "bytes after the end of the zlib stream" end
      return table.concat(out)
    end
  end
  return nil, "truncated zlib stream"
end

local bomb_frame
local function make_bomb()
  if not bomb_frame then
    local stream, zeros, parts = zlib.deflate(9), string.rep("\0", 1048576), {}
    for _ = 1, 64 do parts[#parts + 1] = stream(zeros) end
    parts[#parts + 1] = stream("", "finish")
    bomb_frame = frame(table.concat(parts))      -- 64 MiB of zeros once inflated
  end
  return bomb_frame
end

local GARBAGE = frame("this is not zlib, not JSON")
-- The "huge_length" fault: a header announcing 4 GiB, and then nothing.
local HUGE_LENGTH = "Content-Length:4294967295\r\n"

---------------------------------------------------------------- the app

local App = {}
App.__index = App

function App:now() return self.state.now or socket.gettime() end

function App:log(msg) io.stderr:write("oneshot: ", msg, "\n") end

function App:reset_stats()
  self.stats = {
    connections = 0, open = 0, frames_in = 0, frames_out = 0, writes = 0,
    key_requests = 0, binds = 0, bind_failures = 0, duplicate_binds = 0, unbinds = 0,
    alive = 0, messages = 0, accepted = 0, rejected = 0, max_per_second = 0,
    speed_errors = 0, window_errors = 0, duplicates = 0,
    reports_pushed = 0, reports_acked = 0, reports_repushed = 0,
    spam_pushed = 0, spam_acked = 0, change_pushed = 0, change_acked = 0,
    uploads = 0, upload_chunks = 0, protocol_errors = 0, idle_closed = 0, dropped = 0,
  }
end

function App:reset()
  for _, c in pairs(self.conns) do self:close_conn(c, "reset") end
  self.state = deep_copy(self.initial_state)
  self.scripts = scripts.new(method_matches, validate_script)
  self.records, self.reports, self.pushes = {}, {}, {}
  self.files, self.sent_ids, self.arrivals = {}, {}, {}
  self.next_server_msg, self.next_push = 780000, 0
  self.epoch = (self.epoch or 0) + 1        -- timers of the previous epoch do nothing
  self:reset_stats()
end

function App:record(conn, entry)
  if entry.method == "MsgSendReq" and not self.state.record_messages then return entry end
  self.seq = self.seq + 1
  entry.seq, entry.conn, entry.at = self.seq, conn.id, entry.at or socket.gettime()
  self.records[#self.records + 1] = entry
  return entry
end

---------------------------------------------------------------- connections

local Conn = {}
Conn.__index = Conn

function App:accept()
  while true do
    local sock = self.listener:accept()
    if not sock then return end
    sock:settimeout(0)
    sock:setoption("tcp-nodelay", true)
    self.next_conn = self.next_conn + 1
    local c = setmetatable({ app = self, id = self.next_conn, sock = sock, inbuf = "",
                             out = {}, frames_in = 0, frames_out = 0,
                             last_recv = socket.gettime(), held = {} }, Conn)
    self.conns[c.id] = c
    self.stats.connections = self.stats.connections + 1
    self.stats.open = self.stats.open + 1
    self.server:watch(sock, c)
    self.server.last_activity = socket.gettime()
  end
end

function Conn:wants_read() return not self.closed and not self.closing end
function Conn:wants_write()
  return not self.closed and #self.out > 0 and not (self.resume_at and socket.gettime() < self.resume_at)
end

function Conn:on_readable()
  local data, err, partial = self.sock:receive(65536)
  data = data or partial
  if data and #data > 0 then
    -- Arrivals are stamped here, when the bytes are read, not when a frame
    -- is handled: frames handled later in the same batch arrived no later.
    self.last_recv = socket.gettime()
    self.app.server.last_activity = self.last_recv
    self.inbuf = self.inbuf .. data
    self.app:parse(self)
  end
  if err == "closed" and not self.closed then self.app:close_conn(self, "peer closed") end
end

function Conn:on_writable()
  local app = self.app
  self.resume_at = nil
  while #self.out > 0 and not self.closed do
    local chunk = self.out[1]
    local last = (chunk.bytewise or chunk.drip_ms) and chunk.pos or #chunk.data
    local sent, err, partial = self.sock:send(chunk.data, chunk.pos, last)
    app.stats.writes = app.stats.writes + 1
    local upto = sent or partial
    if upto and upto >= chunk.pos then chunk.pos = upto + 1 end
    if err and err ~= "timeout" then return app:close_conn(self, "write: " .. err) end
    if chunk.drip_ms then
      -- The next byte after drip_ms: a timer wakes the loop then.
      self.resume_at = socket.gettime() + chunk.drip_ms / 1000
      app.server:after(chunk.drip_ms, function() end)
      if chunk.pos <= #chunk.data then return end
    end
    if chunk.pos <= #chunk.data then return end     -- more next time (one byte per turn when bytewise)
    table.remove(self.out, 1)
    if chunk.after then chunk.after() end
    if chunk.bytewise then return end
  end
  if #self.out == 0 and self.closing and not self.closed then app:close_conn(self, self.closing) end
end

-- Queues bytes; opts: bytewise, drip_ms (one byte every drip_ms), after
-- (runs once they are written).
function App:write(conn, data, opts)
  if conn.closed then return end
  opts = opts or {}
  conn.out[#conn.out + 1] = { data = data, pos = 1, bytewise = opts.bytewise, drip_ms = opts.drip_ms,
                              after = opts.after }
end

-- Sends one frame (method, body table or string or nil) with the write
-- mode and the per-answer fault (split, half).
local function bind_key(app, conn)
  return conn.enc_key or app.state.key:sub(1, 16)
end

-- The wire bytes of a message. opts: encrypt_with (a key for the body's
-- JSON), plain (a text encrypted as the body instead), as_is (no
-- encryption, even on an encrypted connection).
function App:frame_bytes(conn, method, body, opts)
  local text = '{"Header":{"Method":' .. json.encode(method) .. '}'
  local key = opts.encrypt_with or (not opts.as_is and conn.enc_key)
  if opts.plain then
    text = text .. ',"Body":' .. json.encode(core.b64encode(core.aes128cbc_encrypt(opts.plain, key, self.state.iv)))
  elseif body ~= nil then
    local encoded = encode_body(method, body)
    if key then encoded = json.encode(core.b64encode(core.aes128cbc_encrypt(encoded, key, self.state.iv))) end
    text = text .. ',"Body":' .. encoded
  end
  return frame(deflate(text .. "}"))
end

-- Hostile frames as a script or POST /_fake/send gives them: { method, body,
-- encrypt, plain } (encrypt, plain: under the connection's bind key) or
-- { raw } / { raw_hex } (bytes as they are).
function App:hostile_bytes(conn, list)
  local parts = {}
  for i, f in ipairs(list) do
    if f.raw then parts[i] = f.raw
    elseif f.raw_hex then parts[i] = core.unhex(f.raw_hex)
    else
      local key = (f.encrypt or f.plain) and bind_key(self, conn) or nil
      parts[i] = self:frame_bytes(conn, f.method, f.body, { encrypt_with = key, plain = f.plain, as_is = true })
    end
  end
  return table.concat(parts)
end

function App:send_frame(conn, method, body, opts)
  if conn.closed or conn.closing then return end
  opts = opts or {}
  local bytes = self:frame_bytes(conn, method, body, opts)
  local after = function()
    conn.frames_out = conn.frames_out + 1
    self.stats.frames_out = self.stats.frames_out + 1
    if opts.after then opts.after() end
    local n = self.state.drop_after_sent
    if n and conn.frames_out >= n then
      self.stats.dropped = self.stats.dropped + 1
      self:close_conn(conn, "drop_after_sent")
    end
  end
  if opts.fault == "half" then
    self:write(conn, bytes:sub(1, math.floor(#bytes / 2)), {
      after = function() self:close_conn(conn, "fault half") end })
    return
  end
  if opts.fault == "drip" then
    return self:write(conn, bytes, { drip_ms = self.state.drip_ms, after = after })
  end
  local mode = self.state.write_mode
  if opts.fault == "split" or mode == "bytes" then
    return self:write(conn, bytes, { bytewise = true, after = after })
  end
  if mode == "coalesce" then
    local held = conn.held
    held[#held + 1] = { data = bytes, after = after }
    if #held == 1 then
      self.server:after(self.state.coalesce_ms, function()
        local list = conn.held
        conn.held = {}
        local parts = {}
        for i, h in ipairs(list) do parts[i] = h.data end
        self:write(conn, table.concat(parts), { after = function()
          for _, h in ipairs(list) do h.after() end
        end })
      end)
    end
    return
  end
  self:write(conn, bytes, { after = after })
end

function App:close_conn(conn, why)
  if conn.closed then return end
  conn.closed = true
  self.server:unwatch(conn.sock)
  conn.sock:close()
  self.conns[conn.id] = nil
  self.stats.open = self.stats.open - 1
  if conn.bound and self.bound == conn then self.bound = nil end
  -- Reports pushed on it and not acknowledged go back to pending.
  for _, r in ipairs(self.reports) do
    if r.status == "pushed" and r.conn == conn.id then r.status = "pending" end
  end
  self:log("connection " .. conn.id .. " closed: " .. tostring(why))
end

function App:protocol_error(conn, err, raw)
  self.stats.protocol_errors = self.stats.protocol_errors + 1
  self:record(conn, { error = err, raw_hex = raw and to_hex(raw:sub(1, 512)) or nil })
  self:close_conn(conn, "protocol error: " .. err)
end

---------------------------------------------------------------- frames in

local PREFIX = "Content-Length:"

function App:parse(conn)
  while not conn.closed and not conn.closing do
    local buf = conn.inbuf
    if #buf == 0 then return end
    local head_len = math.min(#buf, #PREFIX)
    if buf:sub(1, head_len) ~= PREFIX:sub(1, head_len) then
      return self:protocol_error(conn, "frame does not start with Content-Length:", buf)
    end
    local eol = buf:find("\r\n", 1, true)
    if not eol then
      if #buf > 32 then return self:protocol_error(conn, "frame header line too long", buf) end
      return
    end
    local n = buf:sub(1, eol - 1):match("^Content%-Length:(%d+)$")
    n = tonumber(n)
    if not n then return self:protocol_error(conn, "bad frame header", buf) end
    if n == 0 or n > self.state.max_frame then
      return self:protocol_error(conn, "frame length " .. n .. " out of range", buf)
    end
    if #buf < eol + 1 + n then return end
    local raw = buf:sub(1, eol + 1 + n)
    conn.inbuf = buf:sub(eol + 2 + n)
    self:handle_frame(conn, raw:sub(eol + 2), raw)
  end
end

local function decrypt_body(app, body, key)
  local bin, err = core.b64decode(body)
  if not bin then return nil, "body is not Base64: " .. tostring(err) end
  local plain, derr = core.aes128cbc_decrypt(bin, key, app.state.iv)
  if not plain then return nil, "body does not decrypt: " .. tostring(derr) end
  local ok, v = pcall(cjson.decode, plain)
  if not ok or type(v) ~= "table" then return nil, "decrypted body is not a JSON object" end
  return strip_nulls(v), plain
end



function App:handle_frame(conn, payload, raw)
  local at = conn.last_recv
  conn.frames_in = conn.frames_in + 1
  self.stats.frames_in = self.stats.frames_in + 1
  local text, err = inflate_limited(payload, self.state.max_inflated)
  if not text then return self:protocol_error(conn, err, raw) end
  local ok, msg = pcall(cjson.decode, text)
  if not ok or type(msg) ~= "table" or type(msg.Header) ~= "table"
     or type(msg.Header.Method) ~= "string" then
    return self:protocol_error(conn, "not a OneShot JSON frame: " .. text:sub(1, 200), raw)
  end
  local method, body = msg.Header.Method, strip_nulls(msg.Body)
  local encrypted = type(body) == "string"
  if encrypted then
    local key = (method == "BindReq" or method == "UnBindReq") and bind_key(self, conn) or conn.enc_key
    if not key then
      return self:protocol_error(conn, method .. ": an encrypted body in plain mode", raw)
    end
    local plain
    body, plain = decrypt_body(self, body, key)
    if not body then
      if method == "BindReq" then
        self:record(conn, { method = method, json = text, raw = raw, encrypted = true,
                            error = plain, at = at })
        self.stats.bind_failures = self.stats.bind_failures + 1
        self:send_frame(conn, "BindRes", { Result = 911 }, { encrypt_with = bind_key(self, conn) })
        conn.closing = "bind failed"
        return
      end
      return self:protocol_error(conn, method .. ": " .. tostring(plain), raw)
    end
  elseif conn.enc_key and body ~= nil then
    return self:protocol_error(conn, method .. ": a plain body in encrypted mode", raw)
  elseif method == "BindReq" then
    return self:protocol_error(conn, "BindReq: the body must be AES+Base64", raw)
  end
  self:record(conn, { method = method, body = body, json = text, encrypted = encrypted,
                      raw = raw, at = at })
  local n = self.state.drop_after_received
  if n and conn.frames_in >= n then
    self.stats.dropped = self.stats.dropped + 1
    return self:close_conn(conn, "drop_after_received")
  end
  if method == "MsgSendReq" then self:arrival(conn, at) end
  local script = self.scripts:take(method)
  local function go()
    if conn.closed then return end
    if script and script.frames then
      -- Hostile frames first; then the answer, unless a fault stops it.
      local drip = script.fault == "drip" and self.state.drip_ms or nil
      self:write(conn, self:hostile_bytes(conn, script.frames), { drip_ms = drip })
    end
    local fault = script and script.fault
    if fault == "close" then return self:close_conn(conn, "fault close") end
    if fault == "silent" then return end
    if fault == "garbage" then return self:write(conn, GARBAGE) end
    if fault == "bomb" then return self:write(conn, make_bomb()) end
    if fault == "huge_length" then return self:write(conn, HUGE_LENGTH) end
    self:dispatch(conn, method, body or {}, script, at)
  end
  if script and script.latency_ms and script.latency_ms > 0 then
    self.server:after(script.latency_ms, go)
  else
    go()
  end
end

-- The sliding one-second window, per account: every MsgSendReq that arrives
-- on a bound connection counts, whatever its answer.
function App:arrival(conn, at)
  if not conn.bound then return end
  local list = self.arrivals        -- a deque: list.head .. list.tail
  local tail = (list.tail or 0) + 1
  list[tail], list.tail = at, tail
  local head = list.head or 1
  while list[head] <= at - 1 do list[head] = nil; head = head + 1 end
  list.head = head
  local count = tail - head + 1
  local st = self.stats
  st.first_arrival = st.first_arrival or at
  st.last_arrival = at
  conn.window_count = count
  if count > self.stats.max_per_second then self.stats.max_per_second = count end
end

---------------------------------------------------------------- methods

local handlers = {}

function App:dispatch(conn, method, body, script, at)
  local h = handlers[method]
  if not h and (method == self.state.upload_method or method == "UploadFileDataReq") then
    h = handlers.upload_chunk
  end
  if not h then
    self:record(conn, { error = "unknown method " .. method })
    return
  end
  h(self, conn, body, script or {}, at)
end

local function forced(script, code) if script.result ~= nil then return script.result end return code end

handlers.PrivateKeyReq = function(app, conn, body, script)
  app.stats.key_requests = app.stats.key_requests + 1
  if conn.bound or conn.enc_key then
    return app:send_frame(conn, "PrivateKeyRes", { Result = forced(script, 911) })
  end
  local result = forced(script, 0)
  app:send_frame(conn, "PrivateKeyRes", { Result = result, PrivateKey = app.state.private_key })
  if result == 0 then conn.enc_key = app.state.private_key:sub(1, 16) end
end

handlers.BindReq = function(app, conn, body, script)
  local st = app.state
  local key = bind_key(app, conn)
  local result = script.result or st.bind_result or nil
  if not result then
    if num(body.Version) ~= st.version then result = 7
    elseif body.BindId ~= st.bind_id then result = 4
    elseif body.BindPwd ~= st.bind_pwd then result = 5
    elseif conn.bound or (app.bound and not app.bound.closed) then result = 2
    else result = 0 end
  end
  if result == 2 then app.stats.duplicate_binds = app.stats.duplicate_binds + 1 end
  if result ~= 0 then
    app.stats.bind_failures = app.stats.bind_failures + 1
    app:send_frame(conn, "BindRes", { Result = result, BindId = body.BindId or "" },
                   { encrypt_with = key, fault = script.fault })
    conn.closing = "bind failed (" .. result .. ")"
    return
  end
  app.stats.binds = app.stats.binds + 1
  conn.bound = true
  app.bound = conn
  app:send_frame(conn, "BindRes", { Result = 0, BindId = st.bind_id, Speed = st.speed,
                                    BeginTime = st.begin_time, EndTime = st.end_time,
                                    EffectiveTime = st.effective_time },
                 { encrypt_with = key, fault = script.fault })
  -- Reports never acknowledged go out again on the new session.
  local again = {}
  for _, r in ipairs(app.reports) do
    if r.status == "pending" then
      again[#again + 1] = r
      r.status = "scheduled"
    end
  end
  if #again > 0 then
    app.server:after(st.report_delay_ms, function()
      for _, r in ipairs(again) do app:push_report(r) end
    end)
  end
end

handlers.UnBindReq = function(app, conn, body, script)
  app.stats.unbinds = app.stats.unbinds + 1
  local result = forced(script, conn.bound and 0 or 902)
  app:send_frame(conn, "UnBindRes", { Result = result },
                 { encrypt_with = bind_key(app, conn), fault = script.fault })
  if conn.bound and app.bound == conn then app.bound = nil end
  conn.bound = false
  conn.closing = "unbind"
end

handlers.AliveReq = function(app, conn, body, script)
  app.stats.alive = app.stats.alive + 1
  app:send_frame(conn, "AliveRes", nil, { fault = script.fault })
end

local function kst_hour(epoch)
  return math.floor(((epoch + 9 * 3600) % 86400) / 3600)
end

local function in_window(st, epoch)
  local h, b, e = kst_hour(epoch), st.begin_time, st.end_time
  if b <= e then return h >= b and h < e end
  return h >= b or h < e
end

local function str(v) return type(v) == "string" and v or (v == nil and "" or tostring(v)) end

function App:check_message(b)
  local st = self.state
  local t = num(b.MsgType)
  local limit = st.message_max[tostring(t)]
  if not limit then return 5 end
  if type(b.PhoneNo) ~= "string" or not korean.is_phone(b.PhoneNo) then return 33 end
  local registered = false
  for _, n in ipairs(st.callbacks) do if n == b.CallbackNo then registered = true end end
  if not registered then return 316 end
  for field, max in pairs(st.field_max) do
    if b[field] ~= nil and korean.cp949_len(str(b[field])) > max then return 908 end
  end
  local message = str(b.Message)
  if message == "" then return 18 end
  local kakao = t == 7 or t == 71 or t == 8 or t == 12
  local len = kakao and korean.char_len(message) or korean.cp949_len(message)
  if len > limit then return 908 end
  if b.ResellerCode ~= nil and b.ResellerCode ~= "" and #str(b.ResellerCode) ~= 9 then return 39 end
  if (t == 7 or t == 71 or t == 8) and str(b.KakaoSenderKey) == "" then return 22 end
  if (t == 7 or t == 71) and str(b.KakaoTemplateCode) == "" then return 36 end
  if t >= 9 and t <= 12 and str(b.rcsMessageBaselId) == "" then return 21 end
  local count = num(b.FileCount) or 0
  if type(count) ~= "number" then return 5 end
  if t ~= 6 then
    if count ~= 0 then return 909 end
  else
    if count < 0 or count > st.upload_max_files then return 909 end
    local total = 0
    for i = 1, 3 do
      local name, ftype = str(b["FileName" .. i]), str(b["FileType" .. i])
      if i <= count then
        if name == "" or ftype ~= "IMG" then return 909 end
        local f = self.files[name]
        if not f then return 16 end
        total = total + f.size
      elseif name ~= "" then
        return 909
      end
    end
    if total > st.upload_max_total then return 910 end
  end
  return 0
end

handlers.MsgSendReq = function(app, conn, b, script, at)
  local st = app.state
  app.stats.messages = app.stats.messages + 1
  local result
  if not conn.bound then result = 902
  elseif script.result ~= nil then result = script.result
  elseif (conn.window_count or 0) > st.speed then result = 903
  elseif not in_window(st, st.now or at) then result = 901
  else
    local id = str(b.UserMsgId) .. "\0" .. str(b.UserMsgSubId)
    if app.sent_ids[id] then result = 320
    else
      result = app:check_message(b)
      if result == 0 and st.balance < 1 then result = 906 end
    end
  end
  conn.window_count = nil
  if result == 903 or result == 11 then app.stats.speed_errors = app.stats.speed_errors + 1 end
  if result == 901 then app.stats.window_errors = app.stats.window_errors + 1 end
  if result == 320 then app.stats.duplicates = app.stats.duplicates + 1 end
  local answer = { UserMsgId = b.UserMsgId, UserMsgSubId = b.UserMsgSubId, PhoneNo = b.PhoneNo,
                   MsgType = num(b.MsgType), Result = result, UserData = b.UserData,
                   ResultMessage = script.result_message or MESSAGES[result] or "오류" }
  if result ~= 0 then
    app.stats.rejected = app.stats.rejected + 1
    return app:send_frame(conn, "MsgSendRes", answer, { fault = script.fault })
  end
  app.stats.accepted = app.stats.accepted + 1
  st.balance = st.balance - 1
  app.sent_ids[str(b.UserMsgId) .. "\0" .. str(b.UserMsgSubId)] = true
  app.next_server_msg = app.next_server_msg + 1
  local report = { status = "scheduled", pushes = 0, conn = conn.id, epoch = app.epoch, body = {
    UserMsgId = b.UserMsgId, UserMsgSubId = b.UserMsgSubId,
    ServerMsgId = tostring(app.next_server_msg), MsgType = num(b.MsgType), PhoneNo = b.PhoneNo,
    Result = st.report_result, Telecom = st.report_telecom,
    DeliveryTime = os.date("!%Y-%m-%d %H:%M:%S.000", math.floor((st.now or at) + 9 * 3600)),
    UserData = b.UserData, ResultMessage = st.report_result_message,
    UserId = st.report_user_id and st.bind_id or nil } }
  app:send_frame(conn, "MsgSendRes", answer, { fault = script.fault })
  if st.reports then
    app.reports[#app.reports + 1] = report
    app.server:after(st.report_delay_ms, function() app:push_report(report) end)
  end
end

function App:push_report(r)
  if r.epoch ~= self.epoch then return end
  if r.status == "acked" or r.status == "pushed" then return end
  local conn = self.bound
  if not conn or conn.closed or conn.closing then
    r.status = "pending"
    return
  end
  r.status, r.conn, r.pushes = "pushed", conn.id, r.pushes + 1
  self.stats.reports_pushed = self.stats.reports_pushed + 1
  if r.pushes > 1 then self.stats.reports_repushed = self.stats.reports_repushed + 1 end
  self:send_frame(conn, "ReportReq", r.body)
end

handlers.ReportRes = function(app, conn, b)
  for _, r in ipairs(app.reports) do
    if r.body.ServerMsgId == str(b.ServerMsgId) and r.status ~= "acked" then
      r.status, r.ack = "acked", b
      app.stats.reports_acked = app.stats.reports_acked + 1
      return
    end
  end
  app:record(conn, { error = "ReportRes for an unknown ServerMsgId " .. str(b.ServerMsgId) })
end

local function push_res(kind, key)
  return function(app, conn, b)
    for _, p in ipairs(app.pushes) do
      if p.method == kind and not p.acked and p.conn == conn.id
         and str(p.body[key]) == str(b[key]) then
        p.acked, p.answer = true, b
        local stat = kind == "SpamReq" and "spam_acked" or "change_acked"
        app.stats[stat] = app.stats[stat] + 1
        return
      end
    end
    app:record(conn, { error = kind .. " answer matches no push" })
  end
end
handlers.SpamRes = push_res("SpamReq", "SpamId")
handlers.ChangePhoneRes = push_res("ChangePhoneReq", "ServerMsgId")

handlers.UploadFileNameReq = function(app, conn, b, script)
  if not conn.bound then return app:send_frame(conn, "UploadFileNameRes", { Result = 902 }) end
  local ext = str(b.FileExtension):lower()
  local result = forced(script, (ext == ".jpg" or ext == ".jpeg") and 0 or 911)
  if result ~= 0 then
    return app:send_frame(conn, "UploadFileNameRes", { Result = result, FileName = "" },
                          { fault = script.fault })
  end
  local name = {}
  for i = 1, 16 do name[i] = string.format("%02x", math.random(0, 255)) end
  name = table.concat(name) .. ".jpg"
  conn.upload = { name = name, parts = {}, size = 0, result = 0 }
  app:send_frame(conn, "UploadFileNameRes", { Result = 0, FileName = name }, { fault = script.fault })
end

handlers.upload_chunk = function(app, conn, b, script)
  local st, up = app.state, conn.upload
  app.stats.upload_chunks = app.stats.upload_chunks + 1
  local result = 0
  local data = b.Data
  local rec = app.records[#app.records]
  if not conn.bound then result = 902
  elseif not up then result = 911
  elseif type(data) ~= "string" then result = 911
  elseif #data > st.upload_max_data then result = 910
  elseif st.upload_max_packet and rec and #rec.raw > st.upload_max_packet then result = 910
  else
    local bin = core.b64decode(data)
    if not bin then result = 911
    else
      up.parts[#up.parts + 1] = bin
      up.size = up.size + #bin
      if up.size > st.upload_max_total then result = 910 end
    end
  end
  result = forced(script, result)
  if up and result ~= 0 then up.result = result end
  if st.upload_chunk_res then
    app:send_frame(conn, "UploadFileRes", { Result = result }, { fault = script.fault })
  end
end

handlers.UploadFileFinishReq = function(app, conn, b, script)
  local st, up = app.state, conn.upload
  local result
  if not conn.bound then result = 902
  elseif not up or up.name ~= b.FileName then result = 16
  elseif up.result ~= 0 then result = up.result
  else
    local data = table.concat(up.parts)
    if num(b.FileSize) ~= #data then result = 910
    elseif data:sub(1, 3) ~= "\255\216\255" or data:sub(-2) ~= "\255\217" then result = 911
    elseif #data > st.upload_max_total then result = 910
    else
      result = 0
      app.files[up.name] = { size = #data, data = data }
      app.stats.uploads = app.stats.uploads + 1
    end
  end
  conn.upload = nil
  app:send_frame(conn, "UploadFileFinishRes", { Result = forced(script, result) },
                 { fault = script.fault })
end

---------------------------------------------------------------- pushes

function App:push(method, body, conn_id)
  if method ~= "SpamReq" and method ~= "ChangePhoneReq" then
    return nil, "push method must be SpamReq or ChangePhoneReq"
  end
  local conn = conn_id and self.conns[conn_id] or self.bound
  if not conn or conn.closed or not conn.bound then return nil, "no bound connection" end
  self.next_push = self.next_push + 1
  body = body or {}
  if method == "SpamReq" then
    body.SpamId = body.SpamId or tostring(self.next_push)
    body.PhoneNo = body.PhoneNo or "01000000000"
    body.DenyNo = body.DenyNo or "08000000000"
    self.stats.spam_pushed = self.stats.spam_pushed + 1
  else
    body.ServerMsgId = body.ServerMsgId or tostring(2600 + self.next_push)
    body.PhoneNo = body.PhoneNo or "0111234564"
    body.ChangePhoneNo = body.ChangePhoneNo or "01012345678"
    self.stats.change_pushed = self.stats.change_pushed + 1
  end
  local p = { id = self.next_push, method = method, body = body, conn = conn.id, acked = false }
  self.pushes[#self.pushes + 1] = p
  self:send_frame(conn, method, body)
  return p
end

---------------------------------------------------------------- control API

local reply = control_api.reply

local SCRIPT_KEYS = { method = true, times = true, result = true, result_message = true,
                      latency_ms = true, fault = true, frames = true }

-- Checks a list of hostile frames (see App:hostile_bytes): list | nil, err.
local function validate_frames(list)
  if type(list) ~= "table" or #list == 0 then return nil, "frames must be a non-empty list" end
  for i, f in ipairs(list) do
    if type(f) ~= "table" then return nil, "frame " .. i .. " must be an object" end
    if f.raw ~= nil or f.raw_hex ~= nil then
      if type(f.raw or f.raw_hex) ~= "string" then return nil, "frame " .. i .. ": raw and raw_hex are strings" end
      if f.raw_hex and not core.unhex(f.raw_hex) then return nil, "frame " .. i .. ": raw_hex is not hex" end
    elseif type(f.method) ~= "string" then
      return nil, "frame " .. i .. " needs a method (a string), raw or raw_hex"
    elseif f.plain ~= nil and type(f.plain) ~= "string" then
      return nil, "frame " .. i .. ": plain must be a string"
    end
    for k in pairs(f) do
      if k ~= "method" and k ~= "body" and k ~= "encrypt" and k ~= "plain" and k ~= "raw" and k ~= "raw_hex" then
        return nil, "frame " .. i .. ": unknown field " .. tostring(k)
      end
    end
  end
  return list
end

function validate_script(s)
  if type(s) ~= "table" then return nil, "a script is a JSON object" end
  for k in pairs(s) do if not SCRIPT_KEYS[k] then return nil, "unknown script field " .. tostring(k) end end
  local out = { method = s.method or "*", fault = s.fault, result_message = s.result_message }
  if type(out.method) ~= "string" then return nil, "method must be a string" end
  if out.fault ~= nil and not FAULTS[out.fault] then
    return nil, "fault must be close, half, garbage, bomb, silent, split, drip or huge_length"
  end
  if s.frames ~= nil then
    local frames, err = validate_frames(s.frames)
    if not frames then return nil, err end
    out.frames = frames
  end
  if s.result ~= nil then
    out.result = tonumber(s.result)
    if not out.result then return nil, "result must be a number" end
    out.result = math.floor(out.result)
  end
  for _, k in ipairs({ "times", "latency_ms" }) do
    if s[k] ~= nil and (type(s[k]) ~= "number" or s[k] < 0) then
      return nil, k .. " must be a non-negative number"
    end
  end
  out.latency_ms = s.latency_ms
  if s.times ~= nil then
    out.times = math.floor(s.times)
    if out.times < 1 then return nil, "times must be at least 1" end
  end
  return out
end

local endpoints = {}

endpoints["POST /_fake/script"] = function(app, req, res, body)
  local queued, err = app.scripts:add_posted(body)
  if not queued then return reply(res, 400, { error = err }) end
  reply(res, 200, { ok = true, queued = queued })
end

endpoints["GET /_fake/scripts"] = function(app, req, res) reply(res, 200, json.array(app.scripts:list())) end

endpoints["GET /_fake/requests"] = function(app, req, res)
  local only = req.query and (req.query:match("method=([%w_]+)") or req.query:match("path=([%w_]+)"))
  local out = json.array()
  for _, r in ipairs(app.records) do
    if not only or r.method == only then
      -- The hex of the wire bytes is made when asked for, not per frame.
      local copy = {}
      for k, v in pairs(r) do if k ~= "raw" then copy[k] = v end end
      if r.raw then copy.raw_hex = to_hex(r.raw) end
      out[#out + 1] = copy
    end
  end
  reply(res, 200, out)
end

endpoints["GET /_fake/stats"] = function(app, req, res) reply(res, 200, app.stats) end

endpoints["GET /_fake/state"] = function(app, req, res) reply(res, 200, app.state) end

endpoints["POST /_fake/state"] = function(app, req, res, body)
  for k in pairs(body) do
    if app.state[k] == nil then return reply(res, 400, { error = "unknown state key " .. tostring(k) }) end
  end
  for k, v in pairs(body) do app.state[k] = deep_copy(v) end
  reply(res, 200, app.state)
end

endpoints["POST /_fake/reset"] = function(app, req, res)
  app:reset()
  reply(res, 200, { ok = true })
end

endpoints["GET /_fake/reports"] = function(app, req, res)
  local out = json.array()
  for i, r in ipairs(app.reports) do
    out[i] = { status = r.status, pushes = r.pushes, conn = r.conn, body = r.body, ack = r.ack }
  end
  reply(res, 200, out)
end

-- Hostile frames written now on the bound connection (or body.conn).
endpoints["POST /_fake/send"] = function(app, req, res, body)
  local frames, err = validate_frames(body.frames)
  if not frames then return reply(res, 400, { error = err }) end
  local conn = body.conn and app.conns[body.conn] or app.bound
  if not conn or conn.closed then return reply(res, 409, { error = "no such connection" }) end
  local drip = body.drip and app.state.drip_ms or nil
  app:write(conn, app:hostile_bytes(conn, frames), { drip_ms = drip })
  reply(res, 200, { ok = true, conn = conn.id })
end

endpoints["GET /_fake/pushes"] = function(app, req, res) reply(res, 200, json.array(app.pushes)) end

endpoints["POST /_fake/push"] = function(app, req, res, body)
  local p, err = app:push(body.method, body.body, body.conn)
  if not p then return reply(res, 409, { error = err }) end
  reply(res, 200, p)
end

endpoints["GET /_fake/connections"] = function(app, req, res)
  local out = json.array()
  for _, c in pairs(app.conns) do
    out[#out + 1] = { id = c.id, bound = c.bound == true, encrypted = c.enc_key ~= nil,
                      frames_in = c.frames_in, frames_out = c.frames_out }
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  reply(res, 200, out)
end

endpoints["POST /_fake/drop"] = function(app, req, res, body)
  local n = 0
  for id, c in pairs(app.conns) do
    if body.conn == nil or body.conn == id then
      app:close_conn(c, "dropped by control")
      n = n + 1
    end
  end
  reply(res, 200, { dropped = n })
end

endpoints["POST /_fake/shutdown"] = function(app, req, res)
  reply(res, 200, { ok = true })
  app.server:stop("shutdown")
end

function App:control(req, res)
  return control_api.dispatch(endpoints, self, req, res)
end

---------------------------------------------------------------- start

-- opts: host, port (control), oneshot_port, idle_exit, state (overrides).
function _M.new(opts)
  local self = setmetatable({ conns = {}, next_conn = 0, seq = 0 }, App)
  local initial = _M.default_state()
  for k, v in pairs(opts.state or {}) do
    if initial[k] == nil then return nil, "unknown state key " .. tostring(k) end
    initial[k] = deep_copy(v)
  end
  self.initial_state = initial
  local server, err = httpd.new{
    host = opts.host, port = opts.port, idle_exit = opts.idle_exit,
    handler = function(req, res) self:control(req, res) end,
  }
  if not server then return nil, err end
  self.server = server
  local listener, lerr = httpd.listen_socket(opts.host, opts.oneshot_port, 128)
  if not listener then return nil, "oneshot port: " .. tostring(lerr) end
  self.listener = listener
  local _, lport = listener:getsockname()
  self.oneshot_port = tonumber(lport)
  server:watch(listener, {
    wants_read = function() return not server.stopping end,
    wants_write = function() return false end,
    on_readable = function() self:accept() end,
  })
  self:reset()
  math.randomseed(os.time())
  -- The idle check: the server closes a connection silent for idle_timeout.
  local function tick()
    local now = socket.gettime()
    for _, c in pairs(self.conns) do
      if c.closing and #c.out == 0 and #c.held == 0 then
        self:close_conn(c, c.closing)
      elseif now - c.last_recv > self.state.idle_timeout then
        self.stats.idle_closed = self.stats.idle_closed + 1
        self:close_conn(c, "idle")
      end
    end
    server:after(50, tick)
  end
  server:after(50, tick)
  return self
end

function App:run()
  local reason = self.server:run()
  for _, c in pairs(self.conns) do self:close_conn(c, "stopping") end
  self.listener:close()
  return reason
end

return _M
