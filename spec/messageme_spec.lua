-- MessageMe end to end: SMS, AlimTalk, FriendTalk, balance and the MO
-- webhook, against the fake MessageMe server (a real process).
local ksms = require "ksms"
local cjson = require "cjson"
local fake_control = require "fake_control"
local messageme = require "ksms.providers.messageme"
local schedule = require "ksms.rules.schedule"

local KEY = "test-messageme-key"

local form_of = require("spec_helper").form_of

describe("messageme", function()
  local fake, client
  setup(function() fake = fake_control.start("messageme") end)
  teardown(function()
    if client then client:close() end
    fake:stop()
  end)
  before_each(function()
    fake:reset()
    if client then client:close() end
    client = ksms.client("messageme", { api_key = KEY, base_url = fake.base_url, timeout = 5 })
  end)

  it("sends SMS on its own path, without Senders' call_block", function()
    local res = assert(client:send { to = { "010-1111-2222", "010-3333-4444" }, from = "0212345678", text = "메세지미" })
    assert.equal("sms", res.kind)
    local req = fake:requests()[1]
    assert.equal("/APIV2/API/sms_send", req.path)
    local names, f = form_of(req)
    assert.same({ "api_key", "msg", "callback", "dstaddr", "send_reserve" }, names)
    assert.equal("01011112222|01033334444", f.dstaddr)
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678", text = "x", opt_out = true } end)
  end)

  it("reports the cash balance", function()
    local b = assert(client:balance())
    assert.equal(100000, b.balance)
    assert.equal("won", b.unit)
    assert.equal("/APIV2/API/remainCash", fake:requests()[1].path)
  end)

  it("sends an AlimTalk with variables joined by |, a fallback and a reservation", function()
    local at = os.time() + 3600
    local res = assert(client:alimtalk { template = "ORDER_02", variables = { "홍길동", "A-1001" },
      to = "010-1111-2222", from = "0212345678", fallback = true, at = at })
    assert.is_true(res.ok)
    assert.equal("alimtalk", res.kind)
    local req = fake:requests()[1]
    assert.equal("/APIV2/API/alimtalk_send", req.path)
    local names, f = form_of(req)
    assert.same({ "api_key", "template_code", "variable", "callback", "dstaddr", "send_reserve",
      "send_reserve_date", "next_type" }, names)
    assert.equal("홍길동|A-1001", f.variable)
    assert.equal("1", f.next_type)
    assert.equal(schedule.format(at, "YYYY|MM|DD|hh|mm|ss"), f.send_reserve_date)
  end)

  it("sends one AlimTalk request per recipient and combines the outcome", function()
    local res = assert(client:alimtalk { template = "WELCOME_01", variables = { "고객" },
      to = { "01011112222", "01033334444", "01055556666" }, from = "0212345678" })
    assert.equal(3, res.recipients)
    local reqs = fake:requests()
    assert.equal(3, #reqs)
    local _, f = form_of(reqs[1])
    assert.equal("0", f.next_type)
  end)

  it("refuses an AlimTalk variable containing the separator, before sending", function()
    local res, err = client:alimtalk { template = "ORDER_02", variables = { "a|b", "c" },
      to = "01011112222", from = "0212345678" }
    assert.is_nil(res)
    assert.equal("invalid_input", err.category)
    assert.equal("variable", err.code)
    assert.equal(0, #fake:requests())
  end)

  it("maps template and variable errors from the provider", function()
    local _, e1 = client:alimtalk { template = "NOPE", variables = { "x" }, to = "01011112222", from = "0212345678" }
    assert.equal("template", e1.category)
    assert.equal("215", e1.code)
    local _, e2 = client:alimtalk { template = "ORDER_02", variables = { "only one" }, to = "01011112222", from = "0212345678" }
    assert.equal("template", e2.category)
    assert.equal("235", e2.code)
  end)

  it("sends a FriendTalk with a button, an image and its link", function()
    assert(client:friendtalk { channel = "@ksms", text = "이번 주 할인 소식 😀", to = "01011112222",
      from = "0212345678", button = { name = "쇼핑하기", url = "https://shop.example.com/sale" },
      image = "https://cdn.example.com/banner.jpg", image_link = "https://shop.example.com/" })
    local req = fake:requests()[1]
    assert.equal("/APIV2/API/friendstalk_send", req.path)
    local names, f = form_of(req)
    assert.same({ "api_key", "kakaochannel", "msg", "button_type", "button_name", "button_url", "image",
      "image_link_url", "callback", "dstaddr", "send_reserve", "next_type" }, names)
    assert.equal("1", f.button_type)
    assert.equal("이번 주 할인 소식 😀", f.msg)
  end)

  it("checks FriendTalk limits before sending", function()
    local base = { channel = "@ksms", to = "01011112222", from = "0212345678" }
    local function ft(extra)
      local m = {}
      for k, v in pairs(base) do m[k] = v end
      for k, v in pairs(extra) do m[k] = v end
      return client:friendtalk(m)
    end
    local _, e1 = ft { text = ("가"):rep(1001) }
    assert.equal("message_length", e1.category)
    local _, e2 = ft { text = ("가"):rep(401), image = "https://x.example/a.jpg" }
    assert.equal("message_length", e2.category)
    assert(ft { text = ("가"):rep(1000) })
    local _, e3 = ft { text = "x", button = { name = "열한글자버튼이름입니다", url = "https://x" } }
    assert.equal("button", e3.code)
    local _, e4 = ft { text = "x", button = { name = "go", url = "www.example.com" } }
    assert.equal("button_url", e4.code)
    local _, e5 = ft { text = "x", image = "https://x.example/a.jpg", image_link = "example.com" }
    assert.equal("image_link_url", e5.code)
    local _, e6 = ft { text = "웃어요 😀", fallback = true }
    assert.equal("charset", e6.code)
    assert.equal(1, #fake:requests())
  end)

  it("raises on programmer errors before looking at the data", function()
    assert.has_error(function() client:alimtalk { to = "bad", from = "0212345678" } end)
    assert.has_error(function() client:friendtalk { text = "x", to = "bad", from = "0212345678" } end)
    assert.has_error(function() client:friendtalk { channel = "@ksms", to = "01011112222", from = "0212345678" } end)
    assert.has_error(function() client:alimtalk { template = "T", variables = { {} }, to = "01011112222", from = "0212345678" } end)
    assert.has_error(function() client:alimtalk { template = "T", to = "01011112222", from = "0212345678", fallback = "yes" } end)
    assert.equal(0, #fake:requests())
  end)

  it("maps an unknown channel to 175", function()
    local _, err = client:friendtalk { channel = "@nobody", text = "x", to = "01011112222", from = "0212345678" }
    assert.equal("channel", err.category)
    assert.equal("175", err.code)
  end)

  local codes = { { "155", "auth" }, { "175", "channel" }, { "185", "balance" }, { "215", "template" },
    { "225", "message_length" }, { "235", "template" }, { "315", "sender_number" } }
  for _, c in ipairs(codes) do
    it("maps return code " .. c[1] .. " to " .. c[2], function()
      fake:script { result = c[1], times = 1 }
      local _, err = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert.equal(c[2], err.category)
      assert.equal(c[1], err.code)
      assert.equal("messageme", err.provider)
    end)
  end

  describe("MO webhook", function()
    it("parses the posted fields, making image URLs absolute", function()
      local mo = assert(messageme.parse_mo {
        msg = "사진 보냅니다", phone = "010-1234-5678", subject = "[제목없음]",
        fileloc1 = "/upload/mo/1.jpg", fileloc2 = "", fileloc3 = "http://img.example/3.jpg" })
      assert.equal("01012345678", mo.from)
      assert.equal("사진 보냅니다", mo.text)
      assert.is_nil(mo.subject)
      assert.same({ "http://www.messageme.co.kr/upload/mo/1.jpg", "http://img.example/3.jpg" }, mo.images)
      local raw = assert(messageme.parse_mo("msg=%EC%95%88%EB%85%95+hi&phone=01012345678&subject=%EC%A0%9C%EB%AA%A9",
        { image_base = "https://mo.example" }))
      assert.equal("안녕 hi", raw.text)
      assert.equal("제목", raw.subject)
      assert.same({}, raw.images)
      local bad, err = messageme.parse_mo { msg = "x", phone = "nope" }
      assert.is_nil(bad)
      assert.equal("sender_number", err.category)
      assert.has_error(function() messageme.parse_mo(42) end)
    end)

    it("works end to end: the fake posts an MO to the example handler", function()
      local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
      local pipe = assert(io.popen(lua .. " examples/messageme_mo_server.lua 0 --max 1", "r"))
      local port = tonumber(pipe:read("*l"):match("LISTENING (%d+)"))
      local answer = assert(fake:mo("http://127.0.0.1:" .. port .. "/mo", {
        msg = "MO 테스트", phone = "01099998888", subject = "제목", fileloc1 = "/mo/a.jpg" }))
      assert.equal(200, answer.status)
      local line = pipe:read("*l")
      pipe:close()
      local got = cjson.decode(line)
      assert.equal("01099998888", got.from)
      assert.equal("MO 테스트", got.text)
      assert.equal("제목", got.subject)
      assert.same({ "http://www.messageme.co.kr/mo/a.jpg" }, got.images)
    end)
  end)
end)
