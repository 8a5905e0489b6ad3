-- Phone numbers, reservation times and message kinds: the rules every
-- provider shares, checked before anything is sent.
local phone = require "ksms.rules.phone"
local schedule = require "ksms.rules.schedule"
local text = require "ksms.rules.text"
local H = require "spec_helper"

describe("phone numbers", function()
  it("accepts the usual ways of writing a number", function()
    local cases = {
      ["010-1234-5678"] = "01012345678", ["010 1234 5678"] = "01012345678",
      ["010.1234.5678"] = "01012345678", ["+82 10-1234-5678"] = "01012345678",
      ["+82-010-1234-5678"] = "01012345678", ["+821012345678"] = "01012345678",
      ["(02) 123-4567"] = "021234567", ["02-1234-5678"] = "0212345678",
      ["031-123-4567"] = "0311234567", ["064-1234-5678"] = "06412345678",
      ["070-1234-5678"] = "07012345678", ["0505-123-4567"] = "05051234567",
      ["0505-1234-5678"] = "050512345678", ["1588-4567"] = "15884567",
      ["1644-0000"] = "16440000", ["1899-1234"] = "18991234", ["080-123-4567"] = "0801234567",
      ["011-123-4567"] = "0111234567",
    }
    for input, want in pairs(cases) do
      assert.equal(want, phone.normalize(input), input)
    end
  end)

  it("refuses numbers outside the Korean numbering plan, naming them", function()
    for _, bad in ipairs({ "", "010-123-4567", "0101234567", "010123456789", "012-1234-5678",
      "035-123-4567", "02-12-3456", "1234-5678", "1588-456", "+1 212 555 0100", "010-1234-567a",
      "060-123-4567", "0509-123-4567", "070-123-4567" }) do
      local n, err = phone.normalize(bad)
      assert.is_nil(n, bad)
      assert.equal("recipient", err.category)
      assert.equal("invalid_number", err.code)
      assert.matches(bad, err.message, 1, true)
    end
    local _, err = phone.normalize("12", "from")
    assert.equal("sender_number", err.category)
  end)

  it("raises when a number is not a string (a Lua number loses the leading 0)", function()
    assert.has_error(function() phone.normalize(1012345678) end)
    assert.has_error(function() phone.normalize(nil) end)
  end)

  it("classifies and splits numbers into their parts", function()
    assert.same({ "010", "1234", "5678" }, phone.split("01012345678"))
    assert.same({ "02", "123", "4567" }, phone.split("021234567"))
    assert.same({ "02", "1234", "5678" }, phone.split("0212345678"))
    assert.same({ "031", "123", "4567" }, phone.split("0311234567"))
    assert.same({ "0505", "1234", "5678" }, phone.split("050512345678"))
    assert.same({ "1588", "4567" }, phone.split("1588-4567"))
    assert.equal("010-1234-5678", phone.format("+82 10 1234 5678"))
    assert.equal("mobile", phone.classify("010-1234-5678"))
    assert.equal("seoul", phone.classify("02-123-4567"))
    assert.equal("area", phone.classify("051-123-4567"))
    assert.equal("voip", phone.classify("070-1234-5678"))
    assert.equal("personal", phone.classify("0504-123-4567"))
    assert.equal("nationwide", phone.classify("1600-1234"))
    assert.equal("tollfree", phone.classify("080-123-4567"))
    assert.is_nil(phone.classify("999"))
  end)
end)

describe("reservations", function()
  local now = 1763769600 -- 2025-11-22 09:00:00 KST

  it("formats in Korea time whatever the host's time zone", function()
    assert.equal("2025|11|22|09|00|00", schedule.format(now, "YYYY|MM|DD|hh|mm|ss"))
    assert.equal("20251122090000", schedule.format(now, "YYYYMMDDhhmmss"))
    local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
    for _, tz in ipairs({ "UTC", "America/Los_Angeles", "Asia/Seoul", "Pacific/Kiritimati" }) do
      local out, ok = H.run(("TZ=%s %s -e %q"):format(tz, lua,
        "local s = require 'ksms.rules.schedule'; io.write(s.format(" .. now .. ", 'YYYY-MM-DD hh:mm:ss'), ' ', "
        .. "s.from_kst{ year = 2025, month = 11, day = 22, hour = 9 })"))
      assert.is_true(ok, out)
      assert.equal("2025-11-22 09:00:00 " .. now, out, tz)
    end
  end)

  it("reads a date table as Korea time, across month, year and leap day", function()
    assert.equal(now, schedule.from_kst { year = 2025, month = 11, day = 22, hour = 9, min = 0, sec = 0 })
    assert.equal(951868800 - 9 * 3600, schedule.from_kst { year = 2000, month = 3, day = 1 })
    assert.equal("2024|02|29|23|59|59", schedule.format(
      schedule.from_kst { year = 2024, month = 2, day = 29, hour = 23, min = 59, sec = 59 }, "YYYY|MM|DD|hh|mm|ss"))
    assert.equal("2026|01|01|00|00|00", schedule.format(
      schedule.from_kst { year = 2025, month = 12, day = 31, hour = 23, min = 59, sec = 59 } + 1, "YYYY|MM|DD|hh|mm|ss"))
  end)

  it("refuses a past time, a time too soon and an impossible date", function()
    assert.equal(now + 60, schedule.resolve(now + 60, { now = now }))
    local t, err = schedule.resolve(now, { now = now })
    assert.is_nil(t)
    assert.equal("schedule", err.category)
    assert.equal("past", err.code)
    assert.matches("2025%-11%-22 09:00:00 KST", err.message)
    t, err = schedule.resolve(now + 300, { now = now, min_lead = 600 })
    assert.equal("too_soon", err.code)
    t, err = schedule.resolve({ year = 2025, month = 2, day = 29, hour = 10 }, { now = 0 })
    assert.equal("invalid_date", err.code)
    t, err = schedule.resolve({ year = 2030, month = 1, day = 1, hour = 24 }, { now = 0 })
    assert.equal("invalid_date", err.code)
    assert.has_error(function() schedule.resolve("tomorrow", { now = now }) end)
    assert.has_error(function() schedule.resolve({ year = 2030, month = "1", day = 1 }, { now = now }) end)
  end)
end)

describe("message kinds and charset", function()
  local limits = { charset = "cp949", sms = 90, lms = 2000, mms = 2000 }

  it("chooses SMS up to 90 CP949 bytes, then LMS, MMS with an image", function()
    assert.equal("sms", text.choose_kind(("가"):rep(45), "auto", false, limits))
    assert.equal("lms", text.choose_kind(("가"):rep(45) .. "a", "auto", false, limits))
    assert.equal("sms", text.choose_kind(("a"):rep(90), nil, false, limits))
    assert.equal("mms", text.choose_kind("사진", "auto", true, limits))
    local kind, bytes = text.choose_kind(("가"):rep(1000), "auto", false, limits)
    assert.equal("lms", kind)
    assert.equal(2000, bytes)
  end)

  it("refuses text over the limit, empty text and text the charset lacks", function()
    local k, err = text.choose_kind(("가"):rep(1000) .. "a", "auto", false, limits)
    assert.is_nil(k)
    assert.equal("message_length", err.category)
    assert.equal(2001, err.bytes)
    k, err = text.choose_kind(("가"):rep(46), "sms", false, limits)
    assert.equal("too_long", err.code)
    k, err = text.choose_kind("", "auto", false, limits)
    assert.equal("empty", err.code)
    k, err = text.choose_kind("됬어요 😀", "auto", false, limits)
    assert.equal("invalid_input", err.category)
    assert.equal("charset", err.code)
    assert.matches("'😀' at 5", err.message)
    assert.is_nil(err.message:find("됬", 1, true))
    k, err = text.choose_kind("됬어요", "auto", false, { charset = "euc-kr", sms = 90, lms = 2000 })
    assert.matches("'됬' at 1", err.message)
    assert.has_error(function() text.choose_kind("x", "fax", false, limits) end)
  end)

  it("counts characters for Kakao limits", function()
    assert.equal(5, text.chars("안녕 ab"))
    assert.equal(1, text.chars("😀"))
  end)
end)
