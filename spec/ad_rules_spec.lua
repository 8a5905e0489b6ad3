-- Advertising messages (ksms.rules.ad, docs/ads.md): the composition rules
-- on a table of texts, the night rule on the clock at 20:59, 21:00, 07:59
-- and 08:00 Korea time under several host time zones, and end to end
-- against the Senders and OneShot fakes (real processes on 127.0.0.1).
local ksms = require "ksms"
local ad = require "ksms.rules.ad"
local core = require "ksms.core"
local schedule = require "ksms.rules.schedule"
local fake_control = require "fake_control"
local H = require "spec_helper"

local NAME, OPT_OUT = "ksms상사", "080-123-4567"
local FOOTER = "\n무료거부 080-123-4567"

local function kst(h, m, day)
  -- A year ahead of any real clock: the Senders fake refuses a past reservation.
  return schedule.from_kst { year = 2030, month = 12, day = day or 2, hour = h, min = m }
end

describe("ksms.rules.ad compose", function()
  local opts = { name = NAME, opt_out = "0801234567", kind = "sms" }

  -- text, the composed text (nil: refused), the refusal's reason
  local cases = {
    { "할인 행사", "(광고)ksms상사\n할인 행사" .. FOOTER },
    { "(광고)ksms상사 할인 행사", "(광고)ksms상사 할인 행사" .. FOOTER },
    { "(광고)ksms상사\n할인 행사\n무료거부 080-123-4567", "(광고)ksms상사\n할인 행사\n무료거부 080-123-4567" },
    { "할인 행사\n무료수신거부: 0809876543", "(광고)ksms상사\n할인 행사\n무료수신거부: 0809876543" },
    { "할인\n무료거부 080 123 4567\n\n", "(광고)ksms상사\n할인\n무료거부 080 123 4567\n\n" },
    { "(광 고)ksms상사 할인", nil, "prefix" },
    { "[광고]ksms상사 할인", nil, "prefix" },
    { "( 광고 )ksms상사 할인", nil, "prefix" },
    { "<광고>ksms상사 할인", nil, "prefix" },
    { "할인 【광고】 행사", nil, "prefix" },
    { "(광고)다른회사 할인", nil, "name" },
    { "할인\n수신거부 02-123-4567", nil, "opt_out" },
    { "할인\n무료거부 02-123-4567", nil, "opt_out" },
  }
  for _, c in ipairs(cases) do
    it(("%q"):format(c[1]), function()
      local out, err = ad.compose(c[1], opts)
      if c[2] then
        assert.equal(c[2], out)
        assert.equal(c[1]:sub(1, 8) ~= "(광고)", err.prefixed)
        assert.equal(not c[1]:find("무료", 1, true), err.footed)
      else
        assert.is_nil(out)
        assert.equal("invalid_input", err.category)
        assert.equal("ad_rules", err.code)
        assert.equal(c[3], err.reason)
        assert.matches("advertising message", tostring(err))
      end
    end)
  end

  it("refuses a missing name and an opt-out number that is not 080", function()
    local out, err = ad.compose("할인", { opt_out = OPT_OUT })
    assert.is_nil(out)
    assert.equal("ad_rules", err.code)
    assert.equal("name", err.reason)
    out, err = ad.compose("할인", { name = NAME, opt_out = "02-123-4567" })
    assert.is_nil(out)
    assert.equal("ad_rules", err.code)
    assert.equal("opt_out", err.reason)
    out, err = ad.compose("할인", { name = NAME })
    assert.is_nil(out)
    assert.equal("opt_out", err.reason)
  end)

  it("formats 080 numbers of 10 and 11 digits", function()
    assert.equal("080-123-4567", ad.opt_out_number("080 123 4567"))
    assert.equal("080-1234-5678", ad.opt_out_number("08012345678"))
    assert.is_nil(ad.opt_out_number("0801234"))
  end)
end)

describe("ksms.rules.ad night", function()
  it("is night from 21:00 to 07:59 Korea time, and holds until the next 08:00", function()
    assert.is_false(ad.is_night(kst(20, 59)))
    assert.is_true(ad.is_night(kst(21, 0)))
    assert.is_true(ad.is_night(kst(7, 59)))
    assert.is_false(ad.is_night(kst(8, 0)))
    assert.equal(kst(8, 0, 3), ad.morning(kst(21, 0)))
    assert.equal(kst(8, 0, 2), ad.morning(kst(7, 59)))
    assert.equal(kst(8, 0, 3), ad.morning(kst(23, 59) + 59))
    assert.is_true(ad.night(kst(20, 59)))
    assert.is_true(ad.night(kst(21, 0), { consent = true }))
    assert.equal(kst(8, 0, 3), ad.night(kst(21, 0), { night = "hold", can_hold = true }))
    local ok, err = ad.night(kst(21, 0), { night = "hold", can_hold = false })
    assert.is_nil(ok)
    assert.equal("ad_night", err.code)
    assert.equal("cannot_hold", err.reason)
    ok, err = ad.night(kst(7, 59))
    assert.is_nil(ok)
    assert.equal("invalid_input", err.category)
    assert.equal("ad_night", err.code)
    assert.matches("2030%-12%-02 07:59 KST", err.message)
  end)

  it("decides the same under TZ=UTC, Asia/Seoul and America/New_York (a child process each)", function()
    local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
    local script = [[
local ksms = require "ksms"
local s = require "ksms.rules.schedule"
local out = {}
for _, hm in ipairs { { 20, 59 }, { 21, 0 }, { 7, 59 }, { 8, 0 } } do
  local t = s.from_kst { year = 2026, month = 12, day = 2, hour = hm[1], min = hm[2] }
  local c = ksms.client("senders", { api_key = "k", base_url = "http://127.0.0.1:9",
    now = function() return t end, ad = { name = "n", opt_out = "0801234567" } })
  local ok, err = c:check { to = "01011112222", from = "0212345678", text = "x", ad = true }
  local held = c:check { to = "01011112222", from = "0212345678", text = "x", ad = true, night = "hold" } and
    select(2, c:check { to = "01011112222", from = "0212345678", text = "x", ad = true, night = "hold" }).held_until
  out[#out + 1] = (ok and "ok" or err.code) .. ":" .. (held and s.format(held, "DD hh:mm") or "-")
  c:close()
end
io.write(table.concat(out, " "))
]]
    local path = os.tmpname()
    H.write_file(path, script)
    local results = {}
    for _, tz in ipairs { "UTC", "Asia/Seoul", "America/New_York" } do
      local out, ok = H.run(("TZ=%s %s %s"):format(tz, lua, path))
      assert.is_true(ok, out)
      results[tz] = out
    end
    os.remove(path)
    assert.equal("ok:- ad_night:03 08:00 ad_night:02 08:00 ok:-", results.UTC)
    assert.equal(results.UTC, results["Asia/Seoul"])
    assert.equal(results.UTC, results["America/New_York"])
  end)
end)

describe("ads against the Senders fake", function()
  local fake, client
  local clock = kst(12, 0)
  local form_of = H.form_of

  setup(function() fake = fake_control.start("senders") end)
  teardown(function()
    if client then client:close() end
    fake:stop()
  end)
  before_each(function()
    fake:reset()
    clock = kst(12, 0)
    if client then client:close() end
    client = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url, timeout = 5,
      now = function() return clock end, ad = { name = NAME, opt_out = OPT_OUT } })
  end)

  it("sends the composed text with call_block = 1", function()
    local res = assert(client:send { to = "01011112222", from = "0212345678", text = "할인 행사", ad = true })
    local composed = "(광고)ksms상사\n할인 행사" .. FOOTER
    assert.equal(composed, res.text)
    assert.equal(core.cp949_len(composed), res.bytes)
    local reqs = fake:requests()
    assert.equal(1, #reqs)
    local _, f = form_of(reqs[1])
    assert.equal(composed, f.msg)
    assert.equal("1", f.call_block)
    assert.equal("0", f.send_reserve)
  end)

  it("shows in check that the prefix and footer made an SMS an LMS, with the bytes", function()
    local text = ("가"):rep(30) -- 60 bytes: an SMS alone
    local ok, plain = client:check { to = "01011112222", from = "0212345678", text = text }
    assert.is_true(ok)
    assert.equal("sms", plain.kind)
    assert.equal(60, plain.bytes)
    local ok2, info = client:check { to = "01011112222", from = "0212345678", text = text, ad = true }
    assert.is_true(ok2)
    assert.equal("lms", info.kind)
    assert.equal(core.cp949_len(info.text), info.bytes)
    assert.is_true(info.bytes > 90)
    assert.equal("(광고)ksms상사\n" .. text .. FOOTER, info.text)
    assert.equal(0, #fake:requests())
  end)

  it("refuses an ad at 21:00 KST before anything is sent, and sends it with night_consent", function()
    clock = kst(21, 0)
    local res, err = client:send { to = "01011112222", from = "0212345678", text = "할인", ad = true }
    assert.is_nil(res)
    assert.equal("invalid_input", err.category)
    assert.equal("ad_night", err.code)
    assert.equal("senders", err.provider)
    assert.equal(0, #fake:requests())
    res = assert(client:send { to = "01011112222", from = "0212345678", text = "할인", ad = true, night_consent = true })
    assert.is_true(res.ok)
    assert.equal(1, #fake:requests())
  end)

  it("holds an ad at 07:59 KST until 08:00 as a reservation with night = \"hold\"", function()
    clock = kst(7, 59)
    local res = assert(client:send { to = "01011112222", from = "0212345678", text = "할인", ad = true, night = "hold" })
    assert.equal(kst(8, 0), res.held_until)
    local _, f = form_of(fake:requests()[1])
    assert.equal("1", f.send_reserve)
    assert.equal("2030|12|02|08|00|00", f.send_reserve_date)
  end)

  it("puts (광고) at the start of an ad's LMS subject, keeps one already there, and refuses a look-alike", function()
    local text = ("가"):rep(50)
    local res = assert(client:send { to = "01011112222", from = "0212345678", text = text, subject = "주말 할인", ad = true })
    assert.equal("(광고)주말 할인", res.subject)
    local _, f = form_of(fake:requests()[1])
    assert.equal("(광고)주말 할인", f.subject)
    local ok, info = client:check { to = "01011112222", from = "0212345678", text = text, subject = "(광고)주말", ad = true }
    assert.is_true(ok)
    assert.equal("(광고)주말", info.subject)
    local res2, err = client:send { to = "01011112222", from = "0212345678", text = text, subject = "[광고] 주말", ad = true }
    assert.is_nil(res2)
    assert.equal("ad_rules", err.code)
    assert.equal("prefix", err.reason)
    -- not an ad: the subject is left alone
    local plain = assert(client:send { to = "01011112222", from = "0212345678", text = text, subject = "주말" })
    assert.is_nil(plain.subject)
    local _, f2 = form_of(fake:requests()[2])
    assert.equal("주말", f2.subject)
    assert.equal(2, #fake:requests())
  end)

  it("refuses a spaced prefix and a name missing from both the client and the message", function()
    local res, err = client:send { to = "01011112222", from = "0212345678", text = "(광 고) 할인", ad = true }
    assert.is_nil(res)
    assert.equal("ad_rules", err.code)
    local bare = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url, now = function() return clock end })
    res, err = bare:send { to = "01011112222", from = "0212345678", text = "할인", ad = true, ad_opt_out = OPT_OUT }
    assert.is_nil(res)
    assert.equal("ad_rules", err.code)
    res = assert(bare:send { to = "01011112222", from = "0212345678", text = "할인", ad = true,
      ad_name = "다른상사", ad_opt_out = "0809998888" })
    assert.equal("(광고)다른상사\n할인\n무료거부 080-999-8888", res.text)
    bare:close()
    assert.equal(1, #fake:requests())
  end)

  it("raises on misuse of the ad fields and option", function()
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678", text = "x", ad = "yes" } end)
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678", text = "x", night_consent = true } end)
    assert.has_error(function() client:send { to = "01011112222", from = "0212345678", text = "x", ad = true, night = "later" } end)
    assert.has_error(function() ksms.client("senders", { api_key = "k", ad = { nmae = "x" } }) end)
    assert.has_error(function() ksms.client("senders", { api_key = "k", ad = "x" }) end)
  end)
end)

describe("ads on the other HTTP providers", function()
  local fake
  setup(function() fake = fake_control.start("messageme") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("composes a MessageMe FriendTalk ad, and refuses one at night before anything is sent", function()
    local t = kst(12, 0)
    local c = ksms.client("messageme", { api_key = "test-messageme-key", base_url = fake.base_url, timeout = 5,
      now = function() return t end, ad = { name = NAME, opt_out = OPT_OUT } })
    assert(c:friendtalk { channel = "@ksms", text = "할인", to = "01011112222", from = "0212345678", ad = true })
    local reqs = fake:requests()
    assert.equal(1, #reqs)
    local _, f = H.form_of(reqs[1])
    assert.equal("(광고)ksms상사\n할인" .. FOOTER, f.msg)
    t = kst(22, 30)
    local res, err = c:friendtalk { channel = "@ksms", text = "할인", to = "01011112222", from = "0212345678", ad = true }
    assert.is_nil(res)
    assert.equal("ad_night", err.code)
    assert.equal(1, #fake:requests())
    c:close()
  end)

  it("holds a Cafe24 ad past 08:00 when its 10-minute lead needs it", function()
    local t = kst(7, 55)
    local c = ksms.client("cafe24", { user_id = "u", secure_key = "k", base_url = "http://127.0.0.1:9",
      now = function() return t end, ad = { name = NAME, opt_out = OPT_OUT, night = "hold" } })
    local ok, info = c:check { to = "01011112222", from = "0212345678", text = "할인", ad = true }
    assert.is_true(ok)
    assert.equal(t + 600 + 60, info.held_until)
    assert.equal("08:06", schedule.format(info.held_until, "hh:mm"))
    t = kst(3, 0)
    ok, info = c:check { to = "01011112222", from = "0212345678", text = "할인", ad = true }
    assert.equal(kst(8, 0), info.held_until)
    c:close()
  end)
end)

describe("ads against the OneShot fake", function()
  local fake
  setup(function() fake = fake_control.start("oneshot") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  local function client_at(t)
    return ksms.client("oneshot", fake:session_options { now = function() return t end,
      ad = { name = NAME, opt_out = OPT_OUT } })
  end

  it("sends a FriendTalk ad composed, with KakaoAdFlag Y", function()
    local c = client_at(kst(12, 0))
    local res = assert(c:friendtalk { to = "01011112222", from = "0212345678", channel = "sender-key-1",
      text = "할인 행사", ad = true })
    assert.is_true(res.ok)
    local reqs = fake:requests("MsgSendReq")
    assert.equal(1, #reqs)
    assert.equal("Y", reqs[1].body.KakaoAdFlag)
    assert.equal(8, tonumber(reqs[1].body.MsgType))
    assert.equal("(광고)ksms상사\n할인 행사" .. FOOTER, reqs[1].body.Message)
    c:close()
  end)

  it("puts (광고) at the start of an ad's LMS subject", function()
    local c = client_at(kst(12, 0))
    local res = assert(c:send { to = "01011112222", from = "0212345678", text = ("가"):rep(50), subject = "주말 할인", ad = true })
    assert.is_true(res.ok)
    local reqs = fake:requests("MsgSendReq")
    assert.equal(1, #reqs)
    assert.equal("(광고)주말 할인", reqs[1].body.Subject)
    c:close()
  end)

  it("refuses an ad at night, and night = \"hold\" (no reservations), before binding", function()
    local c = client_at(kst(23, 0))
    local res, err = c:send { to = "01011112222", from = "0212345678", text = "할인", ad = true }
    assert.is_nil(res)
    assert.equal("ad_night", err.code)
    assert.equal("oneshot", err.provider)
    res, err = c:send { to = "01011112222", from = "0212345678", text = "할인", ad = true, night = "hold" }
    assert.is_nil(res)
    assert.equal("cannot_hold", err.reason)
    local outs = c:send_many { { to = "01011112222", from = "0212345678", text = "할인", ad = true } }
    assert.equal("ad_night", outs[1].code)
    assert.equal(0, fake:stats().binds)
    assert.equal(0, #fake:requests("MsgSendReq"))
    c:close()
  end)

  it("send_many: a refused ad keeps its place, the others are sent and reported at theirs", function()
    local c = client_at(kst(23, 0))
    local seen = {}
    local outs = c:send_many({
      { to = "01011112222", from = "0212345678", text = "공지" },
      { to = "01011112222", from = "0212345678", text = "할인", ad = true },
      { to = "01033334444", from = "0212345678", text = "할인", ad = true, night_consent = true },
    }, { on_outcome = function(i, o) seen[i] = o.ok and "ok" or o.code end })
    assert.is_true(outs[1].ok)
    assert.equal("ad_night", outs[2].code)
    assert.is_true(outs[3].ok)
    assert.same({ "ok", "ad_night", "ok" }, seen)
    local reqs = fake:requests("MsgSendReq")
    assert.equal(2, #reqs)
    local texts = { reqs[1].body.Message, reqs[2].body.Message }
    table.sort(texts)
    assert.same({ "(광고)ksms상사\n할인" .. FOOTER, "공지" }, texts)
    c:close()
  end)
end)
