-- The ordered JSON writer (core.json_object, core.oneshot_json,
-- core.oneshot_frame): what it writes is JSON that lua-cjson reads back as
-- the same values; floats keep every bit, and strings that are not UTF-8
-- are refused with nil, err instead of being written as bytes that are not
-- JSON.
local core = require "ksms.core"
local cjson = require("cjson").new()
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"

local schema = core.json_schema({ "a", "b" })

local function write(v) return core.json_object({ a = v }, schema) end

local function is_negative_zero(x) return x == 0 and 1 / x < 0 end

describe("the JSON writer's numbers", function()
  local doubles = {
    0.1, 0.2, 0.3, 0.1 + 0.2, 1 / 3, 2 / 3, -1 / 3, 2 ^ -1074, -2 ^ -1074, 2 ^ -1022,
    2.2250738585072009e-308, 1.7976931348623157e308, -1.7976931348623157e308, 1e300, 1e-300,
    1e21, 1e22, 1e23, 2 ^ 53, 2 ^ 53 + 2, -(2 ^ 53), 2 ^ 63, 2 ^ 64, 2 ^ 70, 123456.789,
    -1e-7, 0.5, 1.5, 100.25, 3.141592653589793, 2.718281828459045, 9007199254740993.0,
    4.35, 0.000001, 1e-5, 5e-324, 1 - 2 ^ -53, 1 + 2 ^ -52, 0.0, -0.0,
  }

  it("round-trips every double exactly through cjson.decode", function()
    math.randomseed(11)
    for _ = 1, 3000 do
      -- random sign, exponent and digits across the whole range
      local v = (math.random() - 0.5) * 10 ^ math.random(-320, 307)
      if v == v and v ~= math.huge and v ~= -math.huge then doubles[#doubles + 1] = v end
      doubles[#doubles + 1] = math.random() * 2 ^ math.random(-60, 60)
    end
    for _, v in ipairs(doubles) do
      local text = write(v)
      local back = cjson.decode(text).a
      assert.is_true(back == v, ("%.17g written as %s, read back as %.17g"):format(v, text, back))
      assert.equal(is_negative_zero(v), is_negative_zero(back), text)
      -- and inside a whole message
      local msg = cjson.decode(core.oneshot_json("X", { a = v, b = -v }, schema))
      assert.is_true(msg.Body.a == v and msg.Body.b == -v)
    end
  end)

  it("uses the fewest digits that round-trip (15, 16 or 17)", function()
    assert.equal('{"a":0.1}', write(0.1))
    assert.equal('{"a":0.3333333333333333}', write(1 / 3))
    assert.equal('{"a":0.30000000000000004}', write(0.1 + 0.2))
    assert.equal('{"a":4.94065645841247e-324}', write(2 ^ -1074))
    assert.equal('{"a":1e+300}', write(1e300))
    assert.equal('{"a":-0}', write(-0.0))
    -- tonumber: Lua 5.1 folds the constants 0.0 and -0.0 of one function into one
    assert.equal('{"a":0}', write(tonumber("0.0")))
    assert.equal('{"a":9007199254740992}', write(2 ^ 53))
    assert.equal('{"a":1.7976931348623157e+308}', write(1.7976931348623157e308))
    assert.equal('{"a":4}', write(4.0))
    assert.equal('{"a":-42}', write(-42))
    for _, v in ipairs(doubles) do
      local text = write(v):match('^{"a":(.*)}$')
      -- significant digits of the mantissa
      local digits = #text:gsub("e.*$", ""):gsub("[^%d]", ""):gsub("^0+", ""):gsub("0+$", "")
      -- (an integral value is written whole, exactly, as an integer)
      if digits > 15 and text:find("[.e]") then
        -- nothing shorter reads back as v
        local shorter = ("%." .. (digits - 1) .. "g"):format(v)
        assert.is_false(tonumber(shorter) == v, text .. " could be " .. shorter)
      end
    end
  end)

  it("writes numbers with no undefined behaviour (clang UBSan build)", function()
    -- LuaJIT's integer test cast 1e300 to an integer (out of range: undefined).
    local path = H.tmpname()
    H.write_file(path, [[
      local core, cjson = require "ksms.core", require "cjson"
      local sc = core.json_schema({ "a" })
      local n = 0
      for _, v in ipairs { 1e300, -1e300, 2 ^ 63, -(2 ^ 63), 2 ^ 64, 1.7976931348623157e308, 2 ^ -1074, -0.0, 0.1, 1 / 3 } do
        assert(cjson.decode(core.json_object({ a = v }, sc)).a == v)
        n = n + 1
      end
      io.write("ok ", n)
    ]])
    local out, ok = H.run_ubsan_clang(LUA, path)
    os.remove(path)
    if out then
      assert(ok, out)
      assert.equal("ok 10", out)
    end
  end)

  it("still raises for a number that is not finite", function()
    for _, v in ipairs { math.huge, -math.huge, 0 / 0 } do
      local ok, e = pcall(write, v)
      assert.is_false(ok)
      assert.matches("not a finite number", e)
    end
  end)
end)

describe("the JSON writer's strings", function()
  local bad = {
    overlong_nul = "\192\128", overlong_2 = "\193\191", overlong_3 = "\224\128\175",
    overlong_4 = "\240\128\128\175", surrogate_high = "\237\160\128", surrogate_low = "\237\191\191",
    above_max = "\244\144\128\128", f5_lead = "\245\128\128\128", five_bytes = "\248\136\128\128\128",
    ff = "\255", fe = "\254", stray_continuation = "\128", truncated_2 = "\195",
    truncated_3 = "\226\130", truncated_4 = "\240\159\152", bad_continuation = "\226\40\161",
  }
  local good = {
    "\194\128", "\223\191", "\224\160\128", "\237\159\191", "\238\128\128", "\239\191\191",
    "\240\144\128\128", "\244\143\191\191", "안녕하세요", "😀", "\0\1\31\"\\/\127",
  }

  it("writes well-formed UTF-8 (every boundary) that cjson reads back byte for byte", function()
    for _, s in ipairs(good) do
      assert.equal(s, cjson.decode(write(s)).a)
      assert.equal(s, cjson.decode(core.oneshot_json(s)).Header.Method)
      assert.equal(s, cjson.decode(core.oneshot_json("X", s)).Body)
    end
  end)

  it("refuses invalid UTF-8 with nil, err wherever the string is, naming the place not the bytes", function()
    for name, seq in pairs(bad) do
      for _, at in ipairs { "", "ok", ("가"):rep(500) } do
        local s = "SECRET" .. at .. seq .. (name:match("^truncated") and "" or "tail")
        local byte = #("SECRET" .. at) + 1
        local places = { "field 'a' of object", "field 'b' of X", "the method", "the Body of X",
          "field 'b' of X", "the Body of X" }
        for i, f in ipairs {
          function() return core.json_object({ b = "fine", a = s }, schema) end,
          function() return core.oneshot_json("X", { a = 1, b = s }, schema) end,
          function() return core.oneshot_json(s) end,
          function() return core.oneshot_json("X", s) end,
          function() return core.oneshot_frame("X", { b = s }, schema) end,
          function() return core.oneshot_frame("X", s) end,
        } do
          local res, err = f()
          assert.is_nil(res, name .. " case " .. i)
          assert.equal("invalid_input", err.category)
          assert.equal("bad_utf8", err.code)
          assert.equal(places[i], err.message:match("^json: (.-) is not valid UTF%-8"), err.message)
          assert.matches("(byte " .. byte .. ")", err.message, 1, true)
          assert.is_nil(err.message:find("SECRET", 1, true), err.message)
        end
      end
    end
    -- A key is the programmer's: an invalid one raises when compiled.
    assert.has_error(function() core.json_schema({ "a", "b\255" }) end)
    -- What was refused leaves nothing behind for the next call.
    assert.equal('{"a":"x"}', write("x"))
  end)

  it("agrees with cp949_len about validity on random bytes, and cjson reads what it writes", function()
    math.randomseed(7)
    local pool = { "\0", "a", "\"", "\\", "\127", "\128", "\191", "\192", "\194", "\224", "\237",
      "\240", "\244", "\245", "\255", "\160", "\159", "\143", "\144" }
    for _ = 1, 5000 do
      local parts = {}
      for k = 1, math.random(0, 8) do parts[k] = pool[math.random(#pool)] end
      local s = table.concat(parts)
      local text, err = write(s)
      if core.cp949_len(s) then
        assert.is_string(text, tostring(err))
        assert.equal(s, cjson.decode(text).a)
      else
        assert.is_nil(text)
        assert.equal("bad_utf8", err.code)
      end
    end
  end)
end)
