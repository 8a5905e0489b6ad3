-- text_spec.lua - core.cp949_len and core.charset_check, checked against the
-- iconv(1) command line (glibc), which is where the C tables come from.
local core = require "ksms.core"

-- UTF-8 encoding of a code point, without relying on Lua 5.3's utf8 library
-- (LuaJIT has none).
local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000),
                       0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000),
                     0x80 + math.floor(cp / 0x1000) % 0x40,
                     0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- The characters of a valid UTF-8 string without NUL bytes (LuaJIT's
-- patterns cannot hold "\0"), in order.
local function chars_of(s)
  local list = {}
  for ch in s:gmatch("[\1-\127\194-\244][\128-\191]*") do list[#list + 1] = ch end
  return list
end

local H = require "spec_helper"
local read_file, write_file = H.read_file, H.write_file

-- Runs iconv from UTF-8 to charset on data. Returns whether it succeeded
-- and what it wrote. With skip_invalid (-c) it drops what it cannot convert
-- instead of stopping, so its status is not meaningful then.
local function iconv(data, charset, skip_invalid)
  local input, output = os.tmpname(), os.tmpname()
  write_file(input, data)
  local pipe = assert(io.popen(string.format(
    "iconv %s -f UTF-8 -t %s <'%s' >'%s' 2>/dev/null; echo $?",
    skip_invalid and "-c" or "", charset, input, output)))
  local status = pipe:read("*a")
  pipe:close()
  local converted = read_file(output)
  os.remove(input)
  os.remove(output)
  return tonumber(status) == 0, converted
end

-- What iconv says charset_check should report for s: each non-ASCII
-- character iconv cannot convert, as { char =, pos = }. One iconv run per
-- string: every character goes on its own "pos:" line and iconv -c leaves
-- the line empty after the colon when it drops the character. (Multi-byte
-- CP949/EUC-KR characters never contain a newline byte.)
local function iconv_missing(s, charset)
  local lines, wanted = {}, {}
  for pos, ch in ipairs(chars_of(s)) do
    if #ch > 1 then
      lines[#lines + 1] = pos .. ":" .. ch .. "\n"
      wanted[pos] = ch
    end
  end
  local _, out = iconv(table.concat(lines), charset, true)
  local seen, missing = {}, {}
  for pos, converted in out:gmatch("(%d+):([^\n]*)\n") do
    pos = tonumber(pos)
    seen[pos] = true
    if converted == "" then missing[#missing + 1] = { char = wanted[pos], pos = pos } end
  end
  for pos in pairs(wanted) do assert(seen[pos], "iconv lost the line for position " .. pos) end
  table.sort(missing, function(a, b) return a.pos < b.pos end)
  return missing
end

local corpus = {
  "",
  "Hello, world! 123",
  "tab\tand\nnewline ~`^{}|\\",
  "[Web발신] 인증번호는 [123456]입니다. 타인에게 알려주지 마세요.",
  "안녕하세요. 오늘 날씨가 참 좋네요!",
  "ㄱㄴㄷㄹ ㅏㅑㅓㅕ ㅋㅋㅋ",
  "韓國 大韓民國 漢字 一二三",
  "※ ★ ☆ ㈜ ℃ € ® ¶ § ° ± × ÷ ♥ ☎ ① ② ③",
  "됬",
  "그건 안 됬어요",
  "똠방각하 똠얌꿍",
  "㉾",
  "ＡＢＣ１２３！？ ￦５００",
  "ｶﾀｶﾅ ﾊﾝｶｸ",
  "ひらがな カタカナ",
  "Привет мир, αβγ ΔΣΩ",
  "café crème — naïve",
  "웃음 😀 이모지 🎉",
  "😀",
  "中文简体 汉语",
  string.rep("가나다라마바사아자차카타파하", 20) .. string.rep("abcdefgh", 30),
}

local function quoted(s) return string.format("%q", s) end

describe("the iconv reference", function()
  -- If iconv were missing or broken every comparison below would be moot.
  it("is present and knows CP949 and EUC-KR", function()
    local ok, out = iconv("됬", "CP949")
    assert.is_true(ok)
    assert.are.equal("\137\231", out)
    ok, out = iconv("가", "EUC-KR")
    assert.is_true(ok)
    assert.are.equal("\176\161", out)
    ok = iconv("됬", "EUC-KR")
    assert.is_false(ok)
  end)
end)

describe("core.cp949_len", function()
  it("counts ASCII as 1 byte and everything else as 2", function()
    assert.are.equal(0, core.cp949_len(""))
    assert.are.equal(5, core.cp949_len("hello"))
    assert.are.equal(10, core.cp949_len("안녕하세요"))
    assert.are.equal(6, core.cp949_len("a됬b韓"))
    assert.are.equal(2, core.cp949_len("\0\127"))
  end)

  it("matches iconv's CP949 byte count for every corpus string CP949 can encode", function()
    local checked = 0
    for _, s in ipairs(corpus) do
      local ok, out = iconv(s, "CP949")
      if ok then
        assert.are.equal(#out, core.cp949_len(s), quoted(s))
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 15, "only " .. checked .. " corpus strings convert")
  end)

  it("matches iconv's EUC-KR byte count where EUC-KR can encode the string", function()
    local checked = 0
    for _, s in ipairs(corpus) do
      local ok, out = iconv(s, "EUC-KR")
      if ok then
        assert.are.equal(#out, core.cp949_len(s), quoted(s))
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 10, "only " .. checked .. " corpus strings convert")
  end)

  it("counts characters CP949 lacks as 2 bytes, an upper bound", function()
    for _, s in ipairs(corpus) do
      local missing = iconv_missing(s, "CP949")
      local _, kept = iconv(s, "CP949", true)
      assert.are.equal(#kept + 2 * #missing, core.cp949_len(s), quoted(s))
    end
    assert.are.equal(2, core.cp949_len("😀"))
    assert.are.equal(2, core.cp949_len(utf8_char(0x10FFFF)))
  end)

  it("accepts every UTF-8 length at its boundaries", function()
    assert.are.equal(1, core.cp949_len(utf8_char(0x7F)))
    for _, cp in ipairs { 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF } do
      assert.are.equal(2, core.cp949_len(utf8_char(cp)), string.format("U+%04X", cp))
    end
  end)

  it("refuses a non-string argument", function()
    assert.has_error(function() core.cp949_len() end)
    assert.has_error(function() core.cp949_len({}) end)
  end)
end)

describe("core.charset_check", function()
  it("accepts ASCII and Hangul in both charsets", function()
    for _, charset in ipairs { "cp949", "euc-kr" } do
      assert.is_true(core.charset_check("", charset))
      assert.is_true(core.charset_check("Hello ~ 123\n", charset))
      assert.is_true(core.charset_check("안녕하세요 韓國 ※★㈜℃", charset))
    end
  end)

  it("rejects emoji in both charsets, naming the character and its position", function()
    for _, charset in ipairs { "cp949", "euc-kr" } do
      local ok, list = core.charset_check("웃음😀", charset)
      assert.is_nil(ok)
      assert.are.same({ { char = "😀", pos = 3 } }, list)
    end
  end)

  it("rejects 됬 in EUC-KR only", function()
    assert.is_true(core.charset_check("안 됬어", "cp949"))
    local ok, list = core.charset_check("안 됬어", "euc-kr")
    assert.is_nil(ok)
    assert.are.same({ { char = "됬", pos = 3 } }, list)
  end)

  it("lists every offending character by character position, in order", function()
    local ok, list = core.charset_check("a😀b됬c똠🎉", "euc-kr")
    assert.is_nil(ok)
    assert.are.same({
      { char = "😀", pos = 2 },
      { char = "됬", pos = 4 },
      { char = "똠", pos = 6 },
      { char = "🎉", pos = 7 },
    }, list)
    assert.is_nil(list.truncated)
    -- a long ASCII run first: positions count characters, not bytes
    ok, list = core.charset_check(string.rep("x", 17) .. "가😀", "cp949")
    assert.is_nil(ok)
    assert.are.same({ { char = "😀", pos = 19 } }, list)
  end)

  it("agrees with iconv on every corpus string, for both charsets", function()
    local rejected = { CP949 = 0, ["EUC-KR"] = 0 }
    for _, charset in ipairs { "CP949", "EUC-KR" } do
      for _, s in ipairs(corpus) do
        local iconv_ok = iconv(s, charset)
        local ok, list = core.charset_check(s, charset:lower())
        assert.are.equal(iconv_ok, ok == true, charset .. " " .. quoted(s))
        if ok then
          assert.is_nil(list)
        else
          rejected[charset] = rejected[charset] + 1
          assert.are.same(iconv_missing(s, charset), list, charset .. " " .. quoted(s))
          local chars = chars_of(s)
          for _, entry in ipairs(list) do assert.are.equal(chars[entry.pos], entry.char) end
        end
      end
    end
    -- the corpus must exercise rejection, and EUC-KR must be the stricter
    assert.is_true(rejected.CP949 >= 4)
    assert.is_true(rejected["EUC-KR"] > rejected.CP949)
  end)

  it("lists at most 100 characters and then sets list.truncated", function()
    local ok, list = core.charset_check(string.rep("😀", 100), "cp949")
    assert.is_nil(ok)
    assert.are.equal(100, #list)
    assert.is_nil(list.truncated)

    ok, list = core.charset_check(string.rep("a😀", 150), "euc-kr")
    assert.is_nil(ok)
    assert.are.equal(100, #list)
    assert.is_true(list.truncated)
    assert.are.same({ char = "😀", pos = 2 }, list[1])
    assert.are.same({ char = "😀", pos = 200 }, list[100])
  end)

  it("raises on an unknown charset name", function()
    assert.has_error(function() core.charset_check("abc", "utf-8") end)
    assert.has_error(function() core.charset_check("abc", "CP949") end)
    assert.has_error(function() core.charset_check("abc") end)
    local ok, msg = pcall(core.charset_check, "abc", "latin1")
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("unknown charset 'latin1'", 1, true), msg)
  end)

  it("leaves out glibc EUC-KR's non-KS X 1001 extras (C1 pass-through, U+20A9)", function()
    -- glibc writes C1 controls as single bytes and U+20A9 WON SIGN as the
    -- FULLWIDTH WON SIGN's code, which decodes to U+FFE6: neither is a KS X
    -- 1001 character, so the tables leave them out on purpose.
    local ok, out = iconv(utf8_char(0x85), "EUC-KR")
    assert.is_true(ok)
    assert.are.equal("\133", out)
    ok, out = iconv(utf8_char(0x20A9), "EUC-KR")
    assert.is_true(ok)
    assert.are.equal("\163\220", out)
    assert.are.same({ { char = utf8_char(0x85), pos = 1 } },
                    select(2, core.charset_check(utf8_char(0x85), "euc-kr")))
    assert.are.same({ { char = "₩", pos = 2 } }, select(2, core.charset_check("1₩", "euc-kr")))
    assert.is_true(core.charset_check("￦", "euc-kr"))
  end)

  it("agrees with iconv on ~2000 code points spread over the BMP", function()
    -- Every 31st code point from U+0080 (31 is odd, so every low byte gets
    -- hit), skipping surrogates, plus some known edges.
    local sample = { 0xA0, 0xA1, 0xAE, 0x2014, 0x2015, 0x20AC, 0x327E, 0xAC00, 0xB42C,
                     0xD7A3, 0xD7A4, 0xE000, 0xF900, 0xFF01, 0xFFE6, 0xFFFD }
    for cp = 0x80, 0xFFFF, 31 do
      if cp < 0xD800 or cp > 0xDFFF then sample[#sample + 1] = cp end
    end
    local lines = {}
    for i, cp in ipairs(sample) do lines[i] = string.format("%04X:%s\n", cp, utf8_char(cp)) end
    local input = table.concat(lines)
    local deliberate = { ["EUC-KR"] = { [0x20A9] = true } }
    for cp = 0x80, 0x9F do deliberate["EUC-KR"][cp] = true end

    for _, charset in ipairs { "CP949", "EUC-KR" } do
      local _, out = iconv(input, charset, true)
      local converted = {}
      for hex, bytes in out:gmatch("(%x+):([^\n]*)\n") do converted[tonumber(hex, 16)] = bytes end
      local accepted, refused = 0, 0
      for _, cp in ipairs(sample) do
        local bytes = assert(converted[cp], string.format("iconv lost U+%04X", cp))
        local ch = utf8_char(cp)
        local ours = core.charset_check(ch, charset:lower()) == true
        local label = string.format("%s U+%04X", charset, cp)
        if (deliberate[charset] or {})[cp] then
          assert.is_true(#bytes > 0 and not ours, label)
        else
          assert.are.equal(#bytes > 0, ours, label)
        end
        if ours then
          accepted = accepted + 1
          assert.are.equal(2, #bytes, label)
          assert.are.equal(#bytes, core.cp949_len(ch), label)
        else
          refused = refused + 1
        end
      end
      assert.is_true(#sample > 2000)
      assert.is_true(accepted > 150 and refused > 150, charset .. ": " .. accepted .. "/" .. refused)
    end
  end)

  it("finds nothing above U+FFFF in either charset", function()
    for _, cp in ipairs { 0x10000, 0x1F600, 0x20000, 0x2A6D6, 0xE0041, 0x10FFFF } do
      for _, charset in ipairs { "cp949", "euc-kr" } do
        local ok, list = core.charset_check(utf8_char(cp), charset)
        assert.is_nil(ok)
        assert.are.same({ { char = utf8_char(cp), pos = 1 } }, list)
      end
    end
  end)
end)

describe("invalid UTF-8", function()
  -- input, 1-based byte offset of the ill-formed sequence
  local cases = {
    { "\128", 1, "stray continuation byte" },
    { "abcdefg\191hijklmnop", 8, "continuation byte inside an ASCII word" },
    { "a\192\175", 2, "overlong 2-byte" },
    { "\193\191", 1, "overlong 2-byte (C1)" },
    { "\224\128\175", 1, "overlong 3-byte" },
    { "\240\128\128\175", 1, "overlong 4-byte" },
    { "\237\160\128", 1, "high surrogate" },
    { "가\237\191\191", 4, "low surrogate" },
    { "\244\144\128\128", 1, "above U+10FFFF" },
    { "\245\128\128\128", 1, "F5 lead" },
    { "\255", 1, "FF byte" },
    { "가\234\176", 4, "truncated at the end" },
    { "\194", 1, "lone lead byte" },
    { "\194A", 1, "lead byte without continuation" },
    { "\240\159\152", 1, "truncated 4-byte" },
    { "\226\130\172\226", 4, "truncated after a valid character" },
  }

  local function assert_bad_utf8(byte, label, ok, err)
    assert.is_nil(ok, label)
    assert.are.equal("table", type(err), label)
    assert.are.equal(core.error_mt, getmetatable(err), label)
    assert.are.equal("invalid_input", err.category, label)
    assert.are.equal("bad_utf8", err.code, label)
    assert.are.equal("invalid UTF-8 at byte " .. byte, err.message, label)
  end

  it("makes cp949_len return nil and an invalid_input error", function()
    for _, case in ipairs(cases) do
      assert_bad_utf8(case[2], case[3], core.cp949_len(case[1]))
    end
  end)

  it("makes charset_check return nil and an error object, not a list", function()
    for _, case in ipairs(cases) do
      for _, charset in ipairs { "cp949", "euc-kr" } do
        assert_bad_utf8(case[2], case[3] .. " " .. charset, core.charset_check(case[1], charset))
      end
    end
  end)

  it("wins over unrepresentable characters found before it", function()
    local s = string.rep("😀", 120) .. "\255"
    assert_bad_utf8(#s, "after 120 emoji", core.charset_check(s, "cp949"))
  end)
end)
