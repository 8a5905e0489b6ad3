-- oneshot_fake_spec.lua - the fake OneShot server (spec/fakes/oneshot.lua)
-- speaks the document's protocol (seeds/004) over real TCP. Driven here by a
-- small raw client: LuaSocket + lua-zlib + cjson for the frames, and only the
-- AES/Base64 primitives of ksms.core (never ksms's OneShot codec).
local socket = require "socket"
local zlib = require "zlib"
local cjson = require("cjson").new()
local core = require "ksms.core"
local fake_control = require "fake_control"
local H = require "spec_helper"

local KEY, IV, PKEY = "ksms-oneshot-key", "ksms-oneshot-iv!", "ksms-private-key"

---------------------------------------------------------------- raw client

local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

local function frame(text)
  local z = zlib.deflate(9)(text, "finish")
  return "Content-Length:" .. #z .. "\r\n" .. z
end

local function enc(tbl, key) return core.b64encode(core.aes128cbc_encrypt(cjson.encode(tbl), key, IV)) end
local function dec(s, key)
  local plain = assert(core.aes128cbc_decrypt((assert(core.b64decode(s))), key, IV))
  return cjson.decode(plain)
end

local Client = {}
Client.__index = Client

local fake

local function connect()
  local sock = assert(fake:oneshot_connect(3))
  return setmetatable({ sock = sock }, Client)
end

function Client:raw(bytes) assert(self.sock:send(bytes)) end

-- body: a table (JSON object), a string (sent as is: an encrypted body), or nil.
function Client:send(method, body, key)
  local text = '{"Header":{"Method":"' .. method .. '"}'
  if type(body) == "table" and key then body = enc(body, key) end
  if body ~= nil then text = text .. ',"Body":' .. cjson.encode(body) end
  self:raw(frame(text .. "}"))
end

-- The next frame: decoded message, the raw bytes; nil, err on close/timeout.
function Client:read(timeout, key)
  self.sock:settimeout(timeout or 2)
  local line, err = self.sock:receive("*l")
  if not line then return nil, err end
  local n = assert(tonumber(line:match("^Content%-Length:(%d+)$")), "bad header " .. line)
  local payload, perr = self.sock:receive(n)
  if not payload then return nil, perr end
  local text = zlib.inflate()(payload)
  local msg = cjson.decode(text)
  if type(msg.Body) == "string" and key then msg.Body = dec(msg.Body, key) end
  return msg, line .. "\r\n" .. payload
end

-- The next frame, which must be method; ReportReq pushes that come in
-- between are kept for a later expect("ReportReq").
function Client:expect(method, key, timeout)
  self.stash = self.stash or {}
  if method == "ReportReq" and #self.stash > 0 then return table.remove(self.stash, 1) end
  while true do
    local msg, err = self:read(timeout, key)
    assert(msg, "expected " .. method .. ", got " .. tostring(err))
    if msg.Header.Method == "ReportReq" and method ~= "ReportReq" then
      self.stash[#self.stash + 1] = msg.Body
    else
      assert.are.equal(method, msg.Header.Method)
      return msg.Body
    end
  end
end

function Client:closed(timeout)
  self.sock:settimeout(timeout or 2)
  local data, err, partial = self.sock:receive("*a")
  return err == nil or err == "closed", (data or partial)
end

function Client:close() self.sock:close() end

function Client:bind(fields, key)
  local body = { BindId = "test001", BindPwd = "test001#$$%", Version = 1 }
  for k, v in pairs(fields or {}) do body[k] = v end
  self:send("BindReq", enc(body, key or KEY))
  return self:expect("BindRes", key or KEY)
end

local seq = 0
local function sms(over)
  seq = seq + 1
  local m = { UserMsgId = "m" .. seq, UserMsgSubId = "", MsgType = 4, PhoneNo = "01091874302",
              CallbackNo = "15666639", Message = "hello", FileCount = 0, UserData = "u" .. seq }
  for k, v in pairs(over or {}) do m[k] = v end
  return m
end

local function bound()
  local c = connect()
  assert.are.equal(0, c:bind().Result)
  return c
end

local function send_sms(c, over)
  c:send("MsgSendReq", sms(over))
  return c:expect("MsgSendRes")
end

local function doc_frame(name)
  for _, f in ipairs(H.doc_frames()) do
    if f.name:find(name, 1, true) == 1 then
      return f.wire_prefix:gsub("\\r\\n", "\r\n") .. unhex(f.zlib_hex), f
    end
  end
  error("no doc frame " .. name)
end

local wait_until = H.wait_until

---------------------------------------------------------------- specs

describe("fake OneShot server", function()
  setup(function() fake = fake_control.start("oneshot", { idle_exit = 60 }) end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("listens on a control port and a OneShot port", function()
    assert.is_number(fake.port)
    assert.is_number(fake.oneshot_port)
    assert.are_not.equal(fake.port, fake.oneshot_port)
    assert.are.equal(0, fake:stats().connections)
  end)

  it("accepts the document's frames byte for byte after a bind", function()
    local c = bound()
    c:raw((doc_frame("AliveReq")))
    c:expect("AliveRes")
    local bytes = doc_frame("MsgSendReq")
    c:raw(bytes)
    local res = c:expect("MsgSendRes")
    assert.are.equal(0, res.Result)
    assert.are.equal("80", res.UserMsgId)
    assert.are.equal("01091874302", res.PhoneNo)
    assert.are.equal(4, res.MsgType)
    assert.is_string(res.ResultMessage)
    local report = c:expect("ReportReq")
    assert.are.equal("80", report.UserMsgId)
    c:send("ReportRes", { UserMsgId = "80", UserMsgSubId = "", ServerMsgId = report.ServerMsgId, Result = 0 })
    local recs = fake:requests("MsgSendReq")
    assert.are.equal(1, #recs)
    local hex = (bytes:gsub(".", function(ch) return string.format("%02X", ch:byte()) end))
    assert.are.equal(hex, recs[1].raw_hex)
    assert.are.equal("SMS 테스트 메시지 ", recs[1].body.Message)
    wait_until("ack", 2, function() return fake:stats().reports_acked == 1 end)
    local bind = fake:requests("BindReq")[1]
    assert.are.equal("test001", bind.body.BindId)
    assert.is_true(bind.encrypted)
    c:close()
  end)

  it("answers a bind with the grant, and each login failure code, then closes", function()
    local c = connect()
    local b = c:bind()
    assert.are.same({ Result = 0, BindId = "test001", Speed = 10, BeginTime = 0, EndTime = 24,
                      EffectiveTime = 3 }, b)
    c:close()
    for _, case in ipairs({ { { BindPwd = "nope" }, 5 }, { { BindId = "x" }, 4 },
                            { { Version = 2 }, 7 } }) do
      c = connect()
      assert.are.equal(case[2], c:bind(case[1]).Result)
      assert.is_true(c:closed())
      c:close()
    end
    fake:state{ bind_result = 6 }
    c = connect()
    assert.are.equal(6, c:bind().Result)
    assert.is_true(c:closed())
    fake:state{ bind_result = false }
    c = connect()                              -- a body under the wrong key
    c:send("BindReq", enc({ BindId = "test001", BindPwd = "test001#$$%", Version = 1 }, "0000000000000000"))
    assert.are.equal(911, c:expect("BindRes", KEY).Result)
    assert.is_true(c:closed())
    local st = fake:stats()
    assert.are.equal(1, st.binds)
    assert.are.equal(5, st.bind_failures)
  end)

  it("answers 2 to a second bind of the bound account", function()
    local first = bound()
    local second = connect()
    assert.are.equal(2, second:bind().Result)
    assert.is_true(second:closed())
    first:send("AliveReq")
    first:expect("AliveRes")
    assert.are.equal(1, fake:stats().duplicate_binds)
    first:close()
    wait_until("unbound", 2, function() return fake:stats().open == 0 end)
    local third = bound()                     -- free again once the first is gone
    third:close()
  end)

  it("answers 903 to the message over Speed in a one-second window", function()
    fake:state{ speed = 5 }
    local c = bound()
    local burst = {}
    for i = 1, 6 do burst[i] = frame(cjson.encode({ Header = { Method = "MsgSendReq" }, Body = sms() })) end
    c:raw(table.concat(burst))
    local results = {}
    for i = 1, 6 do results[i] = c:expect("MsgSendRes").Result end
    assert.are.same({ 0, 0, 0, 0, 0, 903 }, results)
    local st = fake:stats()
    assert.are.equal(6, st.max_per_second)
    assert.are.equal(1, st.speed_errors)
    assert.are.equal(6, st.messages)
    c:close()
  end)

  it("answers 901 outside BeginTime..EndTime in Korea time", function()
    -- 2026-01-01 18:00 UTC is 03:00 the next day in Korea.
    fake:state{ now = 1767290400, begin_time = 8, end_time = 20 }
    local c = bound()
    assert.are.equal(901, send_sms(c).Result)
    fake:state{ begin_time = 2, end_time = 4 }
    assert.are.equal(0, send_sms(c).Result)
    fake:state{ begin_time = 22, end_time = 3 }          -- wraps midnight; 3 is outside
    assert.are.equal(901, send_sms(c).Result)
    assert.are.equal(2, fake:stats().window_errors)
    c:close()
  end)

  it("checks messages: 902, 320, 33, 316, 908, 5, 909, 22, 906", function()
    fake:state{ speed = 1000 }
    local c = connect()
    assert.are.equal(902, send_sms(c).Result)
    c:close()
    c = bound()
    assert.are.equal(0, send_sms(c, { UserMsgId = "dup", UserMsgSubId = "1" }).Result)
    assert.are.equal(320, send_sms(c, { UserMsgId = "dup", UserMsgSubId = "1" }).Result)
    assert.are.equal(0, send_sms(c, { UserMsgId = "dup", UserMsgSubId = "2" }).Result)
    assert.are.equal(33, send_sms(c, { PhoneNo = "123" }).Result)
    assert.are.equal(316, send_sms(c, { CallbackNo = "0299998888" }).Result)
    assert.are.equal(908, send_sms(c, { Message = string.rep("가", 46) }).Result)
    assert.are.equal(0, send_sms(c, { Message = string.rep("가", 45) }).Result)
    assert.are.equal(0, send_sms(c, { MsgType = 6, Subject = "s", Message = string.rep("가", 46) }).Result)
    assert.are.equal(5, send_sms(c, { MsgType = 5 }).Result)
    assert.are.equal(909, send_sms(c, { FileCount = 1 }).Result)
    assert.are.equal(22, send_sms(c, { MsgType = 7, KakaoTemplateCode = "T1" }).Result)
    fake:state{ balance = 0 }
    local res = send_sms(c)
    assert.are.equal(906, res.Result)
    assert.are.equal("보유 금액 부족", res.ResultMessage)
    c:close()
  end)

  it("pushes a report, re-pushes it on the next bind when not acknowledged", function()
    fake:state{ report_delay_ms = 10, report_user_id = true }
    local c = bound()
    assert.are.equal(0, send_sms(c, { UserMsgId = "r1" }).Result)
    local r = c:expect("ReportReq")
    assert.are.equal("r1", r.UserMsgId)
    assert.are.equal("test001", r.UserId)
    assert.is_string(r.ResultMessage)
    c:close()                                           -- never acknowledged
    wait_until("closed", 2, function() return fake:stats().open == 0 end)
    assert.are.equal("pending", fake:reports()[1].status)
    c = bound()
    local again = c:expect("ReportReq")
    assert.are.equal(r.ServerMsgId, again.ServerMsgId)
    c:send("ReportRes", { UserMsgId = "r1", UserMsgSubId = "", ServerMsgId = again.ServerMsgId, Result = 0 })
    wait_until("ack", 2, function() return fake:stats().reports_acked == 1 end)
    local st = fake:stats()
    assert.are.equal(2, st.reports_pushed)
    assert.are.equal(1, st.reports_repushed)
    assert.are.equal("acked", fake:reports()[1].status)
    c:close()
  end)

  it("uploads a JPEG in Base64 chunks and sends it as an MMS", function()
    local c = bound()
    local jpeg = "\255\216\255\224" .. string.rep("x", 5000) .. "\255\217"
    c:send("UploadFileNameReq", { FileExtension = ".jpg" })
    local name = c:expect("UploadFileNameRes")
    assert.are.equal(0, name.Result)
    assert.matches("^%x+%.jpg$", name.FileName)
    local pos, method = 1, "UploadFileReq"
    while pos <= #jpeg do
      c:send(method, { Data = core.b64encode(jpeg:sub(pos, pos + 2999)) })
      assert.are.equal(0, c:expect("UploadFileRes").Result)
      pos, method = pos + 3000, "UploadFileDataReq"     -- both names are accepted
    end
    c:send("UploadFileFinishReq", { FileName = name.FileName, FileSize = #jpeg })
    assert.are.equal(0, c:expect("UploadFileFinishRes").Result)
    assert.are.equal(0, send_sms(c, { MsgType = 6, Subject = "mms", FileCount = 1,
                                      FileType1 = "IMG", FileName1 = name.FileName }).Result)
    assert.are.equal(16, send_sms(c, { MsgType = 6, FileCount = 1, FileType1 = "IMG",
                                       FileName1 = "nope.jpg" }).Result)
    assert.are.equal(909, send_sms(c, { MsgType = 6, FileCount = 4 }).Result)
    -- not a JPEG; a chunk over 4096 Base64 characters
    c:send("UploadFileNameReq", { FileExtension = ".jpg" })
    name = c:expect("UploadFileNameRes")
    c:send("UploadFileReq", { Data = core.b64encode("GIF89a") })
    c:expect("UploadFileRes")
    c:send("UploadFileFinishReq", { FileName = name.FileName, FileSize = 6 })
    assert.are.equal(911, c:expect("UploadFileFinishRes").Result)
    c:send("UploadFileNameReq", { FileExtension = ".jpg" })
    c:expect("UploadFileNameRes")
    c:send("UploadFileReq", { Data = core.b64encode(string.rep("y", 3075)) })
    assert.are.equal(910, c:expect("UploadFileRes").Result)
    assert.are.equal(1, fake:stats().uploads)
    c:close()
  end)

  it("pushes SpamReq and ChangePhoneReq and records their answers", function()
    local c = bound()
    assert(fake:push("SpamReq", { PhoneNo = "01000000000", DenyNo = "0800000000" }))
    local spam = c:expect("SpamReq")
    c:send("SpamRes", { SpamId = spam.SpamId, PhoneNo = spam.PhoneNo, DenyNo = spam.DenyNo, Result = 0 })
    assert(fake:push("ChangePhoneReq", {}))
    local change = c:expect("ChangePhoneReq")
    assert.are.equal("01012345678", change.ChangePhoneNo)
    c:send("ChangePhoneRes", { ServerMsgId = change.ServerMsgId, PhoneNo = change.PhoneNo,
                               ChangePhoneNo = change.ChangePhoneNo, Result = 0 })
    wait_until("acks", 2, function()
      local st = fake:stats()
      return st.spam_acked == 1 and st.change_acked == 1
    end)
    c:close()
    wait_until("closed", 2, function() return fake:stats().open == 0 end)
    local ok, err = fake:push("SpamReq", {})
    assert.is_nil(ok)
    assert.matches("no bound", err)
  end)

  it("encrypts every body after PrivateKeyReq, and unbinds", function()
    local c = connect()
    c:send("PrivateKeyReq")
    local k = c:expect("PrivateKeyRes")
    assert.are.same({ Result = 0, PrivateKey = PKEY }, k)
    assert.are.equal(0, c:bind(nil, PKEY).Result)
    c:send("MsgSendReq", sms({ UserMsgId = "e1" }), PKEY)
    local res = c:expect("MsgSendRes", PKEY)
    assert.are.equal("e1", res.UserMsgId)
    assert.are.equal(0, res.Result)
    assert.are.equal("e1", c:expect("ReportReq", PKEY).UserMsgId)
    c:send("MsgSendReq", sms())                             -- a plain body is refused
    assert.is_true(c:closed())
    assert.are.equal(1, fake:stats().protocol_errors)
    c = bound()
    c:send("UnBindReq", enc({ BindId = "test001" }, KEY))
    assert.are.equal(0, c:expect("UnBindRes", KEY).Result)
    assert.is_true(c:closed())
    assert.are.equal(1, fake:stats().unbinds)
  end)

  it("closes a connection silent for idle_timeout", function()
    fake:state{ idle_timeout = 0.3 }
    local c = bound()
    local t0 = socket.gettime()
    assert.is_true(c:closed(3))
    assert.is_true(socket.gettime() - t0 >= 0.25)
    assert.are.equal(1, fake:stats().idle_closed)
  end)

  describe("faults", function()
    it("closes on a frame that is not Content-Length framed, or a zlib bomb", function()
      local c = connect()
      c:raw("GET / HTTP/1.1\r\n\r\n")
      assert.is_true(c:closed())
      c = connect()
      local s, parts = zlib.deflate(9), {}
      for i = 1, 4 do parts[i] = s(string.rep("\0", 1048576)) end
      parts[5] = s("", "finish")
      local z = table.concat(parts)
      c:raw("Content-Length:" .. #z .. "\r\n" .. z)
      assert.is_true(c:closed())
      local recs = fake:requests()
      assert.are.equal(2, fake:stats().protocol_errors)
      assert.matches("bomb", recs[2].error)
    end)

    it("splits an answer into single bytes, or sends several in one write", function()
      local c = bound()
      fake:state{ write_mode = "bytes" }
      local w0 = fake:stats().writes
      c:send("AliveReq")
      local _, raw = c:read()
      assert.truthy(raw)
      assert.is_true(fake:stats().writes - w0 >= #raw)
      fake:state{ write_mode = "coalesce", reports = false }
      w0 = fake:stats().writes
      c:raw(frame(cjson.encode({ Header = { Method = "MsgSendReq" }, Body = sms() }))
            .. frame(cjson.encode({ Header = { Method = "MsgSendReq" }, Body = sms() }))
            .. frame('{"Header":{"Method":"AliveReq"}}'))
      c:expect("MsgSendRes"); c:expect("MsgSendRes"); c:expect("AliveRes")
      assert.are.equal(1, fake:stats().writes - w0)
      c:close()
    end)

    it("drops the connection after N received or N sent frames", function()
      fake:state{ drop_after_received = 2 }
      local c = connect()
      c:send("AliveReq"); c:expect("AliveRes")
      c:send("AliveReq")
      assert.is_true(c:closed())
      fake:state{ drop_after_received = false, drop_after_sent = 2 }
      c = bound()
      c:send("AliveReq"); c:expect("AliveRes")
      assert.is_true(c:closed())
      assert.are.equal(2, fake:stats().dropped)
    end)

    it("cuts an answer mid-frame, stays silent, sends garbage or a bomb", function()
      local c = bound()
      fake:script{ method = "AliveReq", fault = "half", times = 1 }
      c:send("AliveReq")
      local closed, partial = c:closed()
      assert.is_true(closed)
      assert.matches("^Content%-Length:%d+\r\n", partial)
      c = bound()
      fake:script{ { method = "AliveReq", fault = "silent", times = 1 },
                   { method = "AliveReq", fault = "garbage", times = 1 },
                   { method = "AliveReq", fault = "bomb", times = 1 } }
      c:send("AliveReq")
      local msg, err = c:read(0.3)
      assert.is_nil(msg)
      assert.are.equal("timeout", err)
      c:send("AliveReq")
      c.sock:settimeout(2)
      local line = c.sock:receive("*l")
      local n = tonumber(line:match("(%d+)$"))
      assert.is_false(pcall(zlib.inflate(), c.sock:receive(n)))
      c:send("AliveReq")
      c.sock:settimeout(10)          -- the fake deflates 64 MiB for its first bomb
      line = c.sock:receive("*l")
      n = tonumber(line:match("(%d+)$"))
      local z = c.sock:receive(n)
      assert.is_true(#zlib.inflate()(z) > 32 * 1048576)
      c:send("AliveReq")                                 -- the scripts are used up
      c:expect("AliveRes")
      c:close()
    end)

    it("delays answers and forces a Result for the next N MsgSendReq", function()
      local c = bound()
      fake:script{ { method = "MsgSendReq", result = 11, result_message = "slow down", times = 2 },
                   { method = "AliveReq", latency_ms = 200, times = 1 } }
      local a = send_sms(c)
      assert.are.equal(11, a.Result)
      assert.are.equal("slow down", a.ResultMessage)
      assert.are.equal(11, send_sms(c).Result)
      assert.are.equal(0, send_sms(c).Result)
      assert.are.equal(2, fake:stats().speed_errors)
      local t0 = socket.gettime()
      c:send("AliveReq")
      c:expect("AliveRes")
      assert.is_true(socket.gettime() - t0 >= 0.19)
      c:close()
    end)

    it("writes hostile frames before an answer, or instead of it, and sends them on request", function()
      local c = bound()
      fake:script{ { method = "AliveReq", times = 1, frames = {
                     { method = "UploadFileRes", body = { Result = "x" } },
                     { method = "BindRes", body = { Result = 0 }, encrypt = true },
                     { method = "BindRes", plain = "{not json" } } },
                   { method = "AliveReq", fault = "silent", times = 1, frames = { { raw = "Content-Length:7\r\n" } } } }
      c:send("AliveReq")
      local m = c:read()
      assert.are.equal("UploadFileRes", m.Header.Method)
      assert.are.same({ Result = "x" }, m.Body)
      assert.are.same({ Result = 0 }, dec(c:read().Body, KEY))
      m = c:read()
      assert.are.equal("{not json", core.aes128cbc_decrypt(core.b64decode(m.Body), KEY, IV))
      c:expect("AliveRes")                               -- and then the answer
      c:send("AliveReq")
      c.sock:settimeout(2)
      assert.are.equal("Content-Length:7", c.sock:receive("*l"))
      local msg, err = c:read(0.3)                       -- silent: no answer after it
      assert.is_nil(msg)
      assert.are.equal("timeout", err)
      c:close()
      c = bound()
      fake:control("POST", "send", { frames = { { method = "ReportReq", body = { UserMsgId = { 1 } } } } })
      m = c:read()
      assert.are.equal("ReportReq", m.Header.Method)
      assert.are.same({ UserMsgId = { 1 } }, m.Body)
      c:close()
      assert.has_error(function() fake:script{ frames = {} } end)
      assert.has_error(function() fake:script{ frames = { { body = {} } } } end)
      assert.has_error(function() fake:script{ frames = { { method = "X", colour = 1 } } } end)
      assert.has_error(function() fake:script{ frames = { { raw_hex = "zz" } } } end)
    end)

    it("drips an answer one byte per drip_ms, and announces 4 GiB with huge_length", function()
      local c = bound()
      fake:state{ drip_ms = 20 }
      fake:script{ { method = "AliveReq", fault = "drip", times = 1 },
                   { method = "AliveReq", fault = "huge_length", times = 1 } }
      local t0 = socket.gettime()
      c:send("AliveReq")
      local _, raw = c:read(5)
      local took = socket.gettime() - t0
      assert.is_true(took >= #raw * 0.02 * 0.8, ("%d bytes in %.2f s"):format(#raw, took))
      c:send("AliveReq")
      c.sock:settimeout(2)
      assert.are.equal("Content-Length:4294967295", c.sock:receive("*l"))
      local msg, err = c:read(0.3)
      assert.is_nil(msg)
      assert.are.equal("timeout", err)
      c:close()
    end)

    it("refuses unknown script fields and state keys", function()
      assert.has_error(function() fake:script{ fault = "explode" } end)
      assert.has_error(function() fake:script{ path = "/x" } end)
      assert.has_error(function() fake:state{ no_such_key = 1 } end)
    end)
  end)
end)
