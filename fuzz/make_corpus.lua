-- fuzz/make_corpus.lua: writes the seed corpora of every harness and
-- mutation target, so no binary blob is committed.
--
--   lua5.4 fuzz/make_corpus.lua [OUT]     (OUT: build/fuzz/corpus)
--   lua5.4 fuzz/make_corpus.lua --record  (re-records fuzz/seeds/ from the fakes)
--
-- Sources: the document's OneShot frames (spec/data/oneshot_doc_frames.json,
-- a copy of shared/vectors), frames built the way the OneShot fake builds
-- them (its key and IV), the provider answers recorded from the fakes
-- (fuzz/seeds/<target>/, small text files, made by --record), and a few
-- inputs written here for what the fakes never send. Runs from the
-- repository root with LUA_PATH/LUA_CPATH set as for the specs.

local core = require "ksms.core"
local cjson = require "cjson"

local char, format, rep, pack = string.char, string.format, string.rep, string.pack

local OUT = arg[1] ~= "--record" and arg[1] or "build/fuzz/corpus"
local FAKE_KEY, FAKE_IV = "ksms-oneshot-key", "ksms-oneshot-iv!" -- spec/fakes/oneshot.lua

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function mkdir(dir) assert(os.execute("mkdir -p '" .. dir .. "'")) end

local writers = {}
local function writer(dir)
  if writers[dir] then return writers[dir] end
  mkdir(dir)
  local n = 0
  writers[dir] = function(data, name)
    n = n + 1
    local f = assert(io.open(format("%s/%s", dir, name or format("seed-%03d", n)), "wb"))
    f:write(data)
    f:close()
  end
  return writers[dir]
end

local function doc_frames()
  return cjson.decode(read("spec/data/oneshot_doc_frames.json")).frames
end

local function wire_of(v)
  return format("Content-Length:%d\r\n", v.content_length) .. assert(core.unhex(v.zlib_hex))
end

local function str8(s) -- the harnesses' length-prefixed string (fz_str)
  s = s:sub(1, 255)
  return char(#s) .. s
end

-- ---- --record: provider answers from the fakes -----------------------------

local function record()
  package.path = "spec/?.lua;" .. package.path
  local fake_control = require "fake_control"
  local ksms = require "ksms"
  local function recorder(dir)
    local put = writer(dir)
    local real = require("ksms.transport").new { kind = "curl", timeout = 10 }
    return {
      request = function(_, req)
        local res, err = real:request(req)
        if res then put(res.body, nil) end
        return res, err
      end,
      request_many = function(_, reqs)
        local outs = {}
        for i, r in ipairs(reqs) do outs[i] = (real:request(r)) end
        for _, o in ipairs(outs) do if o.body then put(o.body) end end
        return outs
      end,
      close = function() real:close() end,
    }
  end
  local sms = { from = "02-1234-5678", to = "010-1111-2222", text = "안녕하세요 ksms" }
  local lms = { from = "02-1234-5678", to = "010-1111-2222", subject = "제목", text = rep("가나다라", 40) }
  local raw = writer("fuzz/seeds/http1")
  local function raw_answer(fake, path, body)
    local sock = assert(fake_control.connect(fake.port, 10, fake.tls))
    sock:send("POST " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
      .. "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    local data = sock:receive("*a")
    sock:close()
    raw(data)
  end

  for _, p in ipairs { "senders", "messageme" } do
    local fake = fake_control.start(p)
    local c = ksms.client(p, { api_key = "test-" .. p .. "-key", base_url = fake.base_url,
      transport = recorder("fuzz/seeds/" .. p) })
    c:send(sms); c:send(lms); c:send { from = "02-9999-9999", to = "010-1111-2222", text = "x" }
    c:balance()
    local bad = ksms.client(p, { api_key = "wrong", base_url = fake.base_url, transport = recorder("fuzz/seeds/" .. p) })
    bad:send(sms)
    raw_answer(fake, p == "senders" and "/APIV2/sms_send" or "/APIV2/API/sms_send", "api_key=test-" .. p .. "-key&msg=hi")
    fake:stop()
  end
  do
    local fake = fake_control.start("ppurio")
    local c = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key",
      base_url = fake.base_url, transport = recorder("fuzz/seeds/ppurio") })
    local r = c:send(sms)
    c:send(lms)
    if r then c:report(r.cmid) end
    c:report("nosuchcmid")
    c:sender_numbers()
    c:register_sender("0312345678", "fuzz seed")
    raw_answer(fake, "/ppurio/1/message/sms/ksmstest", "send_phone=0212345678")
    fake:stop()
  end
  do
    local fake = fake_control.start("cafe24")
    local o = { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = fake.base_url,
      history_url = fake.history_url }
    o.transport = recorder("fuzz/seeds/cafe24")
    local c = ksms.client("cafe24", o)
    c:send(sms); c:send(lms); c:balance(); c:sender_numbers()
    o.transport = recorder("fuzz/seeds/cafe24_history")
    local h = ksms.client("cafe24", o)
    h:history { days = 1, count = 10 }
    h:history { days = 1, count = 10, kind = "lms" }
    o.secure_key = "wrong"
    ksms.client("cafe24", o):history { days = 1 }
    raw_answer(fake, "/sms_sender.php", "user_id=x")
    fake:stop()
  end
  print("recorded under fuzz/seeds/")
end

if arg[1] == "--record" then return record() end

-- ---- the C harnesses ---------------------------------------------------------

local frames = doc_frames()

do -- fuzz_frame: [max_frame][max_payload][split seed][mode] stream
  local put = writer(OUT .. "/frame")
  local all = {}
  for i, v in ipairs(frames) do
    all[i] = wire_of(v)
    put("\128\128" .. char(i) .. "\0" .. wire_of(v))
  end
  put("\128\128\7\0" .. table.concat(all))
  put("\128\128\3\0" .. table.concat(all, "", 1, 3) .. "Content-Length:5\r\nxxxxx")
  put("\4\2\9\0" .. table.concat(all)) -- small limits
  local records = {}
  for i, v in ipairs(frames) do records[i] = "\0" .. str8(v.json) end
  put("\128\128\5\1" .. table.concat(records))
  put("\128\128\5\1" .. "\3" .. str8(frames[2].json) .. "\2" .. str8(frames[3].json) .. "\1" .. str8("garbage"))
end

do -- fuzz_inflate: [max_out u16 le] zlib bytes
  local put = writer(OUT .. "/inflate")
  for _, v in ipairs(frames) do
    local z = assert(core.unhex(v.zlib_hex))
    put("\255\255" .. z)
    put(pack("<I2", #v.json // 16) .. z) -- the limit near the real size
  end
  put("\255\255" .. core.deflate(rep("a", 5000), 9)) -- a small bomb
end

do -- fuzz_resp: [max_bytes][split seed][mode] stream, or (mode odd) length-prefixed arguments
  local put = writer(OUT .. "/resp")
  local replies = table.concat { "+OK\r\n", ":42\r\n", "$5\r\nhello\r\n", "$-1\r\n", "-ERR bad\r\n",
    "*-1\r\n", "*0\r\n", "*3\r\n$3\r\nfoo\r\n:1\r\n*2\r\n$-1\r\n-WRONGTYPE x\r\n" }
  put("\128\7\0" .. replies)
  put("\16\3\0" .. replies)
  put("\128\1\0" .. string.rep("*1\r\n", 9) .. ":1\r\n")
  put("\4\5\0" .. "$99999999999\r\nabc")
  put("\2\5\0" .. "*2147483647\r\n" .. string.rep(":1\r\n", 20))
  put("\128\9\1" .. str8("SET") .. str8("key") .. str8("va\r\nlue\0"))
  put("\128\9\1" .. str8("EVALSHA") .. str8(string.rep("a", 40)) .. str8("1") .. str8("") .. str8("\255"))
end

do -- fuzz_base64, fuzz_hex
  local b64, hex = writer(OUT .. "/base64"), writer(OUT .. "/hex")
  for _, v in ipairs(frames) do
    hex(v.zlib_hex)
    local body = cjson.decode(v.json).Body
    if type(body) == "string" then b64(body) end
  end
  b64(core.b64encode("1")); b64(core.b64encode("ksmstest")); b64(core.b64encode("가나다"))
  b64("QUJD+/=="); b64("Zg=="); b64("Zm8=")
  hex("00ff7F80"); hex("DEADbeef")
end

do -- fuzz_aes: key(16) iv(16) ciphertext
  local put = writer(OUT .. "/aes")
  local key = FAKE_KEY:sub(1, 16)
  for _, plain in ipairs { '{"Result":0,"BindId":"test001","Speed":10}', "", rep("x", 16), "가" } do
    put(key .. FAKE_IV .. core.aes128cbc_encrypt(plain, key, FAKE_IV))
  end
end

do -- fuzz_text
  local put = writer(OUT .. "/text")
  for _, s in ipairs { "SMS 테스트 메시지 ", "됬", "이번 주 할인 😀", "abc", "日本語 Ελληνικά",
                       "\u{FFFD}\u{00A0}\u{3000}", rep("가", 120), "\xed\xa0\x80", "\xc0\xaf" } do
    put(s)
  end
end

do -- fuzz_json: [keys-1][mode] keys method then per key [type][value]
  local put = writer(OUT .. "/json")
  local function seed(mode, keys, method, values, strbody)
    local t = { char(#keys - 1), char(mode) }
    for _, k in ipairs(keys) do t[#t + 1] = str8(k) end
    t[#t + 1] = str8(method)
    if mode == 2 then t[#t + 1] = str8(strbody) end
    for _, v in ipairs(values) do t[#t + 1] = v end
    put(table.concat(t))
  end
  local S = function(s) return "\1" .. str8(s) end
  local I = function(i) return "\2" .. pack(">i8", i) end
  local F = function(d) return "\3" .. pack(">d", d) end
  local keys = { "UserMsgId", "UserMsgSubId", "MsgType", "PhoneNo", "Message", "KakaoTimeout", "Rate" }
  local vals = { S"80", S"", I(4), S"01091874302", S"SMS 테스트 메시지 \"q\" \\ /\n", I(0), F(0.1) }
  seed(0, keys, "", vals)
  seed(1, keys, "MsgSendReq", vals)
  seed(2, { "x" }, "BindReq", {}, "QUJD+/==")
  seed(3, { "x" }, "AliveReq", {})
  seed(0, { "a", "b", "c", "d" }, "", { "\4", "\5", "\6", F(1e300) })
end

do -- fuzz_form: [mode] ...
  local put = writer(OUT .. "/form")
  local function item(s) return "\0" .. str8(s) end
  put("\0\3" .. item("api_key") .. item("test-key") .. item("msg") .. item("안녕 hi&=+%")
    .. item("dstaddr") .. item("01011112222|01033334444"))
  put("\0\1" .. "\6" .. str8("a") .. "\7" .. str8("b"))
  local function part(kind, name, content, filename, ctype)
    local t = { char(kind), str8(name), str8(content) }
    if kind & 2 ~= 0 then t[#t + 1] = str8(filename) end
    if kind & 4 ~= 0 then t[#t + 1] = str8(ctype) end
    return table.concat(t)
  end
  put("\1\2" .. part(1, "send_phone", "0212345678") .. part(6, "file", "\255\216\255\224JFIF", "a.jpg", "image/jpeg"))
  put("\3" .. str8("ksms-fixed-boundary") .. "\1" .. part(0, "data", "--ksms-fixed-boundary"))
end

do -- fuzz_headers: raw header blocks
  local put = writer(OUT .. "/headers")
  put("Content-Type: application/json\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\n")
  put("X-A: 1\r\nx-a: 2\r\nX-Folded: first\r\n  second\r\n\tthird\r\n\r\n")
  put("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nEmpty:\r\n: novalue\r\nnocolon\r\n\r\n")
end

do -- fuzz_sequence: [op][len][bytes]...
  local put = writer(OUT .. "/sequence")
  local z = core.unhex(frames[2].zlib_hex)
  put("\0" .. str8(z) .. "\11" .. str8("hello") .. "\1" .. str8(wire_of(frames[3])) .. "\11" .. str8("world"))
  put("\2" .. str8("{\"Header\":{\"Method\":\"AliveReq\"}}") .. "\11" .. str8("x") .. "\3" .. str8("abc"))
  put("\6" .. str8(rep("a", 32)) .. "\11" .. str8("after aes") .. "\8" .. str8("deflate me"))
end

-- ---- the Lua mutation targets ------------------------------------------------

local function lua_writer(target)
  local put = writer(OUT .. "/lua/" .. target)
  -- what was recorded from the fakes
  local p = io.popen("ls fuzz/seeds/" .. target .. " 2>/dev/null")
  for name in p:lines() do put(read("fuzz/seeds/" .. target .. "/" .. name), "rec-" .. name) end
  p:close()
  return put
end

do -- the provider answers: the first line names the operation
  local ops = {
    senders = { "send", "balance" }, messageme = { "send", "balance", "alimtalk" },
    ppurio = { "send", "report", "register", "numbers" }, cafe24 = { "send", "balance", "numbers" },
    cafe24_history = { "history" },
  }
  for target, list in pairs(ops) do
    local put = writer(OUT .. "/lua/" .. target)
    local p = io.popen("ls fuzz/seeds/" .. target .. " 2>/dev/null")
    for name in p:lines() do
      local body = read("fuzz/seeds/" .. target .. "/" .. name)
      for _, op in ipairs(list) do put(op .. "\n" .. body, format("%s-%s", op, name)) end
    end
    p:close()
  end
  local put = writer(OUT .. "/lua/cafe24")
  put("send\nsuccess,123"); put("send\nreserved,99"); put("send\nTest Success!"); put("send\n-102")
  put("balance\n  4821\n"); put("balance\n-101")
  local hist = writer(OUT .. "/lua/cafe24_history")
  hist('history\n<?xml version="1.0" encoding="UTF-8"?><result><code>0000</code><data><record>'
    .. "<sendType>R</sendType><sendPhone>02-1234-5678</sendPhone><receivePhone>010-1111-2222</receivePhone>"
    .. "<msg>안녕 &amp; bye</msg><sendDateTime>20250101120000</sendDateTime><sendStatus>3</sendStatus>"
    .. "<refundDate></refundDate></record></data></result>")
  hist('history\n<?xml version="1.0" encoding="EUC-KR"?><result><code>0000</code></result>')
  hist("history\n<result><msg>&undefined;</msg></result>")
  local ppurio = writer(OUT .. "/lua/ppurio")
  ppurio('report\n{"result_code":"200","call_status":"4100","dest_phone":"01011112222","report_time":"20250101","umid":"a1"}')
  ppurio('numbers\n{"result_code":"200","numberList":[{"sendnumber":"0212345678","comment":"x"},"bad"]}')
  local sd = writer(OUT .. "/lua/senders")
  sd('send\n{"result":"100"}'); sd('send\n{"result":100}'); sd('balance\n{"remainCoin":"1234.5"}')
end

do -- MessageMe's MO webhook: the form the fake posts (spec/fakes/messageme.lua)
  package.path = "spec/?.lua;spec/fakes/?.lua;" .. package.path
  local mm = require "fakes.messageme"
  local forms = require "fakes.forms"
  local put = writer(OUT .. "/lua/messageme_mo")
  for _, fields in ipairs {
    { msg = "안녕하세요", phone = "01012345678" },
    { msg = rep("가", 60), phone = "010-1234-5678" },
    { msg = "사진", phone = "01012345678", fileloc1 = "/upload/a.jpg", fileloc2 = "http://x.example/b.jpg",
      fileloc3 = "//cdn.example/c.jpg", fileloc4 = "img.example.com/d.jpg" },
    { msg = "x", phone = "01012345678", subject = "제목" },
  } do
    put(forms.encode(mm.mo_fields(fields)))
  end
  put("msg=a&msg=b&phone=01012345678&phone=01099998888&subject&subject=s")
end

do -- HTTP/1.1 responses, beside what was recorded
  local put = lua_writer("http1")
  put("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"result\":\"100\"}")
  put("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
  put("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
  put("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nX-Folded: a\r\n b\r\n\r\nabc")
  put("HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\nboom")
  put("HTTP/1.1 204 No Content\r\n\r\n")
  put("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n")
end

do -- CSV files as the CLI reads them
  local put = lua_writer("csv")
  put("\239\187\191to,name,text\r\n010-1111-2222,홍길동,\"안녕, \"\"반가워요\"\"\"\r\n\r\n01033334444,김철수,\"두 줄\n메시지\"\n")
  put('a,b,c\n1,,3\n"",x,""\n"unterminated\n')
  put('x\n"a""b""c",d\n,\n"ends",\n')
end

do -- OneShot: scripts of what the server sends and what the client does
  local key16 = FAKE_KEY:sub(1, 16)
  local function enc(body)
    return core.b64encode(core.aes128cbc_encrypt(cjson.encode(body), key16, FAKE_IV))
  end
  local function msg(method, body)
    return "> " .. cjson.encode(body == nil and { Header = { Method = method } }
      or { Header = { Method = method }, Body = body })
  end
  local bind = '> {"Header":{"Method":"BindRes"},"Body":{"Result":0,"BindId":"test001","Speed":50,'
    .. '"BeginTime":0,"EndTime":24,"EffectiveTime":3}}'
  local put = writer(OUT .. "/lua/oneshot_protocol")
  local function res(id, result)
    return msg("MsgSendRes", { UserMsgId = id, UserMsgSubId = "", PhoneNo = "01011112222", MsgType = 4,
      Result = result, UserData = "", ResultMessage = "ok" })
  end
  put(table.concat({ bind, "submit 3", "poll +1", res("M1", 0), res("M2", 903), "poll +1", res("M2", 0),
    res("M3", 320),
    msg("ReportReq", { UserMsgId = "M1", UserMsgSubId = "", ServerMsgId = "S1", MsgType = 4,
      PhoneNo = "01011112222", Result = 0, Telecom = "SKT", DeliveryTime = "20250101120000", UserData = "" }),
    "ack", msg("SpamReq", { SpamId = "1", PhoneNo = "01011112222", DenyNo = "0801234567" }),
    msg("ChangePhoneReq", { ServerMsgId = "S2", PhoneNo = "01011112222", ChangePhoneNo = "01022223333" }),
    "ack", msg("AliveReq"), "poll +30", msg("AliveRes"), "close", msg("UnBindRes", { Result = 0 }) }, "\n"))
  put(table.concat({ bind, "upload 4000", "poll +1", msg("UploadFileNameRes", { Result = 0, FileName = "f1.jpg" }),
    msg("UploadFileRes", { Result = 0 }), msg("UploadFileRes", { Result = 0 }), msg("UploadFileRes", { Result = 0 }),
    msg("UploadFileFinishRes", { Result = 0 }), "submit 1", "poll +1", res("M1", 0) }, "\n"))
  put(table.concat({ bind, "submit 5", "poll +1", res("M1", 0), "disconnect", bind, "poll +1", res("M3", 0),
    "poll +40", "poll +40" }, "\n"))
  put(table.concat({ "> " .. cjson.encode { Header = { Method = "BindRes" }, Body = enc { Result = 0, Speed = 5 } },
    "submit 2", "poll +1", res("M1", 0), res("M1", 0), res("M9", 0) }, "\n"))
  put(table.concat({ '> {"Header":{"Method":"BindRes"},"Body":"not base64 at all"}', "submit 1", "poll +11" }, "\n"))
  put(table.concat({ bind, '> {"Header":{"Method":"BindRes"},"Body":{"Result":1}}', "> {not json", "poll +1" }, "\n"))
  put(table.concat({ "#encrypted",
    msg("PrivateKeyRes", { Result = 0, PrivateKey = "ksms-private-key" }),
    "> " .. cjson.encode { Header = { Method = "BindRes" },
      Body = core.b64encode(core.aes128cbc_encrypt(cjson.encode { Result = 0, Speed = 10 }, "ksms-private-key", FAKE_IV)) },
    "submit 1", "poll +1" }, "\n"))
  put(">raw " .. core.hex("Content-Length:5\r\nhello") .. "\nsubmit 1\npoll +1")
end

print("corpora written under " .. OUT)
