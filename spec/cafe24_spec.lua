-- Cafe24 end to end over HTTPS against the fake Cafe24 server, with a
-- certificate this spec makes and trusts.
local ksms = require "ksms"
local fake_control = require "fake_control"
local schedule = require "ksms.rules.schedule"

local ID, KEY = "ksmstest", "test-cafe24-key"

local function decoded(req)
  local names, values = {}, {}
  for i, pair in ipairs(req.form) do
    local v = pair[2]
    if pair[1] ~= "mode" then v = ksms.core.b64decode(v) end
    names[i] = pair[1]; values[pair[1]] = v
  end
  return names, values
end

describe("cafe24", function()
  local cert, fake, client
  local function new_client(extra)
    local o = { user_id = ID, secure_key = KEY, base_url = fake.base_url, history_url = fake.history_url,
      ca_file = cert.cert, timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return ksms.client("cafe24", o)
  end
  setup(function()
    cert = fake_control.make_cert()
    fake = fake_control.start("cafe24", { tls = cert })
  end)
  teardown(function()
    if client then client:close() end
    fake:stop()
    fake_control.remove_cert(cert)
  end)
  before_each(function()
    fake:reset()
    if client then client:close() end
    client = new_client()
  end)

  it("sends over HTTPS with every field Base64, mode set, caller split, hyphens kept", function()
    assert.matches("^https://", fake.base_url)
    local res = assert(client:send { to = { "010-1111-2222", "01033334444" }, from = "02-1234-5678", text = "안녕하세요" })
    assert.equal("sms", res.kind)
    assert.equal("success", res.code)
    assert.is_number(res.remaining)
    local req = fake:requests()[1]
    assert.equal("/sms_sender.php", req.path)
    local names, f = decoded(req)
    assert.same({ "user_id", "secure", "sphone1", "sphone2", "sphone3", "rphone", "msg", "nointeractive", "mode" }, names)
    assert.equal("MQ==", f.mode)
    assert.equal("02", f.sphone1); assert.equal("1234", f.sphone2); assert.equal("5678", f.sphone3)
    assert.equal("010-1111-2222,010-3333-4444", f.rphone)
    assert.equal("안녕하세요", f.msg)
  end)

  it("refuses a server whose certificate it does not trust", function()
    local untrusting = ksms.client("cafe24", { user_id = ID, secure_key = KEY, base_url = fake.base_url, timeout = 5 })
    local res, err = untrusting:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.is_nil(res)
    assert.equal("network", err.category)
    assert.equal("tls", err.code)
    assert.is_false(err.maybe_sent)
    untrusting:close()
    assert.equal(0, #fake:requests())
  end)

  it("sends LMS with smsType=L and a subject, and reservations split into rdate/rtime", function()
    local at = os.time() + 3600
    local res = assert(client:send { to = "01011112222", from = "0212345678", subject = "안내",
      text = ("가"):rep(60), at = at })
    assert.equal("lms", res.kind)
    assert.equal("reserved", res.code)
    local names, f = decoded(fake:requests()[1])
    assert.same({ "user_id", "secure", "sphone1", "sphone2", "sphone3", "rphone", "subject", "msg", "rdate",
      "rtime", "nointeractive", "smsType", "mode" }, names)
    assert.equal("L", f.smsType)
    assert.equal(schedule.format(at, "YYYYMMDD"), f.rdate)
    assert.equal(schedule.format(at, "hhmmss"), f.rtime)
  end)

  it("refuses a reservation less than 10 minutes ahead, and strict EUC-KR text, before sending", function()
    local _, e1 = client:send { to = "01011112222", from = "0212345678", text = "x", at = os.time() + 300 }
    assert.equal("schedule", e1.category)
    assert.equal("too_soon", e1.code)
    local _, e2 = client:send { to = "01011112222", from = "0212345678", text = "됬어요" }
    assert.equal("charset", e2.code)
    assert.matches("'됬' at 1", e2.message)
    local _, e3 = client:send { to = "01011112222", from = "0212345678", text = "웃음 😀" }
    assert.equal("charset", e3.code)
    assert.equal(0, #fake:requests())
  end)

  it("repeats sends and substitutes names", function()
    assert(client:send { to = "01011112222", from = "0212345678", text = "반복", ["repeat"] = { count = 3, interval = 15 } })
    local names, f = decoded(fake:requests()[1])
    assert.equal("Y", f.repeatFlag); assert.equal("3", f.repeatNum); assert.equal("15", f.repeatTime)
    assert.same({ "user_id", "secure", "sphone1", "sphone2", "sphone3", "rphone", "msg", "nointeractive",
      "repeatFlag", "repeatNum", "repeatTime", "mode" }, names)
    local _, bad = client:send { to = "01011112222", from = "0212345678", text = "x", ["repeat"] = { count = 11, interval = 15 } }
    assert.equal("repeat", bad.code)
    local _, bad2 = client:send { to = "01011112222", from = "0212345678", text = "x", ["repeat"] = { count = 2, interval = 10 } }
    assert.equal("repeat", bad2.code)
    assert(client:send { names = { { "010-1111-2222", "홍길동" }, { "01033334444", "김철수" } },
      from = "0212345678", text = "{name}님 안녕하세요" })
    local _, g = decoded(fake:requests()[2])
    assert.equal("", g.rphone)
    assert.equal("010-1111-2222|홍길동,010-3333-4444|김철수", g.destination)
    assert.equal(2, #fake:requests())
  end)

  it("splits recipients into requests of at most 999", function()
    local to = {}
    for i = 1, 1000 do to[i] = ("010%08d"):format(40000000 + i) end
    local res = assert(client:send { to = to, from = "0212345678", text = "대량" })
    assert.equal(1000, res.recipients)
    local sizes = {}
    for _, r in ipairs(fake:requests()) do
      local _, f = decoded(r)
      local n = select(2, f.rphone:gsub(",", "")) + 1
      sizes[#sizes + 1] = n
    end
    table.sort(sizes)
    assert.same({ 1, 999 }, sizes)
  end)

  it("does a dry run with testflag=Y", function()
    local dry = new_client { test = true }
    local res = assert(dry:send { to = "01011112222", from = "0212345678", text = "테스트" })
    assert.is_true(res.test)
    assert.equal("test", res.code)
    local _, f = decoded(fake:requests()[1])
    assert.equal("Y", f.testflag)
    dry:close()
  end)

  local codes = { { "-102", "auth" }, { "-114", "sender_number" }, { "-201", "balance" }, { "-202", "invalid_input" },
    { "-105", "schedule" }, { "0004", "message_length" }, { "3218", "duplicate" }, { "-100", "server" } }
  for _, c in ipairs(codes) do
    it("maps answer " .. c[1] .. " to " .. c[2], function()
      fake:script { path = "/sms_sender.php", result = c[1], times = 1 }
      local _, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert.equal(c[2], err.category)
      assert.equal(c[1], err.code)
      assert.is_string(err.description_ko)
    end)
  end

  it("maps LMS/MMS answers from their own table", function()
    fake:script { path = "/sms_sender.php", result = "204", times = 1 }
    local _, err = client:send { to = "01011112222", from = "0212345678", text = ("가"):rep(50) }
    assert.equal("recipient", err.category)
    assert.equal("단말기 전원 꺼짐", err.description_ko)
  end)

  it("gets codes from real input: wrong key, unregistered caller", function()
    local bad = new_client { secure_key = "nope" }
    local _, e1 = bad:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("auth", e1.category)
    bad:close()
    local _, e2 = client:send { to = "01011112222", from = "0299998888", text = "x" }
    assert.equal("sender_number", e2.category)
  end)

  it("reports the balance and the registered caller numbers", function()
    local b = assert(client:balance())
    assert.is_number(b.balance)
    assert.equal("/sms_remain.php", fake:requests()[1].path)
    local s = assert(client:sender_numbers())
    local found = {}
    for _, n in ipairs(s.numbers) do found[n.number] = true end
    assert.is_true(found["0212345678"])
    assert.is_true(found["15884567"])
    local one = assert(client:sender_numbers("010-1234-5678"))
    assert.equal(1, #one.numbers)
  end)

  it("reads the history from its own host with a real XML parser", function()
    assert(client:send { to = "010-1111-2222", from = "0212345678", text = "기록 <1> & \"2\"" })
    assert(client:send { to = "010-3333-4444", from = "0212345678", text = "두번째" })
    local h = assert(client:history { days = 1, count = 10 })
    assert.equal("0000", h.code)
    assert.equal(2, #h.records)
    local texts = {}
    for _, r in ipairs(h.records) do texts[r.text] = r end
    assert.truthy(texts["기록 <1> & \"2\""])
    assert.equal("010-1111-2222", texts["기록 <1> & \"2\""].to)
    local req = fake.history:requests()
    assert.equal("/sms_list.php", req[#req].path)
    local only = assert(client:history { to = "010-3333-4444" })
    assert.equal(1, #only.records)
    local _, err = client:history { days = 8 }
    assert.equal("days", err.code)
  end)
end)
