-- fakes2_spec.lua - the fake ppurio and Cafe24 servers (spec/fakes/) behave
-- as their documents say (seeds/001, seeds/003), Cafe24 over HTTPS with a
-- certificate made here, its history on a second port, and the shared test
-- machinery (scripts, faults, records, reset, stop) works for them. The
-- fakes run as real processes under the interpreter the specs run under; this
-- spec talks to them with plain LuaSocket and LuaSec.
local socket = require "socket"
local ssl = require "ssl"
local fake_control = require "fake_control"
local json = require "fakes.json"
local forms = require "fakes.forms"
local korean = require "fakes.korean"
local base64 = require "fakes.base64"

---------------------------------------------------------------- helpers

local H = require "spec_helper"
local wait_until, merged, sorted_list = H.wait_until, H.merged, H.sorted_pairs

local read_response = require("spec_helper").read_response

local function jpeg(size)
  return "\255\216\255\224" .. ("j"):rep(size - 4)
end

local function kst_epoch(y, mo, d, h, mi, s)
  return korean.parse_kst(string.format("%04d|%02d|%02d|%02d|%02d|%02d", y, mo, d, h, mi, s or 0), "|")
end

---------------------------------------------------------------- ppurio

local PP_KEY = "test-ppurio-key"
local function pp_path(kind, client) return "/ppurio/1/message/" .. kind .. "/" .. (client or "ksmstest") end
local SAVE, LIST = "/ppurio/1/sendnumber/save/ksmstest", "/ppurio/1/sendnumber/list/ksmstest"
local PP_FORM = "application/x-www-form-urlencoded; charset=UTF-8"

local PP_REPORT_CODES = {
  "4100", "4421", "4426", "4425", "4400", "4401", "4402", "4410", "4422", "4427", "4405", "4423",
  "4412", "4411", "4428", "4404", "4413", "4414", "4424", "4403", "4430", "4431", "4432", "4433",
  "4434", "4435", "4436", "4420", "6670",
  "9903", "9904", "9082", "9083", "9023", "9905", "9010", "9011", "9012", "9013", "9014", "9020",
  "9021", "9022", "9080", "9214", "9311", "9908", "9090", "-1",
}
for c = 6600, 6633 do PP_REPORT_CODES[#PP_REPORT_CODES + 1] = tostring(c) end

describe("fake ppurio", function()
  local fake
  local SMS = { send_phone = "0212345678", dest_phone = "01011112222", msg_body = "안녕하세요 테스트" }

  -- POST to path with the key header (headers: overrides, false removes).
  local function post(path, list, headers)
    local h = merged({ ["Content-Type"] = PP_FORM, ["x-waple-authorization"] = PP_KEY }, headers)
    local res = assert(fake:request("POST", path, forms.encode(list), h))
    return res.status, json.decode(res.body), res
  end
  local function send(kind, overrides, headers)
    local status, answer = post(pp_path(kind), sorted_list(merged(SMS, overrides)), headers)
    assert.are.equal(200, status)
    return answer
  end
  local function code(kind, overrides) return send(kind, overrides).result_code end
  local function get(path, headers)
    local res = assert(fake:request("GET", path, "", merged({ ["x-waple-authorization"] = PP_KEY }, headers)))
    return res.status, json.decode(res.body), res
  end
  local function report(cmid)
    local status, answer = get(pp_path("report") .. "?cmid=" .. cmid)
    assert.are.equal(200, status)
    return answer
  end
  local function mms(fields, files)
    local parts = {}
    for _, f in ipairs(sorted_list(fields)) do parts[#parts + 1] = { name = f[1], data = f[2] } end
    for _, file in ipairs(files) do parts[#parts + 1] = file end
    local body, content_type = forms.build_multipart(parts)
    local res = assert(fake:request("POST", pp_path("mms"), body,
                                    { ["Content-Type"] = content_type, ["x-waple-authorization"] = PP_KEY }))
    return res.status, json.decode(res.body)
  end
  local function balance() return fake:state().balance end

  setup(function() fake = fake_control.start("ppurio") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("sends an SMS with 200 and a cmid in Korea time to the millisecond, and charges it", function()
    -- The fake's clock (gettimeofday): os.time() reads the coarse clock,
    -- which can still show the last second when the fake is in the next.
    local before = korean.format_kst(socket.gettime(), "")
    local answer = send("sms")
    local after = korean.format_kst(socket.gettime(), "")
    assert.are.equal("200", answer.result_code)
    assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", answer.cmid)
    assert.is_true(answer.cmid:sub(1, 14) >= before and answer.cmid:sub(1, 14) <= after)
    local res = select(3, post(pp_path("sms"), sorted_list(SMS)))
    assert.are.equal("application/json", res.headers["content-type"])
    assert.are.equal("*", res.headers["access-control-allow-origin"])
    assert.are.equal(100000 - 40, balance())
    local m = fake:state().messages
    assert.are.equal(2, #m)
    assert.are.equal("sms", m[1].kind)
    assert.are.same({ "01011112222" }, m[1].dest_phone)
    assert.is_true(m[2].cmid > m[1].cmid)                       -- unique and increasing
  end)

  it("takes recipients joined by commas, at most max_recipients of them", function()
    assert.are.equal("200", code("sms", { dest_phone = "01011112222,01033334444,0311234567" }))
    assert.are.equal(100000 - 60, balance())
    fake:state{ max_recipients = 2 }
    assert.are.equal("300", code("sms", { dest_phone = "01011112222,01033334444,0311234567" }))
    assert.are.equal("200", code("sms", { dest_phone = "01011112222,01033334444" }))
  end)

  it("sends an SMS over 90 bytes as an LMS, charged and reported as one", function()
    local answer = send("sms", { msg_body = ("가"):rep(45) })          -- 90 bytes: SMS
    assert.are.equal("4100", report(answer.cmid).call_status)
    answer = send("sms", { msg_body = ("가"):rep(45) .. "a" })         -- 91 bytes: LMS
    assert.are.equal("6600", report(answer.cmid).call_status)
    assert.are.equal("lms", fake:state().messages[2].kind)
    assert.are.equal(100000 - 20 - 50, balance())
  end)

  it("answers 100 for a wrong or missing key, another client id or a blocked account", function()
    assert.are.equal("100", send("sms", nil, { ["x-waple-authorization"] = "wrong" }).result_code)
    assert.are.equal("100", send("sms", nil, { ["x-waple-authorization"] = false }).result_code)
    local status, answer = post(pp_path("sms", "someoneelse"), sorted_list(SMS))
    assert.are.equal(200, status)
    assert.are.equal("100", answer.result_code)
    fake:state{ account_blocked = true }
    assert.are.equal("100", code("sms"))
    assert.are.equal(100000, balance())
  end)

  it("reads the key header whatever its case and records it lowercased", function()
    local body = forms.encode(sorted_list(SMS))
    local sock = socket.tcp()
    sock:settimeout(2)
    assert(sock:connect("127.0.0.1", fake.port))
    sock:send("POST " .. pp_path("sms") .. " HTTP/1.1\r\nHost: x\r\nContent-Type: " .. PP_FORM
              .. "\r\nX-Waple-AUTHORIZATION: " .. PP_KEY .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    local status, _, answer = read_response(sock)
    sock:close()
    assert.are.equal(200, status)
    assert.are.equal("200", json.decode(answer).result_code)
    local r = fake:requests()[1]
    assert.are.equal(PP_KEY, r.headers["x-waple-authorization"])
    assert.are.same(sorted_list(SMS), r.form)
  end)

  it("answers 300 for missing or malformed parameters", function()
    for _, overrides in ipairs({
      { send_phone = false }, { dest_phone = false }, { msg_body = false }, { msg_body = "" },
      { send_phone = "02-1234-5678" }, { dest_phone = "010-1111-2222" }, { dest_phone = "01011112222," },
      { dest_phone = "0101111" }, { send_name = ("가"):rep(16) }, { dest_name = ("a"):rep(32) },
      { send_time = "2099052917111" }, { send_time = "20990230171111" }, { send_time = "20200529171111" },
    }) do
      assert.are.equal("300", code("sms", overrides), json.encode(overrides))
    end
    assert.are.equal("200", code("sms", { send_name = ("가"):rep(15) .. "a", dest_name = ("a"):rep(31) }))
    assert.are.equal("300", code("lms", { subject = ("가"):rep(30) }))       -- 60 bytes
    assert.are.equal("200", code("lms", { subject = ("가"):rep(29) .. "a" }))
    assert.are.equal("300", code("lms", { msg_body = ("가"):rep(1000) }))    -- 2000 bytes
    assert.are.equal("200", code("lms", { msg_body = ("가"):rep(999) .. "a" }))
    assert.are.equal("300", code("sms", { msg_body = ("a"):rep(2000) }))
  end)

  it("takes send_time as 14 digits of Korea time, only in the future", function()
    local at = kst_epoch(2030, 1, 15, 10, 0, 0)
    fake:state{ now = at - 1 }
    local answer = send("sms", { send_time = "20300115100000" })
    assert.are.equal("200", answer.result_code)
    assert.are.equal(string.format("%d", at), report(answer.cmid).report_time)
    fake:state{ now = at }
    assert.are.equal("300", code("sms", { send_time = "20300115100000" }))
    assert.are.equal("200", code("sms", { send_time = "" }))                 -- empty: now
  end)

  it("answers 500 for a caller number that is not registered", function()
    assert.are.equal("500", code("sms", { send_phone = "0299998888" }))
    assert.are.equal("500", code("lms", { send_phone = "01099998888" }))
    fake:state{ senders = { "0299998888" } }
    assert.are.equal("200", code("sms", { send_phone = "0299998888" }))
  end)

  it("answers 600 when the balance is short: what it covers is sent, the rest listed", function()
    fake:state{ balance = 50 }
    local answer = send("sms", { dest_phone = "01011112222,01033334444,01055556666" })
    assert.are.equal("600", answer.result_code)
    assert.are.equal("잔금 부족[미발송 목록] 01055556666", answer.result_msg)
    assert.is_string(answer.cmid)
    assert.are.same({ "01011112222", "01033334444" }, fake:state().messages[1].dest_phone)
    assert.are.equal(10, balance())
    answer = send("sms")
    assert.are.equal("600", answer.result_code)
    assert.is_nil(answer.cmid)
    assert.are.equal("잔금 부족[미발송 목록] 01011112222", answer.result_msg)
    assert.are.equal(10, balance())
  end)

  it("answers 400 for a body it cannot read and when told the server fails", function()
    local status, answer = post(pp_path("sms"), sorted_list(SMS), { ["Content-Type"] = "application/json" })
    assert.are.equal(200, status)
    assert.are.equal("400", answer.result_code)
    fake:state{ server_error = true }
    assert.are.equal("400", code("sms"))
    assert.are.equal(100000, balance())
  end)

  it("refuses input no documented code covers with HTTP 400 and fake_error", function()
    local status, answer = post(pp_path("sms"), sorted_list(merged(SMS, { msg_body = "\176\161" })))
    assert.are.equal(400, status)
    assert.is_string(answer.fake_error)
    status, answer = mms(SMS, { { name = "file", filename = "a.txt", content_type = "text/plain", data = "hi" } })
    assert.are.equal(400, status)
    assert.matches("JPEG", answer.fake_error)
  end)

  it("sends an MMS with up to 3 JPEG files, recording the parts", function()
    local a, b = jpeg(20480), jpeg(20480)
    local status, answer = mms(merged(SMS, { subject = "사진" }), {
      { name = "file", filename = "a.jpg", content_type = "image/jpeg", data = a },
      { name = "file", filename = "b.JPEG", content_type = "image/jpeg", data = b } })
    assert.are.equal(200, status)
    assert.are.equal("200", answer.result_code)
    assert.are.equal("6600", report(answer.cmid).call_status)
    local r = fake:requests()[1]
    assert.are.equal(pp_path("mms"), r.path)
    assert.are.equal("a.jpg", r.multipart[#r.multipart - 1].filename)
    assert.are.equal(a, r.multipart[#r.multipart - 1].data)
    assert.are.equal(b, r.multipart[#r.multipart].data)
    local m = fake:state().messages[1]
    assert.are.equal("mms", m.kind)
    assert.are.same({ "a.jpg", 20480 }, { m.files[1].filename, m.files[1].size })
    assert.are.equal(100000 - 200, balance())
    status, answer = mms(SMS, {})                                             -- no file: still an MMS
    assert.are.equal("200", answer.result_code)
  end)

  it("answers 300 for an MMS over the document's file limits or not a JPEG", function()
    local function file(name, data) return { name = "file", filename = name, content_type = "image/jpeg", data = data } end
    local cases = {
      { file("a.jpg", jpeg(20481)) },                                          -- over 20 KB
      { file("a.jpg", jpeg(14000)), file("b.jpg", jpeg(14000)), file("c.jpg", jpeg(14000)) },  -- 42,000 in all
      { file("a.jpg", jpeg(100)), file("b.jpg", jpeg(100)), file("c.jpg", jpeg(100)), file("d.jpg", jpeg(100)) },
      { file("a.png", "\137PNG\r\n\26\n") }, { file("a.jpg", "GIF89a") },
    }
    for i, files in ipairs(cases) do
      local status, answer = mms(SMS, files)
      assert.are.equal(200, status)
      assert.are.equal("300", answer.result_code, "case " .. i)
    end
    local _, answer = mms(SMS, { file("a.jpg", jpeg(13653)), file("b.jpg", jpeg(13653)), file("c.jpg", jpeg(13654)) })
    assert.are.equal("200", answer.result_code)                                -- 40,960 in all
    assert.are.equal(100000 - 200, balance())
  end)

  it("reports the call_status the state sets, per cmid or by default", function()
    local sms, lms = send("sms").cmid, send("lms").cmid
    assert.are.same({ dest_phone = "01011112222", report_time = report(sms).report_time,
                      call_status = "4100", umid = "apisto_A" .. sms }, report(sms))
    assert.are.equal("6600", report(lms).call_status)
    fake:state{ reports = { [sms] = "4410" } }
    assert.are.equal("4410", report(sms).call_status)
    assert.are.equal("6600", report(lms).call_status)
    fake:state{ report_default = "9013" }
    assert.are.equal("9013", report(lms).call_status)
    for _, c in ipairs(PP_REPORT_CODES) do
      fake:state{ reports = { [sms] = c } }
      assert.are.equal(c, report(sms).call_status)
    end
  end)

  it("reports -1 for text outside KS C 5601, and report_time in either format", function()
    local at = kst_epoch(2030, 1, 15, 10, 0, 0)
    fake:state{ now = at }
    local cmid = send("sms", { msg_body = "됬다" }).cmid
    assert.are.equal("-1", report(cmid).call_status)
    cmid = send("lms", { msg_body = "ok", subject = "😀" }).cmid
    assert.are.equal("-1", report(cmid).call_status)
    assert.are.equal(string.format("%d", at), report(cmid).report_time)
    fake:state{ report_time_format = "kst14" }
    assert.are.equal("20300115100000", report(cmid).report_time)
  end)

  it("answers 300 for a report without a cmid or with an unknown one, 100 without the key", function()
    local status, answer = get(pp_path("report"))
    assert.are.same({ 200, { result_code = "300" } }, { status, answer })
    assert.are.same({ result_code = "300" }, report("20990101000000000"))
    local cmid = send("sms").cmid
    status, answer = get(pp_path("report") .. "?cmid=" .. cmid, { ["x-waple-authorization"] = "x" })
    assert.are.same({ result_code = "100" }, answer)
  end)

  it("registers caller numbers by the document's rules and lists them", function()
    local function save(n, comment)
      local list = { { "sendnumber", n } }
      if comment ~= false then list[2] = { "comment", comment or "케이티하이텔 대표번호" } end
      local status, answer = post(SAVE, list)
      assert.are.equal(200, status)
      return answer
    end
    assert.are.same({ result_code = "200", sendnumber = "0232892888" }, save("0232892888"))
    assert.are.same({ result_code = "500", sendnumber = "0232892888" }, save("0232892888"))
    for _, n in ipairs({ "15881234", "16001234", "18001234", "0311234567", "01098765432", "07012345678",
                         "021234567" }) do
      assert.are.equal("200", save(n).result_code, n)
    end
    for _, n in ipairs({ "0215881234", "03115881234", "1588123", "158812345", "02-1234-5678", "0801234567",
                         "0101234", "123456789", "0991234567", "060123456789" }) do
      assert.are.equal("300", save(n).result_code, n)
    end
    assert.are.equal("300", save("0234567890", false).result_code)
    assert.are.equal("300", save("0234567890", ("가"):rep(201)).result_code)
    assert.are.equal("200", save("0234567890", ("가"):rep(200)).result_code)
    assert.are.equal("200", code("sms", { send_phone = "0232892888" }))
    local status, answer = get(LIST)
    assert.are.equal(200, status)
    assert.are.equal("200", answer.result_code)
    assert.are.equal(3 + 9, #answer.numberList)
    assert.are.same({ sendnumber = "0212345678", comment = "" }, answer.numberList[1])
    assert.are.same({ sendnumber = "0232892888", comment = "케이티하이텔 대표번호" }, answer.numberList[4])
    status, answer = get(LIST .. "?sendnumber=0232892888")
    assert.are.same({ { sendnumber = "0232892888", comment = "케이티하이텔 대표번호" } }, answer.numberList)
    status, answer = get(LIST, { ["x-waple-authorization"] = "wrong" })
    assert.are.same({ result_code = "100" }, answer)
  end)

  it("answers 405 for another method and 404 for other paths", function()
    local status, answer, res = get(pp_path("sms"))
    assert.are.equal(405, status)
    assert.are.equal("POST", res.headers["allow"])
    assert.is_string(answer.fake_error)
    status = post(pp_path("report"), {})
    assert.are.equal(405, status)
    assert.are.equal(405, (post(LIST, {})))
    for _, path in ipairs({ "/ppurio/2/message/sms/ksmstest", "/ppurio/1/message/sms/ksmstest/",
                            "/ppurio/1/message/fax/ksmstest", "/v1/sms/ksmstest", "/ppurio/1/sms/ksmstest" }) do
      assert.are.equal(404, (post(path, sorted_list(SMS))), path)
    end
    assert.are.equal(8, #fake:requests())                 -- recorded all the same
  end)

  it("forces every documented result code through a script, with a cmid for 200", function()
    for _, c in ipairs({ "100", "200", "300", "400", "500", "600" }) do
      fake:script{ path = pp_path("lms"), result = c, times = 1 }
      local answer = send("lms", { send_phone = "nope" })
      assert.are.equal(c, answer.result_code)
      if c == "200" then
        assert.matches("^%d+$", answer.cmid)
        assert.are.equal("6600", report(answer.cmid).call_status)
      else
        assert.is_nil(answer.cmid)
      end
    end
    assert.are.equal("300", code("lms", { send_phone = "nope" }))     -- used up
    assert.are.equal(100000, balance())                               -- forced answers charge nothing
  end)

  it("injects faults: a send that happens before the connection drops, latency, garbage", function()
    fake:script{ path = pp_path("sms"), fault = "close", process = true, times = 1 }
    local res, err = fake:request("POST", pp_path("sms"), forms.encode(sorted_list(SMS)),
                                  { ["Content-Type"] = PP_FORM, ["x-waple-authorization"] = PP_KEY })
    assert.is_nil(res)
    assert.matches("receive", err)
    assert.are.equal(100000 - 20, balance())
    assert.are.equal(1, #fake:state().messages)
    fake:script{ path = "*", latency_ms = 200, times = 1 }
    local t0 = socket.gettime()
    assert.are.equal("200", code("sms"))
    assert.is_true(socket.gettime() - t0 >= 0.19)
    fake:script{ path = "*", fault = "garbage", times = 1 }
    res = fake:request("GET", LIST, "")
    assert.is_nil(res)
  end)
end)

---------------------------------------------------------------- Cafe24

local C24_SMS_CODES = {
  "success", "reserved", "-100", "-101", "-102", "-105", "-110", "-114", "-201", "-202", "-203",
  "0001", "0002", "0003", "0004", "0005", "0099", "0044", "3201", "3202", "3203", "3204", "3205",
  "3206", "3207", "3208", "3209", "3210", "3211", "3214", "3213", "3217", "3218", "3219", "3220",
  "3221", "3222", "3223", "3224", "Test Success!",
}
local C24_LMS_CODES = {
  "1", "41", "42", "112", "114", "116", "202", "203", "204", "205", "206", "207", "209", "210",
  "211", "212", "216", "245", "253", "254", "2003", "4005", "4007", "4008", "4301", "4305", "4307",
  "6072", "8012", "8200", "9999",
}
-- The request fields in the document's order (then mode).
local C24_ORDER = { "user_id", "secure", "sphone1", "sphone2", "sphone3", "rphone", "destination",
                    "subject", "msg", "rdate", "rtime", "returnurl", "testflag", "nointeractive",
                    "repeatFlag", "repeatNum", "smsType", "repeatTime" }

describe("fake Cafe24", function()
  local fake, cert
  local SMS = { user_id = "ksmstest", secure = "test-cafe24-key", sphone1 = "02", sphone2 = "1234",
                sphone3 = "5678", rphone = "010-1111-2222", msg = "안녕하세요 테스트" }

  -- The fields as a client writes them: each value Base64 (a table
  -- { raw = "..." } is sent as it is), then mode = Base64 of "1"; with
  -- plain = true nothing is encoded and mode is left out.
  local function c24_fields(map, plain)
    local list = {}
    for _, name in ipairs(C24_ORDER) do
      local v = map[name]
      if type(v) == "table" then list[#list + 1] = { name, v.raw }
      elseif v ~= nil then list[#list + 1] = { name, plain and v or base64.encode(v) } end
    end
    if not plain then list[#list + 1] = { "mode", base64.encode("1") } end
    return list
  end
  local function send(overrides, plain)
    local status, body = fake:post_form("/sms_sender.php", c24_fields(merged(SMS, overrides), plain))
    assert.are.equal(200, status, body)
    return body
  end
  local function post_multipart(target, path, list)
    local parts = {}
    for i, f in ipairs(list) do parts[i] = { name = f[1], data = f[2] } end
    local body, content_type = forms.build_multipart(parts)
    local res = assert(target:request("POST", path, body, { ["Content-Type"] = content_type }))
    return res.status, res.body, res.headers
  end
  local function remain(user, key)
    local status, body = fake:post_form("/sms_remain.php", c24_fields({ user_id = user or "ksmstest",
                                                                         secure = key or "test-cafe24-key" }))
    assert.are.equal(200, status)
    return body
  end
  -- sms_list.php on the history port: the <code> and the records as tables.
  local function history(fields)
    local list = sorted_list(merged({ user_id = "ksmstest", secure = "test-cafe24-key" }, fields))
    local status, body, headers = fake.history:post_form("/sms_list.php", list)
    assert.are.equal(200, status, body)
    assert.are.equal("text/xml; charset=UTF-8", headers["content-type"])
    assert.matches('^<%?xml version="1%.0" encoding="UTF%-8"%?>', body)
    local records = {}
    for rec in body:gmatch("<record>(.-)</record>") do
      local r = {}
      for name, value in rec:gmatch("<(%w+)>(.-)</%1>") do r[name] = value end
      records[#records + 1] = r
    end
    return body:match("<code>(.-)</code>"), records
  end

  setup(function()
    cert = fake_control.make_cert()
    fake = fake_control.start("cafe24", { tls = cert })
  end)
  teardown(function()
    fake:stop()
    fake_control.remove_cert(cert)
  end)
  before_each(function() fake:reset() end)

  it("serves HTTPS with a certificate the generated one verifies, history on plain HTTP", function()
    assert.matches("^https://127%.0%.0%.1:%d+$", fake.base_url)
    assert.matches("^http://127%.0%.0%.1:%d+$", fake.history_url)
    assert.are_not.equal(fake.port, fake.history_port)
    local sock = socket.tcp()
    sock:settimeout(2)
    assert(sock:connect("127.0.0.1", fake.port))
    local conn = assert(ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer",
                                         cafile = cert.cert, options = { "all" } }))
    conn:settimeout(2)
    assert(conn:dohandshake())
    local body = forms.encode(c24_fields({ user_id = "ksmstest", secure = "test-cafe24-key" }))
    conn:send("POST /sms_remain.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
              .. "application/x-www-form-urlencoded\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    local status, _, answer = read_response(conn)
    conn:close()
    assert.are.same({ 200, "10000" }, { status, answer })
    -- Without the certificate as CA the handshake fails.
    sock = socket.tcp()
    sock:settimeout(2)
    assert(sock:connect("127.0.0.1", fake.port))
    conn = assert(ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer", options = { "all" } }))
    conn:settimeout(2)
    local ok, err = conn:dohandshake()
    conn:close()
    assert.is_falsy(ok)
    assert.matches("certificate", err)
    -- openssl checks the name (IP:127.0.0.1) as libcurl does.
    local function s_client(ip)
      local p = io.popen("openssl s_client -connect 127.0.0.1:" .. fake.port .. " -CAfile '" .. cert.cert
                         .. "' -verify_ip " .. ip .. " -verify_return_error </dev/null 2>&1")
      local out = p:read("*a")
      p:close()
      return out
    end
    assert.matches("Verify return code: 0 %(ok%)", s_client("127.0.0.1"))
    assert.not_matches("Verify return code: 0 %(ok%)", s_client("127.0.0.2"))
  end)

  it("keeps serving while a TLS client stalls or a plain-HTTP client knocks", function()
    local silent = socket.tcp()
    silent:settimeout(2)
    assert(silent:connect("127.0.0.1", fake.port))                 -- never says hello
    silent:send("\22\3\1")                                          -- a third of a record header
    local plain = socket.tcp()
    plain:settimeout(2)
    assert(plain:connect("127.0.0.1", fake.port))
    plain:send("POST /sms_remain.php HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    local data = plain:receive("*a")
    plain:close()
    assert.is_nil((data or ""):match("^HTTP/"))
    local t0 = socket.gettime()
    assert.are.equal("10000", remain())
    assert.is_true(socket.gettime() - t0 < 0.5)
    silent:close()
    assert.are.equal(1, #fake:requests())                            -- only the TLS request arrived
  end)

  it("sends an SMS with every field Base64, answers success,<remaining>, records both forms", function()
    assert.are.equal("success,9999", send())
    assert.are.equal("9999", remain())
    local r = fake:requests("/sms_sender.php")[1]
    assert.are.equal("main", r.site)
    assert.is_true(r.base64)
    local expected = c24_fields(SMS)
    assert.are.same(expected, r.form)
    local decoded = {}
    for i, f in ipairs(expected) do decoded[i] = { f[1], f[1] == "mode" and "1" or SMS[f[1]] } end
    assert.are.same(decoded, r.decoded)
    assert.are.same({}, r.undecodable)
    local code, records = history()
    assert.are.equal("0000", code)
    assert.are.equal(1, #records)
    local rec = records[1]
    assert.are.same({ "I", "02-1234-5678", "010-1111-2222", SMS.msg, "3", "" },
                    { rec.sendType, rec.sendPhone, rec.receivePhone, rec.msg, rec.sendStatus, rec.refundDate })
    assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d$", rec.sendDateTime)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", rec.regDate)
    assert.are.equal("history", fake:requests("/sms_list.php")[1].site)
  end)

  it("takes plain fields when mode is not Base64 of 1, and multipart bodies", function()
    assert.are.equal("success,9999", send(nil, true))
    assert.is_false(fake:requests()[1].base64)
    local status, body = post_multipart(fake, "/sms_sender.php", c24_fields(SMS))
    assert.are.same({ 200, "success,9998" }, { status, body })
  end)

  it("answers -101 for missing fields and -102 for a wrong id or key", function()
    for _, overrides in ipairs({ { user_id = false }, { secure = false }, { msg = false }, { msg = "" },
                                 { sphone1 = false }, { sphone2 = false }, { rphone = false } }) do
      assert.are.equal("-101", send(overrides), json.encode(overrides))
    end
    assert.are.equal("-102", send{ user_id = "other" })
    assert.are.equal("-102", send{ secure = "wrong-key" })
    assert.are.equal("-102", send{ secure = { raw = "!!!!" } })
    assert.are.equal("-101", remain("", ""))
    assert.are.equal("-102", remain("ksmstest", "nope"))
    assert.are.equal("10000", remain())
  end)

  it("refuses characters outside strict EUC-KR with -202, and non-UTF-8 text with 0003", function()
    assert.are.equal("-202", send{ msg = "됬다" })
    assert.are.equal("-202", send{ msg = "좋아요 😀" })
    assert.are.equal("-202", send{ smsType = "L", subject = "됬", msg = "본문" })
    assert.are.equal("-202", send{ rphone = "", destination = "010-1111-2222|똠됬" })
    assert.are.equal("0003", send{ msg = "\176\161" })              -- EUC-KR bytes, not UTF-8
    assert.are.equal("success,9999", send{ msg = "가나다 ㄱ ① ＡＢＣ" })
  end)

  it("answers 3203 and 3204 for text and caller fields that are not Base64", function()
    assert.are.equal("3203", send{ msg = { raw = "7JWI64WV!" } })
    assert.are.equal("3203", send{ msg = { raw = "7JWI 64WV" } })   -- a '+' sent unescaped arrives as a space
    assert.are.equal("3204", send{ sphone2 = { raw = "MTIz" .. "NA=" } })
    assert.are.same({ "sphone2" }, fake:requests()[3].undecodable)
    local status = fake:post_form("/sms_sender.php", c24_fields(merged(SMS, { testflag = { raw = "WQ" } })))
    assert.are.equal(400, status)                                   -- another field: loudly refused
  end)

  it("answers -114 for a caller number that is not registered", function()
    assert.are.equal("-114", send{ sphone2 = "9999" })
    assert.are.equal("-114", send{ sphone1 = "0212345678", sphone2 = "x", sphone3 = false })
    assert.are.equal("success,9999", send{ sphone1 = "1588", sphone2 = "4567", sphone3 = false })
    assert.are.equal("success,9998", send{ sphone1 = "010", sphone2 = "1234", sphone3 = "5678" })
    fake:state{ senders = { "031-123-4567" } }
    assert.are.equal("-114", send())
    assert.are.equal("success,9997", send{ sphone1 = "031", sphone2 = "123", sphone3 = "4567" })
  end)

  it("takes recipients comma-joined with their hyphens, at most 999", function()
    assert.are.equal("success,9997", send{ rphone = "010-1111-2222,01033334444,02-123-4567" })
    local _, records = history()
    assert.are.same({ "02-123-4567", "01033334444", "010-1111-2222" },
                    { records[1].receivePhone, records[2].receivePhone, records[3].receivePhone })
    for rphone, c in pairs({ ["010-1111-2222,"] = "3202", ["010-1111-2222,,011-111-1111"] = "3202",
                             ["010-1111-222a"] = "3205", ["010--1111-2222"] = "3205", ["-01011112222"] = "3205",
                             ["010 1111 2222"] = "3205", ["013-1111-2222"] = "3222", ["090-111-2222"] = "3222",
                             ["010-111-222"] = "3221", ["02-12-3456"] = "3221", ["1588-12345"] = "3221" }) do
      assert.are.equal(c, send{ rphone = rphone }, rphone)
    end
    local many = {}
    for i = 1, 1000 do many[i] = string.format("010-%04d-%04d", i, i) end
    assert.are.equal("-110", send{ rphone = table.concat(many, ",") })
    many[1000] = nil
    assert.are.equal("success," .. (9997 - 999), send{ rphone = table.concat(many, ",") })
  end)

  it("sends LMS with smsType L and a subject, three messages each, and lists them as lms", function()
    assert.are.equal("success,9997", send{ smsType = "L", subject = ("가"):rep(30), msg = ("나"):rep(1000) })
    assert.are.equal("0004", send{ smsType = "L", subject = ("가"):rep(30) .. "a" })
    assert.are.equal("0004", send{ smsType = "L", msg = ("나"):rep(1000) .. "a" })
    assert.are.equal("0004", send{ msg = ("가"):rep(45) .. "a" })             -- an SMS over 90 bytes
    assert.are.equal("success,9996", send{ smsType = "S", msg = ("가"):rep(45), subject = "ignored 됐" })
    local _, sms = history()
    local _, lms = history{ smsType = "lms" }
    assert.are.equal(1, #sms)
    assert.are.equal(1, #lms)
    assert.are.equal(("나"):rep(1000), lms[1].msg)
  end)

  it("blocks spam words with 0044, ads without an opt-out with 3223 and after 21:00 with 3224", function()
    assert.are.equal("0044", send{ msg = "오늘의 바카라 이벤트" })
    assert.are.equal("0044", send{ msg = "visit LiveNo1 now" })
    fake:state{ now = kst_epoch(2030, 1, 15, 10, 0, 0) }
    assert.are.equal("3223", send{ msg = "(광고) 할인 행사" })
    assert.are.equal("success,9999", send{ msg = "(광고) 할인 행사 무료수신거부 080-123-4567" })
    fake:state{ now = kst_epoch(2030, 1, 15, 21, 0, 0) }
    assert.are.equal("3224", send{ msg = "(광고) 할인 행사 무료수신거부 080-123-4567" })
    fake:state{ now = kst_epoch(2030, 1, 16, 7, 59, 0) }
    assert.are.equal("3224", send{ msg = "(광고) 할인 행사 무료수신거부 080-123-4567" })
    assert.are.equal("success,9998", send{ msg = "광고 아님" })
  end)

  it("reserves with rdate and rtime at least 10 minutes ahead in Korea time", function()
    local t = kst_epoch(2030, 1, 15, 10, 0, 0)
    fake:state{ now = t, delivery_delay = 30 }
    assert.are.equal("-105", send{ rdate = "20300115", rtime = "100959" })
    assert.are.equal("-105", send{ rdate = "20300115" })
    assert.are.equal("-105", send{ rtime = "120000" })
    assert.are.equal("-105", send{ rdate = "20300230", rtime = "120000" })
    assert.are.equal("-105", send{ rdate = "2030-01-15", rtime = "120000" })
    assert.are.equal("reserved,9999", send{ rdate = "20300115", rtime = "101000" })
    assert.are.equal("success,9998", send{ rdate = "", rtime = "" })
    local _, records = history{ sendType = "reserve" }
    assert.are.equal(1, #records)
    assert.are.same({ "R", "2", "203001151010" }, { records[1].sendType, records[1].sendStatus, records[1].sendDateTime })
    local _, general = history{ sendType = "genaral" }
    assert.are.same({ "I", "1" }, { general[1].sendType, general[1].sendStatus })
    fake:state{ now = t + 630 }
    _, records = history{ sendType = "all" }
    assert.are.same({ "3", "3" }, { records[1].sendStatus, records[2].sendStatus })
  end)

  it("repeats a send repeatNum times repeatTime minutes apart, charging each", function()
    local t = kst_epoch(2030, 1, 15, 10, 0, 0)
    fake:state{ now = t }
    assert.are.equal("success,9994",
      send{ rphone = "010-1111-2222,010-3333-4444", repeatFlag = "Y", repeatNum = "3", repeatTime = "15" })
    local _, records = history{ displayNo = "50", receivePhone = "01011112222" }
    local times = {}
    for i, r in ipairs(records) do times[i] = r.sendType .. r.sendDateTime end
    table.sort(times)
    assert.are.same({ "I203001151000", "R203001151015", "R203001151030" }, times)
    assert.are.equal("3201", send{ repeatFlag = "Y", repeatNum = "11", repeatTime = "15" })
    assert.are.equal("3201", send{ repeatFlag = "Y", repeatNum = "0", repeatTime = "15" })
    assert.are.equal("3201", send{ repeatFlag = "Y", repeatNum = "2", repeatTime = "14" })
    assert.are.equal("3201", send{ repeatFlag = "Y" })
    assert.are.equal("success,9993", send{ repeatFlag = "", repeatNum = "1", repeatTime = "15" })
    assert.are.equal("success,9983", send{ repeatFlag = "Y", repeatNum = "10", repeatTime = "60" })
  end)

  it("puts each name from destination into {name}, in PHP's strtr Base64 too", function()
    local destination = "01011112222|든럿궝,010-3333-4444|김철수"   -- Base64 with both '+' and '/'
    local php = base64.encode(destination):gsub("%+", "-"):gsub("/", ",")
    assert.is_truthy(php:find("-", 1, true) and php:find(",", 1, true))
    assert.are.equal("success,9998", send{ rphone = "", destination = { raw = php }, msg = "{name}님 안녕하세요" })
    local _, records = history()
    assert.are.same({ "김철수님 안녕하세요", "든럿궝님 안녕하세요" }, { records[1].msg, records[2].msg })
    assert.are.same({ "010-3333-4444", "01011112222" }, { records[1].receivePhone, records[2].receivePhone })
    assert.are.same({ "destination", destination }, fake:requests()[1].decoded[7])
    assert.are.equal("3217", send{ rphone = "", destination = "010-1111-2222" })
    assert.are.equal("3217", send{ rphone = "", destination = "010-1111-2222|" })
    assert.are.equal("0004", send{ rphone = "", destination = "010-1111-2222|" .. ("가"):rep(40),
                                   msg = "{name}님 {name}" })
    local status = fake:post_form("/sms_sender.php", c24_fields(merged(SMS, { destination = destination })))
    assert.are.equal(400, status)                                -- rphone must be empty then
  end)

  it("answers Test Success! under testflag Y without sending or charging", function()
    assert.are.equal("Test Success!", send{ testflag = "Y" })
    assert.are.equal("-102", send{ testflag = "Y", secure = "x" })
    assert.are.equal("10000", remain())
    assert.are.same({}, select(2, history()))
    assert.are.equal("success,9999", send{ testflag = "", nointeractive = "1", returnurl = "http://shop.test/done" })
    for _, overrides in ipairs({ { testflag = "N" }, { nointeractive = "0" }, { smsType = "M" },
                                 { repeatFlag = "N" }, { returnurl = "shop.test" } }) do
      local status = fake:post_form("/sms_sender.php", c24_fields(merged(SMS, overrides)))
      assert.are.equal(400, status, json.encode(overrides))
    end
  end)

  it("answers -201, -100, 3218 and 3219 from the state", function()
    fake:state{ balance = 2 }
    assert.are.equal("-201", send{ smsType = "L" })
    assert.are.equal("success,1", send{ msg = "잔액 확인" })
    fake:state{ balance = 100, server_error = true }
    assert.are.equal("-100", send())
    fake:state{ server_error = false, duplicate_window = 60 }
    assert.are.equal("success,99", send())
    assert.are.equal("3218", send())
    assert.are.equal("success,98", send{ msg = "다른 내용" })
    fake:state{ duplicate_window = 0, monthly_limit = 4 }
    assert.are.equal("success,97", send())
    assert.are.equal("3219", send{ rphone = "010-1111-2222,010-3333-4444" })
  end)

  it("lists the completed caller numbers through smsSenderPhone.php", function()
    local status, body = fake:post_form("/smsSenderPhone.php", { { "userId", "ksmstest" }, { "passwd", "test-cafe24-key" } })
    assert.are.equal(200, status)
    assert.are.same({ result = "Success", list = { "02-1234-5678", "010-1234-5678", "1588-4567" } }, json.decode(body))
    status, body = fake:post_form("/smsSenderPhone.php", { { "userId", "ksmstest" }, { "passwd", "nope" } })
    assert.are.same({ result = "Fail" }, json.decode(body))
  end)

  it("lists history by status, numbers, dates and pages, refunding failed messages", function()
    local t = kst_epoch(2030, 1, 15, 10, 0, 0)
    fake:state{ now = t, failing_numbers = { "01099990000" }, delivery_delay = 10 }
    assert.are.equal("success,9997", send{ rphone = "010-1111-2222,010-9999-0000,011-222-3333" })
    assert.are.equal("9997", remain())
    local _, records = history{ sendStatus = "F" }
    assert.are.same({}, records)
    fake:state{ now = t + 10 }
    assert.are.equal("9998", remain())                                 -- the failed one came back
    _, records = history{ sendStatus = "F" }
    assert.are.same({ "010-9999-0000", "9", "203001151000" },
                    { records[1].receivePhone, records[1].sendStatus, records[1].refundDate })
    _, records = history{ sendStatus = "S" }
    assert.are.equal(2, #records)
    _, records = history{ receivePhone = "011-222-3333" }
    assert.are.equal(1, #records)
    _, records = history{ receivePhone = "0112223333", sendPhone = "02-1234-5678" }
    assert.are.equal(1, #records)
    _, records = history{ sendPhone = "010-1234-5678" }
    assert.are.equal(0, #records)
    _, records = history{ displayNo = "2" }
    assert.are.same({ "011-222-3333", "010-9999-0000" }, { records[1].receivePhone, records[2].receivePhone })
    _, records = history{ displayNo = "2", startNo = "2" }
    assert.are.same({ "010-1111-2222" }, { records[1].receivePhone })
    _, records = history{ date = "20300116", day = "1" }              -- from the 15th on
    assert.are.equal(3, #records)
    _, records = history{ date = "20300118", day = "2" }              -- from the 16th on
    assert.are.equal(0, #records)
    for _, bad in ipairs({ { day = "8" }, { displayNo = "51" }, { date = "2030-01-15" }, { sendStatus = "X" } }) do
      local status = fake.history:post_form("/sms_list.php", sorted_list(merged(
        { user_id = "ksmstest", secure = "test-cafe24-key" }, bad)))
      assert.are.equal(400, status, json.encode(bad))
    end
  end)

  it("answers -101 and -102 in XML from sms_list.php", function()
    local code, records = history{ secure = "wrong" }
    assert.are.same({ "-102", {} }, { code, records })
    code = history{ user_id = false }
    assert.are.equal("-101", code)
    local status, body = fake.history:post_form("/sms_list.php", {})
    assert.are.equal(200, status)
    assert.matches("<code>%-101</code>", body)
  end)

  it("serves each path on its own port only, by POST", function()
    local status = fake:post_form("/sms_list.php", { { "user_id", "ksmstest" } })
    assert.are.equal(404, status)
    status = fake.history:post_form("/sms_sender.php", c24_fields(SMS))
    assert.are.equal(404, status)
    status = fake.history:post_form("/sms_remain.php", {})
    assert.are.equal(404, status)
    local res = assert(fake:request("GET", "/sms_remain.php"))
    assert.are.same({ 405, "POST" }, { res.status, res.headers["allow"] })
    assert.are.equal(404, assert(fake:request("POST", "/sms_sender.jsp", "")).status)
    assert.are.equal(10000, fake:state().balance)
    local sites = {}
    for i, r in ipairs(fake:requests()) do sites[i] = r.site end
    assert.are.same({ "main", "history", "history", "main", "main" }, sites)
  end)

  it("forces every documented SMS and LMS/MMS code through a script", function()
    local all = {}
    for _, c in ipairs(C24_SMS_CODES) do all[#all + 1] = c end
    for _, c in ipairs(C24_LMS_CODES) do all[#all + 1] = c end
    for _, c in ipairs(all) do
      fake:script{ path = "/sms_sender.php", result = c, times = 1 }
      local expected = (c == "success" or c == "reserved") and (c .. ",10000") or c
      assert.are.equal(expected, send{ secure = "wrong" })
    end
    assert.are.equal("-102", send{ secure = "wrong" })                -- used up
    fake:script{ path = "/sms_list.php", result = "-102", times = 1 }
    assert.are.equal("-102", (history()))
    fake:script{ path = "/sms_remain.php", result = "-101", times = 1 }
    assert.are.equal("-101", remain())
    fake:script{ path = "/smsSenderPhone.php", result = "Fail", times = 1 }
    local _, body = fake:post_form("/smsSenderPhone.php", { { "userId", "ksmstest" }, { "passwd", "test-cafe24-key" } })
    assert.are.same({ result = "Fail" }, json.decode(body))
    assert.are.equal(10000, fake:state().balance)
  end)

  it("injects faults over TLS without holding up other connections", function()
    fake:script{ path = "/sms_sender.php", latency_ms = 300, times = 1 }
    local slow = assert(fake_control.connect(fake.port, 2, true))
    local body = forms.encode(c24_fields(SMS))
    slow:send("POST /sms_sender.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
    wait_until("the slow request", 1, function() return #fake:requests() == 1 end)
    local t0 = socket.gettime()
    assert.are.equal("10000", remain())
    assert.is_true(socket.gettime() - t0 < 0.25)
    local _, _, answer = read_response(slow)
    slow:close()
    assert.are.equal("success,9999", answer)
    fake:script{ path = "/sms_sender.php", fault = "half", times = 1 }
    local conn = assert(fake_control.connect(fake.port, 2, true))
    conn:send("POST /sms_sender.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
    local data, _, partial = conn:receive("*a")
    conn:close()
    data = data or partial
    assert.matches("Content%-Length: 12\r\n", data)
    assert.matches("\r\n\r\nsucces$", data)                           -- 6 of "success,9998"
    fake:script{ path = "/sms_sender.php", fault = "close", times = 1 }
    local res, err = fake:request("POST", "/sms_sender.php", body,
                                  { ["Content-Type"] = "application/x-www-form-urlencoded" })
    assert.is_nil(res)
    assert.is_string(err)
    assert.are.equal("9998", remain())                                -- close without process: not sent
  end)

  it("resets records, scripts, stats and state over TLS and on the history port", function()
    fake:state{ balance = 5, senders = { "02-999-9999" } }
    fake:script{ path = "*", result = "-100" }
    send()
    fake.history:reset()
    assert.are.same({}, fake:requests())
    assert.are.same({}, fake.history:scripts())
    assert.are.equal(0, fake:stats().requests)
    assert.are.equal(10000, fake:state().balance)
    assert.are.equal("success,9999", send())
    assert.are.equal(1, #fake.history:state().history)
  end)
end)

---------------------------------------------------------------- processes

describe("fakes over TLS and on two ports", function()
  local cert
  setup(function() cert = fake_control.make_cert() end)
  teardown(function()
    fake_control.stop_all()                    -- whatever a failed test left running
    fake_control.remove_cert(cert)
  end)

  local function refused(port)
    local sock = socket.tcp()
    sock:settimeout(1)
    local ok = sock:connect("127.0.0.1", port)
    sock:close()
    return ok == nil
  end

  it("leaves no process and no open port after stop", function()
    local fake = fake_control.start("cafe24", { tls = cert, history_tls = true })
    finally(function() fake:stop() end)
    assert.matches("^https://", fake.history_url)
    assert.are.equal(200, assert(fake.history:request("POST", "/sms_list.php", "")).status)
    local pid, port, hport = fake.pid, fake.port, fake.history_port
    fake.history:stop()                                    -- a view: stops the whole fake
    assert.is_false(fake:alive())
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"))
    assert.is_true(refused(port))
    assert.is_true(refused(hport))
  end)

  it("serves any fake over TLS with https base_url, and refuses bad options", function()
    local senders = fake_control.start("senders", { tls = cert })
    local ok, status, body = pcall(function()
      return senders:post_form("/APIV2/remainCoin", { { "api_key", "test-senders-key" } })
    end)
    local base_url = senders.base_url
    senders:stop()
    assert.is_true(ok, status)
    assert.are.same({ 200, '{"remainCoin":"100000"}' }, { status, body })
    assert.matches("^https://127%.0%.0%.1:%d+$", base_url)
    assert.has_error(function() fake_control.start("ppurio", { history_port = 0 }) end)
    assert.has_error(function() fake_control.start("cafe24", { tls = { cert = "/nonexistent", key = "/nonexistent" } }) end)
    assert.has_error(function() fake_control.start("cafe24", { history_tls = true }) end)
    assert.has_error(function() fake_control.start("cafe24", { state = { nokey = 1 } }) end)
  end)

  it("starts ppurio and cafe24 with the options given", function()
    local pp = fake_control.start("ppurio", { api_key = "k2", balance = 20, senders = { "0299998888" } })
    local ok, answer = pcall(function()
      local res = assert(pp:request("POST", "/ppurio/1/message/sms/ksmstest",
        forms.encode({ { "send_phone", "0299998888" }, { "dest_phone", "01011112222,01033334444" }, { "msg_body", "x" } }),
        { ["Content-Type"] = PP_FORM, ["x-waple-authorization"] = "k2" }))
      return json.decode(res.body)
    end)
    pp:stop()
    assert.is_true(ok, answer)
    assert.are.equal("600", answer.result_code)
    assert.are.equal("잔금 부족[미발송 목록] 01033334444", answer.result_msg)
    local c24 = fake_control.start("cafe24", { api_key = "k3", balance = 7, senders = { "02-999-9999" } })
    local status, body
    ok, status, body = pcall(function()
      return c24:post_form("/sms_remain.php", { { "user_id", "ksmstest" }, { "secure", "k3" } })
    end)
    local base_url = c24.base_url
    c24:stop()
    assert.is_true(ok, status)
    assert.are.same({ 200, "7" }, { status, body })
    assert.matches("^http://", base_url)
  end)
end)
