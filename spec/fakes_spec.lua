-- fakes_spec.lua - the fake provider servers (spec/fakes/) behave as their
-- documents say, and their test machinery (scripts, faults, records, stats,
-- reset, stop) works. The fakes run as real processes under the interpreter
-- the specs run under; this spec talks to them with plain LuaSocket.
local socket = require "socket"
local fake_control = require "fake_control"
local json = require "fakes.json"
local forms = require "fakes.forms"
local korean = require "fakes.korean"

local SENDERS_KEY, MESSAGEME_KEY = "test-senders-key", "test-messageme-key"
local SMS_SEND, REMAIN_COIN = "/APIV2/sms_send", "/APIV2/remainCoin"
local MM_SMS, ALIMTALK = "/APIV2/API/sms_send", "/APIV2/API/alimtalk_send"
local FRIENDTALK, REMAIN_CASH = "/APIV2/API/friendstalk_send", "/APIV2/API/remainCash"

---------------------------------------------------------------- raw HTTP

local function connect(port)
  local sock = socket.tcp()
  sock:settimeout(2)
  assert(sock:connect("127.0.0.1", port))
  return sock
end

local function request_bytes(method, path, body, headers)
  body = body or ""
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
  local has_length = false
  for _, h in ipairs(headers or {}) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
    if h[1]:lower() == "content-length" or h[1]:lower() == "transfer-encoding" then
      has_length = true
    end
  end
  if not has_length then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local FORM = { { "Content-Type", "application/x-www-form-urlencoded" } }

local function post_bytes(path, fields, extra_headers)
  local headers = { FORM[1] }
  for _, h in ipairs(extra_headers or {}) do headers[#headers + 1] = h end
  return request_bytes("POST", path, forms.encode(fields), headers)
end

local read_response = require("spec_helper").read_response

local H = require "spec_helper"
local list_of, wait_until = H.sorted_pairs, H.wait_until

-- base with overrides applied (false removes a field), as an ordered list.
local function fields(base, overrides)
  return list_of(H.merged(base, overrides))
end

-- The decoded answer of a provider request that must be HTTP 200.
local function answer(fake, path, list)
  local status, body = fake:post_form(path, list)
  assert.are.equal(200, status, body)
  return json.decode(body)
end


local function in_an_hour()
  return korean.format_kst(os.time() + 3600, "|")
end

---------------------------------------------------------------- Senders

describe("fake Senders", function()
  local fake
  local SMS = { api_key = SENDERS_KEY, msg = "안녕하세요 테스트", callback = "0212345678",
                dstaddr = "01011112222", send_reserve = "0", call_block = "0" }
  local function code(overrides) return answer(fake, SMS_SEND, fields(SMS, overrides)).result end
  local function coins() return answer(fake, REMAIN_COIN, { { "api_key", SENDERS_KEY } }).remainCoin end

  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("runs under the interpreter of the specs", function()
    local f = assert(io.open("/proc/" .. fake.pid .. "/cmdline", "rb"))
    local argv0 = f:read("*a"):match("^[^%z]+")
    f:close()
    assert.are.equal(os.getenv("KSMS_TEST_LUA") or "lua5.4", argv0)
  end)

  it("accepts a valid send with 100 and charges 1 coin per SMS recipient", function()
    assert.are.equal("100", code{ dstaddr = "01011112222|01033334444|0311234567" })
    assert.are.equal("99997", coins())
  end)

  it("answers 155 for a wrong or missing key and for a blocked member", function()
    assert.are.equal("155", code{ api_key = "wrong" })
    assert.are.equal("155", code{ api_key = false })
    fake:state{ account_blocked = true }
    assert.are.equal("155", code())
    assert.are.same({ result = "155" }, answer(fake, REMAIN_COIN, { { "api_key", SENDERS_KEY } }))
    assert.are.same({ result = "155" }, answer(fake, REMAIN_COIN, { { "api_key", "nope" } }))
  end)

  it("answers 225 for an empty message or one over 2,000 CP949 bytes", function()
    assert.are.equal("225", code{ msg = "" })
    assert.are.equal("225", code{ msg = false })
    assert.are.equal("225", code{ msg = ("가"):rep(1000) .. "a" })      -- 2001 bytes
    assert.are.equal("100", code{ msg = ("가"):rep(1000) })             -- 2000 bytes
  end)

  it("answers 315 for a caller number that is not registered", function()
    assert.are.equal("315", code{ callback = "0299998888" })
    assert.are.equal("315", code{ callback = "02-1234-5678" })
    fake:state{ senders = { "0299998888" } }
    assert.are.equal("100", code{ callback = "0299998888" })
  end)

  it("answers 325 for missing, malformed or more than 500 recipients", function()
    assert.are.equal("325", code{ dstaddr = false })
    assert.are.equal("325", code{ dstaddr = "010-1111-2222" })
    assert.are.equal("325", code{ dstaddr = "01011112222|" })
    assert.are.equal("325", code{ dstaddr = "0101111222" .. "|01011112222 " })
    assert.are.equal("325", code{ dstaddr = "12345" })
    assert.are.equal("325", code{ dstaddr = "158812345" })             -- 15xx numbers have 8 digits
    assert.are.equal("100", code{ dstaddr = "15881234|0212345678|01612345678" })
    local many = {}
    for i = 1, 501 do many[i] = string.format("010%08d", i) end
    assert.are.equal("325", code{ dstaddr = table.concat(many, "|") })
    many[501] = nil
    assert.are.equal("100", code{ dstaddr = table.concat(many, "|") })
    assert.are.equal(tostring(100000 - 3 - 500), coins())
  end)

  it("answers 415 for a reservation without a valid future Korea time", function()
    assert.are.equal("415", code{ send_reserve = "1" })
    assert.are.equal("415", code{ send_reserve = "1", send_reserve_date = "2020|09|24|13|20|00" })
    assert.are.equal("415", code{ send_reserve = "1", send_reserve_date = "2099|02|30|13|20|00" })
    assert.are.equal("415", code{ send_reserve = "1", send_reserve_date = "2099|09|24|13|20" })
    assert.are.equal("415", code{ send_reserve = "1", send_reserve_date = "2099 09 24 13 20 00" })
    assert.are.equal("100", code{ send_reserve = "1", send_reserve_date = in_an_hour() })
    -- send_reserve 0 ignores the date
    assert.are.equal("100", code{ send_reserve = "0", send_reserve_date = "garbage" })
  end)

  it("reads the reservation as UTC+9 whatever the host's zone", function()
    -- 2020-09-24 13:20:00 KST is 04:20:00 UTC = 1600921200
    local date = "2020|09|24|13|20|00"
    fake:state{ now = 1600921199 }
    assert.are.equal("100", code{ send_reserve = "1", send_reserve_date = date })
    fake:state{ now = 1600921200 }
    assert.are.equal("415", code{ send_reserve = "1", send_reserve_date = date })
  end)

  it("charges 1, 3 and 6 coins for SMS, LMS and MMS and answers 185 short of them", function()
    local lms = ("a"):rep(91)
    fake:state{ balance = 10 }
    assert.are.equal("100", code{ msg = ("a"):rep(90) })               -- SMS: 9 left
    assert.are.equal("100", code{ msg = lms })                         -- LMS: 6 left
    assert.are.equal("100", code{ image = "http://x.test/a.JPG" })     -- MMS: 0 left
    assert.are.equal("0", coins())
    assert.are.equal("185", code())
    fake:state{ balance = 5 }
    assert.are.equal("185", code{ image = "http://x.test/a.jpg" })
    assert.are.equal("5", coins())                                     -- refused sends cost nothing
  end)

  it("refuses input no documented code covers with HTTP 400 and fake_error", function()
    local cases = {
      { call_block = "2" }, { call_block = false }, { send_reserve = "2" },
      { image = "http://x.test/a.png" }, { msg = "\176\161" },        -- EUC-KR bytes, not UTF-8
    }
    for _, overrides in ipairs(cases) do
      local status, body = fake:post_form(SMS_SEND, fields(SMS, overrides))
      assert.are.equal(400, status)
      assert.is_string(json.decode(body).fake_error)
    end
  end)

  it("takes the last of repeated fields, as PHP does", function()
    local list = fields(SMS)
    table.insert(list, 1, { "api_key", "first-and-wrong" })
    assert.are.equal("100", answer(fake, SMS_SEND, list).result)
    list[#list + 1] = { "api_key", "last-and-wrong" }
    assert.are.equal("155", answer(fake, SMS_SEND, list).result)
  end)

  it("answers 405 to a method other than POST and 404 to an unknown path", function()
    local res = fake:request("GET", SMS_SEND)
    assert.are.equal(405, res.status)
    assert.are.equal("POST", res.headers["allow"])
    assert.are.equal(404, fake:request("POST", "/APIV2/nothing", "").status)
  end)

  it("takes the fields from a multipart/form-data body too", function()
    local parts = {}
    for _, f in ipairs(fields(SMS)) do parts[#parts + 1] = { name = f[1], data = f[2] } end
    local body, content_type = forms.build_multipart(parts)
    local res = fake:request("POST", SMS_SEND, body, { ["Content-Type"] = content_type })
    assert.are.same({ result = "100" }, json.decode(res.body))
  end)

  it("forces every documented code through a script", function()
    for _, c in ipairs({ "100", "155", "185", "225", "315", "325", "415" }) do
      fake:script{ path = SMS_SEND, result = c, times = 1 }
      assert.are.equal(c, code{ api_key = "wrong" })
    end
    assert.are.equal("155", code{ api_key = "wrong" })          -- the scripts are used up
    assert.are.equal("100000", coins())                         -- a forced answer charges nothing
  end)
end)

---------------------------------------------------------------- MessageMe

describe("fake MessageMe", function()
  local fake
  local SMS = { api_key = MESSAGEME_KEY, msg = "문자", callback = "01012345678",
                dstaddr = "01011112222", send_reserve = "0" }
  local ALIM = { api_key = MESSAGEME_KEY, template_code = "ORDER_02", variable = "홍길동|A-100",
                 callback = "0212345678", dstaddr = "01011112222", send_reserve = "0",
                 next_type = "0" }
  local FRIEND = { api_key = MESSAGEME_KEY, kakaochannel = "@ksms", msg = "친구톡 메시지",
                   button_type = "0", callback = "15884567", dstaddr = "01011112222",
                   send_reserve = "0", next_type = "0" }
  local function code(path, base, overrides) return answer(fake, path, fields(base, overrides)).result end
  local function cash() return answer(fake, REMAIN_CASH, { { "api_key", MESSAGEME_KEY } }).remainCash end

  setup(function() fake = fake_control.start("messageme") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("sends SMS without call_block and keeps the Senders text rules", function()
    assert.are.equal("100", code(MM_SMS, SMS))
    assert.are.equal("155", code(MM_SMS, SMS, { api_key = SENDERS_KEY }))
    assert.are.equal("225", code(MM_SMS, SMS, { msg = ("가"):rep(1001) }))
    assert.are.equal("315", code(MM_SMS, SMS, { callback = "0299998888" }))
    assert.are.equal("325", code(MM_SMS, SMS, { dstaddr = "0101111" }))
    assert.are.equal("415", code(MM_SMS, SMS, { send_reserve = "1" }))
    assert.are.equal(tostring(100000 - 20), cash())
  end)

  it("sends AlimTalk from a known template with the right variables", function()
    assert.are.equal("100", code(ALIMTALK, ALIM))
    assert.are.equal("100", code(ALIMTALK, ALIM, { template_code = "WELCOME_01", variable = "홍길동" }))
    assert.are.equal(tostring(100000 - 30), cash())
  end)

  it("answers 215 for an unknown template and 235 for wrong variables", function()
    assert.are.equal("215", code(ALIMTALK, ALIM, { template_code = "NOPE" }))
    assert.are.equal("215", code(ALIMTALK, ALIM, { template_code = false }))
    assert.are.equal("235", code(ALIMTALK, ALIM, { variable = "홍길동" }))
    assert.are.equal("235", code(ALIMTALK, ALIM, { variable = "a|b|c" }))
    assert.are.equal("235", code(ALIMTALK, ALIM, { variable = "홍길동|" }))
    assert.are.equal("235", code(ALIMTALK, ALIM, { variable = false }))
  end)

  it("answers 225 when the substituted text passes 1,000 characters", function()
    -- "#{이름}님, 가입을 환영합니다." leaves 13 characters around the variable
    local welcome = { template_code = "WELCOME_01" }
    welcome.variable = ("가"):rep(987)
    assert.are.equal("100", code(ALIMTALK, ALIM, welcome))
    welcome.variable = ("가"):rep(988)
    assert.are.equal("225", code(ALIMTALK, ALIM, welcome))
  end)

  it("answers 315 and 185 for AlimTalk, counting the SMS fallback in the cash", function()
    assert.are.equal("315", code(ALIMTALK, ALIM, { callback = "0299998888" }))
    fake:state{ balance = 15 }                       -- AlimTalk 15, fallback SMS 20
    assert.are.equal("185", code(ALIMTALK, ALIM, { next_type = "1" }))
    assert.are.equal("100", code(ALIMTALK, ALIM, { next_type = "0" }))
    assert.are.equal("0", cash())
    local status = fake:post_form(ALIMTALK, fields(ALIM, { next_type = "2" }))
    assert.are.equal(400, status)
  end)

  it("sends FriendTalk through a registered channel, with buttons and images", function()
    assert.are.equal("100", code(FRIENDTALK, FRIEND))
    assert.are.equal("100", code(FRIENDTALK, FRIEND, {
      button_type = "1", button_name = "열 글자 버튼이에요", button_url = "https://ksms.test/a",
      image = "http://ksms.test/i.jpg", image_link_url = "http://ksms.test/" }))
    assert.are.equal(tostring(100000 - 20 - 30), cash())
    assert.are.equal("175", code(FRIENDTALK, FRIEND, { kakaochannel = "@other" }))
    assert.are.equal("175", code(FRIENDTALK, FRIEND, { kakaochannel = false }))
  end)

  it("answers 225 for FriendTalk over 1,000 characters, or 400 with an image", function()
    assert.are.equal("100", code(FRIENDTALK, FRIEND, { msg = ("가"):rep(1000) }))
    assert.are.equal("225", code(FRIENDTALK, FRIEND, { msg = ("가"):rep(1001) }))
    local image = "http://ksms.test/i.jpg"
    assert.are.equal("100", code(FRIENDTALK, FRIEND, { msg = ("가"):rep(400), image = image }))
    assert.are.equal("225", code(FRIENDTALK, FRIEND, { msg = ("가"):rep(401), image = image }))
    assert.are.equal("225", code(FRIENDTALK, FRIEND, { msg = "" }))
  end)

  it("refuses bad buttons and link URLs with HTTP 400 and fake_error", function()
    local cases = {
      { button_type = "1", button_name = "열한 글자짜리 버튼이름", button_url = "http://a.test" },
      { button_type = "1", button_name = "버튼", button_url = "www.a.test" },
      { button_type = "1", button_url = "http://a.test" },
      { button_type = "x" }, { image_link_url = "ftp://a.test" },
      { image = "http://a.test/i.gif" },
    }
    for _, overrides in ipairs(cases) do
      local status, body = fake:post_form(FRIENDTALK, fields(FRIEND, overrides))
      assert.are.equal(400, status)
      assert.is_string(json.decode(body).fake_error)
    end
  end)

  it("reports the cash in won and 155 for a wrong key", function()
    fake:state{ balance = 1234 }
    assert.are.same({ remainCash = "1234" }, answer(fake, REMAIN_CASH, { { "api_key", MESSAGEME_KEY } }))
    assert.are.same({ result = "155" }, answer(fake, REMAIN_CASH, { { "api_key", "x" } }))
  end)

  it("forces every documented code through a script on any path", function()
    for _, c in ipairs({ "100", "155", "175", "185", "215", "225", "235", "315" }) do
      fake:script{ path = "*", result = c, times = 1 }
      assert.are.equal(c, code(FRIENDTALK, FRIEND, { api_key = "x" }))
    end
    assert.are.equal("155", code(FRIENDTALK, FRIEND, { api_key = "x" }))
  end)

  it("posts an MO webhook to a real server and reports its answer", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    server:settimeout(2)
    local _, port = server:getsockname()
    local id = fake:mo_async("http://127.0.0.1:" .. port .. "/hooks/mo",
                             { msg = "안녕 MO", phone = "01012345678" })
    local client = assert(server:accept())
    client:settimeout(2)
    local request_line = client:receive("*l")
    local headers = {}
    while true do
      local h = assert(client:receive("*l"))
      if h == "" then break end
      local name, value = h:match("^([^:]+):%s*(.*)$")
      headers[name:lower()] = value
    end
    local body = client:receive(tonumber(headers["content-length"]))
    client:send("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSUCCESS")
    client:close()
    server:close()
    local result
    wait_until("the MO result", 2, function()
      result = fake:mo_result(id)
      return result.done
    end)
    assert.are.equal("POST /hooks/mo HTTP/1.1", request_line)
    assert.are.equal("application/x-www-form-urlencoded", headers["content-type"])
    assert.are.same({ { "msg", "안녕 MO" }, { "phone", "01012345678" } }, (forms.parse_urlencoded(body)))
    assert.are.equal(200, result.status)
    assert.are.equal("SUCCESS", result.body)
  end)

  it("sends MO fields in the document's order, with [제목없음] for a long one", function()
    local result = assert(fake:mo(fake.base_url .. "/mo", {
      fileloc1 = "/mo/1.jpg", phone = "01012345678", msg = ("가"):rep(46) }))
    assert.are.equal(404, result.status)                  -- the fake itself has no /mo
    local recorded = fake:requests("/mo")[1]
    assert.are.same({ { "msg", ("가"):rep(46) }, { "phone", "01012345678" },
                      { "subject", "[제목없음]" }, { "fileloc1", "/mo/1.jpg" } }, recorded.form)
    local closed = assert(socket.bind("127.0.0.1", 0))
    local _, port = closed:getsockname()
    closed:close()
    local none, err = fake:mo("http://127.0.0.1:" .. port .. "/mo", { msg = "x" })
    assert.is_nil(none)
    assert.matches("connect", err)
  end)
end)

---------------------------------------------------------------- server behaviour

describe("fake server", function()
  local fake
  local SMS = { api_key = SENDERS_KEY, msg = "hi", callback = "0212345678",
                dstaddr = "01011112222", send_reserve = "0", call_block = "0" }
  local COIN = { { "api_key", SENDERS_KEY } }

  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("records raw bodies, ordered and decoded forms, queries and headers exactly", function()
    local body = "api_key=test-senders-key&msg=a+b%2Bc%20%ED%95%9C&msg=second&empty=&flag"
    local sock = connect(fake.port)
    sock:send(request_bytes("POST", REMAIN_COIN .. "?x=1&y=%20", body,
                            { FORM[1], { "X-Custom-Header", "Yes" } }))
    assert.are.equal(200, (read_response(sock)))
    sock:close()
    fake:stats()                                          -- control calls are not recorded
    local records = fake:requests()
    assert.are.equal(1, #records)
    local r = records[1]
    assert.are.equal(body, r.body)
    assert.are.same({ { "api_key", SENDERS_KEY }, { "msg", "a b+c 한" }, { "msg", "second" },
                      { "empty", "" }, { "flag", "" } }, r.form)
    assert.are.equal("POST", r.method)
    assert.are.equal(REMAIN_COIN, r.path)
    assert.are.equal("x=1&y=%20", r.query)
    assert.are.equal("Yes", r.headers["x-custom-header"])
    assert.are.equal(tostring(#body), r.headers["content-length"])
    assert.are.same({}, r.multipart)
    assert.is_number(r.at)
  end)

  it("records multipart parts with names, filenames, types and exact bytes", function()
    local image = "\255\216\255\224\0\1\r\n--not-a-boundary\r\n\0"
    local parts = { { name = "api_key", data = SENDERS_KEY },
                    { name = "image", filename = "a.jpg", content_type = "image/jpeg", data = image } }
    local body, content_type = forms.build_multipart(parts, "XyZ")
    fake:request("POST", REMAIN_COIN, body, { ["Content-Type"] = content_type })
    local r = fake:requests()[1]
    assert.are.equal(body, r.body)
    assert.are.same({ { "api_key", SENDERS_KEY } }, r.form)
    assert.are.equal(2, #r.multipart)
    assert.are.equal("image", r.multipart[2].name)
    assert.are.equal("a.jpg", r.multipart[2].filename)
    assert.are.equal("image/jpeg", r.multipart[2].content_type)
    assert.are.equal(image, r.multipart[2].data)
  end)

  it("keeps a connection alive, answers pipelined requests in order, and counts it", function()
    local sock = connect(fake.port)
    for _ = 1, 2 do
      sock:send(post_bytes(SMS_SEND, fields(SMS)))
      local status, _, body = read_response(sock)
      assert.are.equal(200, status)
      assert.are.equal('{"result":"100"}', body)
    end
    sock:send(post_bytes(SMS_SEND, fields(SMS)) .. post_bytes(REMAIN_COIN, COIN))
    assert.are.equal('{"result":"100"}', select(3, read_response(sock)))
    assert.are.equal('{"remainCoin":"99997"}', select(3, read_response(sock)))
    local other = connect(fake.port)
    other:send(post_bytes(REMAIN_COIN, COIN))
    assert.are.equal(200, (read_response(other)))
    sock:close()
    other:close()
    local stats = fake:stats()
    assert.are.equal(2, stats.connections)
    assert.are.equal(5, stats.requests)
    local conns, records = {}, fake:requests()
    for i, r in ipairs(records) do
      conns[i] = r.conn
      assert.are.equal(records[1].seq + i - 1, r.seq)
    end
    assert.are.same({ conns[1], conns[1], conns[1], conns[1], conns[5] }, conns)
    assert.are_not.equal(conns[1], conns[5])
  end)

  it("closes after answering a request that says Connection: close", function()
    local sock = connect(fake.port)
    sock:send(post_bytes(REMAIN_COIN, COIN, { { "Connection", "close" } }))
    local status, headers = read_response(sock)
    assert.are.equal(200, status)
    assert.are.equal("close", headers["connection"])
    assert.are.equal("closed", select(2, sock:receive("*l")))
    sock:close()
  end)

  it("reads chunked bodies and answers Expect: 100-continue", function()
    local sock = connect(fake.port)
    local body = forms.encode(COIN)
    local a, b = body:sub(1, 5), body:sub(6)
    sock:send(request_bytes("POST", REMAIN_COIN,
      string.format("%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n", #a, a, #b, b),
      { FORM[1], { "Transfer-Encoding", "chunked" } }))
    assert.are.equal('{"remainCoin":"100000"}', select(3, read_response(sock)))
    sock:send(request_bytes("POST", REMAIN_COIN, "", { FORM[1], { "Expect", "100-continue" },
                                                      { "Content-Length", #body } }))
    assert.are.equal("HTTP/1.1 100 Continue", sock:receive("*l"))
    assert.are.equal("", sock:receive("*l"))
    sock:send(body)
    assert.are.equal('{"remainCoin":"100000"}', select(3, read_response(sock)))
    sock:close()
    assert.are.equal(body, fake:requests()[1].body)
  end)

  it("delays one answer without holding up another connection", function()
    fake:script{ path = SMS_SEND, latency_ms = 300, times = 1 }
    local slow, quick = connect(fake.port), connect(fake.port)
    local t0 = socket.gettime()
    slow:send(post_bytes(SMS_SEND, fields(SMS)))
    wait_until("the slow request", 1, function() return #fake:requests() == 1 end)
    quick:send(post_bytes(REMAIN_COIN, COIN))
    assert.are.equal('{"remainCoin":"100000"}', select(3, read_response(quick)))
    local quick_done = socket.gettime() - t0
    assert.are.equal('{"result":"100"}', select(3, read_response(slow)))
    local slow_done = socket.gettime() - t0
    slow:close()
    quick:close()
    assert.is_true(quick_done < 0.25, "quick answer took " .. quick_done)
    assert.is_true(slow_done >= 0.29, "slow answer took " .. slow_done)
    assert.are.equal(2, fake:stats().max_in_flight)
  end)

  it("serves 50 connections at once", function()
    fake:script{ path = "*", latency_ms = 200 }
    local t0, socks = socket.gettime(), {}
    for i = 1, 50 do
      socks[i] = connect(fake.port)
      socks[i]:send(post_bytes(REMAIN_COIN, COIN))
    end
    for i = 1, 50 do
      assert.are.equal(200, (read_response(socks[i])))
      socks[i]:close()
    end
    local elapsed = socket.gettime() - t0
    assert.is_true(elapsed < 1, "50 answers delayed 200 ms each took " .. elapsed)
    local stats = fake:stats()
    assert.are.equal(50, stats.max_in_flight)
    assert.are.equal(50, stats.connections)
  end)

  it("answers malformed requests with 400 or 431 and closes", function()
    local sock = connect(fake.port)
    sock:send("NOT A REQUEST LINE\r\n\r\n")
    assert.are.equal(400, (read_response(sock)))
    assert.are.equal("closed", select(2, sock:receive("*l")))
    sock:close()
    sock = connect(fake.port)
    sock:send("POST / HTTP/1.1\r\nX-Big: " .. ("x"):rep(70000) .. "\r\n\r\n")
    assert.are.equal(431, (read_response(sock)))
    sock:close()
    assert.are.same({}, fake:requests())
  end)

  it("closes without answering on fault close, and does not act on the request", function()
    fake:script{ path = SMS_SEND, fault = "close", times = 1 }
    local sock = connect(fake.port)
    sock:send(post_bytes(SMS_SEND, fields(SMS)))
    assert.are.equal("closed", select(2, sock:receive("*l")))
    sock:close()
    assert.are.equal(1, #fake:requests())
    assert.are.equal(100000, fake:state().balance)
    fake:script{ path = SMS_SEND, fault = "close", times = 1, process = true }
    sock = connect(fake.port)
    sock:send(post_bytes(SMS_SEND, fields(SMS)))
    assert.are.equal("closed", select(2, sock:receive("*l")))
    sock:close()
    assert.are.equal(99999, fake:state().balance)       -- sent, but the answer was lost
  end)

  it("sends half an answer on fault half, then closes", function()
    fake:script{ path = SMS_SEND, fault = "half", times = 1 }
    local sock = connect(fake.port)
    sock:send(post_bytes(SMS_SEND, fields(SMS)))
    local data = sock:receive("*a")
    sock:close()
    local head, body = data:match("^(.-)\r\n\r\n(.*)$")
    assert.matches("^HTTP/1%.1 200 OK", head)
    assert.matches("Content%-Length: 16", head)
    assert.are.equal('{"result', body)      -- 8 of its 16 bytes
  end)

  it("answers bytes that are not HTTP on fault garbage", function()
    fake:script{ path = "*", fault = "garbage", times = 1 }
    local sock = connect(fake.port)
    sock:send(post_bytes(REMAIN_COIN, COIN))
    local data = sock:receive("*a")
    sock:close()
    assert.is_true(#data > 0)
    assert.is_nil(data:match("^HTTP/"))
  end)

  it("never answers on fault hang, keeping the connection open", function()
    fake:script{ path = REMAIN_COIN, fault = "hang", times = 1 }
    local sock = connect(fake.port)
    sock:send(post_bytes(REMAIN_COIN, COIN))
    sock:settimeout(0.2)
    assert.are.same({ nil, "timeout", "" }, { sock:receive("*l") })
    assert.are.equal(1, fake:stats().in_flight)
    assert.are.equal(200, (fake:post_form(REMAIN_COIN, COIN)))     -- others still served
    sock:close()
    wait_until("the hung request to end", 1, function() return fake:stats().in_flight == 0 end)
  end)

  it("answers a scripted status and body, and queues scripts in order", function()
    fake:script{ path = REMAIN_COIN, status = 500, body = "oops", times = 1 }
    local status, body = fake:post_form(REMAIN_COIN, COIN)
    assert.are.equal(500, status)
    assert.are.equal("oops", body)
    fake:script{ { path = SMS_SEND, result = "185", times = 2 }, { path = SMS_SEND, result = "315", times = 1 } }
    local seen = {}
    for i = 1, 4 do seen[i] = answer(fake, SMS_SEND, fields(SMS)).result end
    assert.are.same({ "185", "185", "315", "100" }, seen)
    fake:script{ path = SMS_SEND, result = "325" }                  -- no times: until reset
    for _ = 1, 3 do assert.are.equal("325", answer(fake, SMS_SEND, fields(SMS)).result) end
    fake:reset()
    assert.are.equal("100", answer(fake, SMS_SEND, fields(SMS)).result)
  end)

  it("refuses a malformed script or an unknown state key", function()
    assert.has_error(function() fake:script{ fault = "explode" } end)
    assert.has_error(function() fake:script{ reslt = "100" } end)
    assert.has_error(function() fake:state{ balanse = 0 } end)
    assert.are.same({}, fake:scripts())
  end)

  it("resets records, scripts, stats and state", function()
    fake:state{ balance = 3, senders = { "0299998888" } }
    fake:script{ path = "*", result = "155" }
    fake:post_form(SMS_SEND, fields(SMS))
    fake:reset()
    assert.are.same({}, fake:requests())
    assert.are.same({}, fake:scripts())
    local stats = fake:stats()
    assert.are.equal(0, stats.requests)
    assert.are.equal(0, stats.connections)
    assert.are.equal(100000, fake:state().balance)
    assert.are.equal("100", answer(fake, SMS_SEND, fields(SMS)).result)
  end)

  it("leaves no process behind after stop, nor after its idle limit", function()
    local other = fake_control.start("messageme")
    local pid, port = other.pid, other.port
    other:stop()
    assert.is_false(other:alive())
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"))      -- reaped, not a zombie
    local sock = socket.tcp()
    sock:settimeout(1)
    assert.is_nil((sock:connect("127.0.0.1", port)))
    sock:close()
    local idle = fake_control.start("senders", { idle_exit = 0.3 })
    wait_until("the idle fake to exit", 3, function() return not idle:alive() end)
    idle:stop()
    assert.is_nil(io.open("/proc/" .. idle.pid .. "/stat"))
  end)

  it("starts with the options it is given and fails loudly on bad ones", function()
    local other = fake_control.start("senders", { api_key = "k2", balance = 7, senders = { "0299998888" },
                                                 state = { costs = { sms = 2, lms = 3, mms = 6 } } })
    local ok, result = pcall(function()
      return answer(other, SMS_SEND, fields(SMS, { api_key = "k2", callback = "0299998888" })).result
    end)
    local coin = answer(other, REMAIN_COIN, { { "api_key", "k2" } }).remainCoin
    other:stop()
    assert.is_true(ok, result)
    assert.are.equal("100", result)
    assert.are.equal("5", coin)
    assert.has_error(function() fake_control.start("nosuch") end)
    assert.has_error(function() fake_control.start("senders", { state = { nokey = 1 } }) end)
  end)
end)
