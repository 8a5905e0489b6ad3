-- The command's JSON writer (ksms.cli.output.encode): numbers read back as
-- the same number, and bytes that are not UTF-8 (a server's) never make
-- the document something other than JSON: each such byte is U+FFFD.
local output = require "ksms.cli.output"
local cjson = require "cjson"
local core = require "ksms.core"

local FFFD = "\239\191\189"

-- Whether s is well-formed UTF-8 (the core's strict decoder).
local function is_utf8(s) return core.cp949_len(s) ~= nil end

describe("ksms.cli.output JSON", function()
  it("writes every number so that it reads back exactly", function()
    local floats = { 0.1, 1 / 3, 2 / 3, math.pi, -math.exp(1), 0.1 + 0.2, 1e-300, 5e-324, 2.2250738585072014e-308,
      1.7976931348623157e308, 123456789.12345679, -2.5e-10, 2 ^ 53 + 2, 2 ^ 63, -2 ^ 70, 1e21, 1234567.8901234567,
      4.35, 100.5, 0.5 }
    for _, v in ipairs(floats) do
      local text = output.encode(v)
      assert.equal(v, tonumber(text), text)
      assert.equal(v, cjson.decode("[" .. text .. "]")[1], text)
      assert.same({ x = v }, cjson.decode(output.encode({ x = v })))
    end
    -- Short where that is exact.
    assert.equal("0.1", output.encode(0.1))
    assert.equal("100", output.encode(100.0))
    assert.equal("[null,null]", output.encode({ 0 / 0, math.huge }))
    if math.type then -- Lua 5.3+: integers past 2^53 as integers
      assert.equal("9223372036854775807", output.encode(math.maxinteger))
      assert.equal(math.mininteger, tonumber(output.encode(math.mininteger)))
    end
  end)

  it("replaces each byte that is not well-formed UTF-8 with U+FFFD, keeping the rest", function()
    local cases = {
      { "한국어 😀 ok", "한국어 😀 ok" },
      { "a\255b", "a" .. FFFD .. "b" },
      { "\192\128", FFFD:rep(2) },                     -- overlong NUL
      { "\237\160\128", FFFD:rep(3) },                 -- a surrogate
      { "\244\144\128\128", FFFD:rep(4) },             -- past U+10FFFF
      { "\226\130", FFFD:rep(2) },                     -- cut short
      { "x\226\130", "x" .. FFFD:rep(2) },
      { "\128\191z", FFFD:rep(2) .. "z" },             -- stray continuation bytes
      { "가\128", "가" .. FFFD },                      -- a character, then a stray byte
      { "\240\159\152\128\128", "😀" .. FFFD },
    }
    for _, c in ipairs(cases) do
      local text = output.encode({ s = c[1], [c[1]] = 1 })
      assert.is_true(is_utf8(text), text)
      local doc = cjson.decode(text)
      assert.equal(c[2], doc.s)
      assert.equal(1, doc[c[2]])
    end
  end)

  it("repairs a large hostile string in linear time", function()
    for _, hostile in ipairs({ ("\255"):rep(256 * 1024), ("\226\130a"):rep(96 * 1024), ("\128"):rep(256 * 1024),
      ("가\128"):rep(64 * 1024) }) do
      local t0 = os.clock()
      local text = output.encode(hostile)
      local t = os.clock() - t0
      assert.is_true(is_utf8(text))
      assert.is_true(t < 0.5, ("%.2f s of CPU for %d bytes"):format(t, #hostile))
    end
  end)
end)
