-- ppurio end to end against the fake ppurio server (a real process).
local ksms = require "ksms"
local fake_control = require "fake_control"
local schedule = require "ksms.rules.schedule"

local KEY, ID = "test-ppurio-key", "ksmstest"

local form_of = require("spec_helper").form_of

-- A minimal JPEG-looking file of n bytes (the fake checks the FF D8 FF start).
local function jpeg(n)
  return "\255\216\255\224" .. ("j"):rep(n - 4)
end

describe("ppurio", function()
  local fake, client
  local tmpfiles = {}
  setup(function() fake = fake_control.start("ppurio") end)
  teardown(function()
    if client then client:close() end
    fake:stop()
    for _, f in ipairs(tmpfiles) do os.remove(f) end
  end)
  before_each(function()
    fake:reset()
    if client then client:close() end
    client = ksms.client("ppurio", { client_id = ID, api_key = KEY, base_url = fake.base_url, timeout = 5 })
  end)

  it("sends an SMS with the lower-case auth header, client id in the path, comma-joined recipients", function()
    local res = assert(client:send { to = { "010-1111-2222", "010-3333-4444" }, from = "02-1234-5678",
      text = "안녕하세요", from_name = "케이에스", to_name = "고객" })
    assert.equal("sms", res.kind)
    assert.equal("200", res.code)
    assert.is_string(res.id)
    assert.equal(res.id, res.cmid)
    local req = fake:requests()[1]
    assert.equal("/ppurio/1/message/sms/" .. ID, req.path)
    assert.equal(KEY, req.headers["x-waple-authorization"])
    local sent_as
    for _, name in ipairs(req.header_names) do
      if name:lower() == "x-waple-authorization" then sent_as = name end
    end
    assert.equal("x-waple-authorization", sent_as) -- exactly lower case on the wire
    local names, f = form_of(req)
    assert.same({ "send_phone", "dest_phone", "send_name", "dest_name", "msg_body" }, names)
    assert.equal("01011112222,01033334444", f.dest_phone)
    assert.equal("0212345678", f.send_phone)
  end)

  it("sends LMS with a subject and a reservation as 14 digits in Korea time", function()
    local at = os.time() + 3600
    local res = assert(client:send { to = "01011112222", from = "0212345678", subject = "공지",
      text = ("가"):rep(100), at = at })
    assert.equal("lms", res.kind)
    local req = fake:requests()[1]
    assert.equal("/ppurio/1/message/lms/" .. ID, req.path)
    local names, f = form_of(req)
    assert.same({ "send_time", "send_phone", "dest_phone", "subject", "msg_body" }, names)
    assert.equal(schedule.format(at, "YYYYMMDDhhmmss"), f.send_time)
  end)

  it("uploads MMS images as multipart file parts, byte for byte", function()
    local path = os.tmpname() .. ".jpg"
    tmpfiles[#tmpfiles + 1] = path
    local f = assert(io.open(path, "wb")); f:write(jpeg(5000)); f:close()
    local second = jpeg(7000)
    local res = assert(client:send { to = "01011112222", from = "0212345678", text = "사진", subject = "앨범",
      image = { path, { data = second, filename = "b.jpg" } } })
    assert.equal("mms", res.kind)
    local req = fake:requests()[1]
    assert.equal("/ppurio/1/message/mms/" .. ID, req.path)
    assert.matches("^multipart/form%-data; boundary=", req.headers["content-type"])
    local files = {}
    for _, p in ipairs(req.multipart) do if p.filename then files[#files + 1] = p end end
    assert.equal(2, #files)
    assert.equal("file", files[1].name)
    assert.equal(jpeg(5000), files[1].data)
    assert.equal(second, files[2].data)
    assert.equal("b.jpg", files[2].filename)
    -- The whole body, rebuilt with the same boundary, is what went out.
    local boundary = req.headers["content-type"]:match("boundary=(.+)$")
    local parts = {}
    for _, p in ipairs(req.multipart) do
      parts[#parts + 1] = p.filename and { name = p.name, data = p.data, filename = p.filename,
        content_type = p.content_type } or { name = p.name, value = p.data }
    end
    assert.equal(ksms.core.multipart_body(parts, boundary), req.body)
  end)

  it("checks images before sending: JPEG only, at most 3, 20 KB each, 40 KB in all", function()
    local cases = {
      { "not a jpeg", { { data = "\137PNG....", filename = "a.png" } } },
      { "too big", { { data = jpeg(20 * 1024 + 1), filename = "a.jpg" } } },
      { "too many", { { data = jpeg(10) }, { data = jpeg(10) }, { data = jpeg(10) }, { data = jpeg(10) } } },
      { "too much in all", { { data = jpeg(15000) }, { data = jpeg(15000) }, { data = jpeg(15000) } } },
      { "missing file", { "/nonexistent/x.jpg" } },
    }
    for _, case in ipairs(cases) do
      local res, err = client:send { to = "01011112222", from = "0212345678", text = "x", image = case[2] }
      assert.is_nil(res, case[1])
      assert.equal("image", err.code, case[1])
    end
    assert(client:send { to = "01011112222", from = "0212345678", text = "x",
      image = { { data = jpeg(20 * 1024) }, { data = jpeg(20 * 1024) } } })
    assert.equal(1, #fake:requests())
  end)

  it("refuses characters outside KS C 5601 and long names or subjects before sending", function()
    local _, e1 = client:send { to = "01011112222", from = "0212345678", text = "됬어요" }
    assert.equal("charset", e1.code)
    local _, e2 = client:send { to = "01011112222", from = "0212345678", text = "x", from_name = ("가"):rep(16) }
    assert.equal("message_length", e2.category)
    local _, e3 = client:send { to = "01011112222", from = "0212345678", text = ("가"):rep(50), subject = ("가"):rep(30) }
    assert.equal("message_length", e3.category)
    local _, e4 = client:send { to = "01011112222", from = "0212345678", text = ("가"):rep(1000) }
    assert.equal("message_length", e4.category)
    assert.equal(0, #fake:requests())
  end)

  local codes = { { "100", "auth" }, { "300", "invalid_input" }, { "400", "server" },
    { "500", "sender_number" }, { "600", "balance" } }
  for _, c in ipairs(codes) do
    it("maps result code " .. c[1] .. " to " .. c[2], function()
      fake:script { result = c[1], times = 1 }
      local _, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert.equal(c[2], err.category)
      assert.equal(c[1], err.code)
      assert.equal("ppurio", err.provider)
    end)
  end

  it("gets codes from real input: wrong key, unregistered caller, balance", function()
    local bad = ksms.client("ppurio", { client_id = ID, api_key = "nope", base_url = fake.base_url })
    local _, e1 = bad:send { to = "01011112222", from = "0212345678", text = "x" }
    assert.equal("auth", e1.category)
    bad:close()
    local _, e2 = client:send { to = "01011112222", from = "0299998888", text = "x" }
    assert.equal("sender_number", e2.category)
    fake:state { balance = 20 }
    local _, e3 = client:send { to = { "01011112222", "01033334444" }, from = "0212345678", text = "x" }
    assert.equal("balance", e3.category)
    assert.matches("01033334444", e3.message)
  end)

  it("reads delivery reports through the appendix tables", function()
    local res = assert(client:send { to = "01011112222", from = "0212345678", text = "리포트" })
    local rep = assert(client:report(res.cmid))
    assert.is_true(rep.delivered)
    assert.equal("delivered", rep.status)
    assert.equal("4100", rep.call_status)
    assert.equal("전달", rep.description_ko)
    local req = fake:requests()[2]
    assert.equal("GET", req.method)
    assert.equal("cmid=" .. res.cmid, req.query)
    local cases = { { "4410", "recipient", "잘못된번호" }, { "6601", "timeout", "타임아웃" },
      { "4434", "sender_number" }, { "9903", "balance" }, { "6621", "message_length" }, { "9010", "auth" },
      { "-1", "invalid_input" } }
    for _, c in ipairs(cases) do
      fake:state { reports = { [res.cmid] = c[1] } }
      local r = assert(client:report(res.cmid))
      assert.is_false(r.delivered, c[1])
      assert.equal("failed", r.status)
      assert.equal(c[2], r.category, c[1])
      if c[3] then assert.equal(c[3], r.description_ko) end
    end
    local _, err = client:report("nosuchcmid")
    assert.equal("invalid_input", err.category)
    assert.has_error(function() client:report() end)
  end)

  it("registers and lists caller numbers, checking the numbering rules first", function()
    local r = assert(client:register_sender("031-123-4567", "경기 사무실"))
    assert.equal("0311234567", r.number)
    local _, dup = client:register_sender("0311234567", "again")
    assert.equal("duplicate", dup.category)
    local list = assert(client:sender_numbers())
    local found = false
    for _, n in ipairs(list.numbers) do if n.number == "0311234567" then found = n.comment == "경기 사무실" end end
    assert.is_true(found)
    local one = assert(client:sender_numbers("02-1234-5678"))
    assert.equal(1, #one.numbers)
    assert.equal("sendnumber=0212345678", fake:requests()[#fake:requests()].query)
    local before = #fake:requests()
    local _, bad = client:register_sender("12345", "short")
    assert.equal("sender_number", bad.category)
    assert.equal(before, #fake:requests())
    assert.has_error(function() client:register_sender("0311234567") end)
  end)

  it("has no balance call, and says so", function()
    assert.is_false(client.capabilities.balance)
    assert.has_error(function() client:balance() end)
  end)
end)
