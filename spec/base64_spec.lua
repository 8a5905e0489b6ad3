-- core.b64encode / core.b64decode and core.hex / core.unhex.
local core = require "ksms.core"

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Value of each alphabet character, to tell valid input from invalid.
local VALUE = {}
for i = 1, 64 do VALUE[ALPHABET:sub(i, i)] = i - 1 end

-- An encoder written from RFC 4648 §4 with plain arithmetic (no bit
-- library, so it runs on Lua 5.4 and LuaJIT alike), independent of the C
-- code it checks.
local function reference_b64encode(s)
  local parts = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function char_at(shift)
      local v = math.floor(n / 2 ^ shift) % 64
      return ALPHABET:sub(v + 1, v + 1)
    end
    parts[#parts + 1] = char_at(18) .. char_at(12)
      .. (b and char_at(6) or "=") .. (c and char_at(0) or "=")
  end
  return table.concat(parts)
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

-- Checks that decoder(input) is nil plus a structured error with the
-- given code whose text names the expected position or length.
local function assert_rejected(decoder, code, input, expected_in_message)
  local out, err = decoder(input)
  assert.is_nil(out, ("accepted %q"):format(input))
  assert.is_table(err, ("no error table for %q"):format(input))
  assert.equal("invalid_input", err.category)
  assert.equal(code, err.code)
  assert.equal("ksms", err.provider)
  assert.is_false(err.retryable)
  assert.is_string(err.message)
  local text = tostring(err)
  assert.equal("ksms[ksms] invalid_input (" .. code .. "): " .. err.message, text)
  if expected_in_message then
    assert.is_truthy(err.message:find(expected_in_message, 1, true),
      ("%q: message %q lacks %q"):format(input, err.message, expected_in_message))
  end
end

local function assert_b64_rejected(input, expected_in_message)
  assert_rejected(core.b64decode, "bad_base64", input, expected_in_message)
end

local function assert_hex_rejected(input, expected_in_message)
  assert_rejected(core.unhex, "bad_hex", input, expected_in_message)
end

describe("base64", function()
  -- RFC 4648 §10.
  local rfc_vectors = {
    { "", "" },
    { "f", "Zg==" },
    { "fo", "Zm8=" },
    { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" },
    { "fooba", "Zm9vYmE=" },
    { "foobar", "Zm9vYmFy" },
  }

  before_each(function() math.randomseed(4648) end)

  it("encodes the RFC 4648 test vectors", function()
    for _, v in ipairs(rfc_vectors) do
      assert.equal(v[2], core.b64encode(v[1]))
    end
  end)

  it("decodes the RFC 4648 test vectors", function()
    for _, v in ipairs(rfc_vectors) do
      assert.equal(v[1], core.b64decode(v[2]))
    end
  end)

  it("encodes every byte value like the reference encoder", function()
    local s = all_bytes()
    assert.equal(reference_b64encode(s), core.b64encode(s))
    assert.equal(s, core.b64decode(core.b64encode(s)))
    -- The top and bottom of the alphabet, reached through "+" and "/".
    assert.equal("+/+/", core.b64encode("\251\255\191"))
    assert.equal("\251\255\191", core.b64decode("+/+/"))
  end)

  it("round-trips random binary of every length from 0 to 300", function()
    for n = 0, 300 do
      local s = random_bytes(n)
      local encoded = core.b64encode(s)
      assert.equal(4 * math.ceil(n / 3), #encoded)
      assert.equal(reference_b64encode(s), encoded, "length " .. n)
      assert.equal(s, core.b64decode(encoded), "length " .. n)
    end
  end)

  it("round-trips input larger than the kept scratch buffer", function()
    -- 3 MiB + 1 byte; a repeated odd-sized block keeps this quick to build.
    local s = string.rep(random_bytes(1021), 3083) .. "\255"
    assert.is_true(#s > 3 * 1024 * 1024)
    local encoded = core.b64encode(s)
    assert.equal(s, core.b64decode(encoded))
    -- Short results after a big one come out whole and unpolluted.
    assert.equal("Zg==", core.b64encode("f"))
    assert.equal("f", core.b64decode("Zg=="))
  end)

  it("gives a result that does not depend on earlier calls", function()
    local long = core.b64encode(string.rep("\0", 999))
    assert.equal("Zm8=", core.b64encode("fo"))
    assert.equal(string.rep("A", 1332), long)
    assert.equal(string.rep("\0", 999), core.b64decode(long))
    assert.equal("fo", core.b64decode("Zm8="))
  end)

  it("raises for a non-string argument", function()
    assert.has_error(function() core.b64encode(nil) end)
    assert.has_error(function() core.b64decode({}) end)
  end)

  describe("rejects", function()
    it("every byte outside the alphabet at every position", function()
      local good = "Zm9vYmFy"
      for byte = 0, 255 do
        local c = string.char(byte)
        if not VALUE[c] and c ~= "=" then
          for pos = 1, #good do
            local bad = good:sub(1, pos - 1) .. c .. good:sub(pos + 1)
            assert_b64_rejected(bad, ("0x%02x at position %d"):format(byte, pos))
          end
        end
      end
    end)

    it("whitespace anywhere, even when the length is a multiple of 4", function()
      assert_b64_rejected("Zm9v\nYmFy", "multiple of 4")
      assert_b64_rejected("Zm9vYmFy\n", "multiple of 4")
      assert_b64_rejected(" Zm9vYmFy", "multiple of 4")
      assert_b64_rejected("Zm9v\r\nYmFy==", "0x0d at position 5")
      assert_b64_rejected("Zm 9", "0x20 at position 3")
      assert_b64_rejected("Zm9vYmF\t", "0x09 at position 8")
      assert_b64_rejected("Zg=\n", "'=' at position 3")
      assert_b64_rejected("\n\n\n\n", "0x0a at position 1")
    end)

    it("a NUL byte and the URL-safe alphabet", function()
      assert_b64_rejected("Zm9\0", "0x00 at position 4")
      assert_b64_rejected("-_-_", "0x2d at position 1")
      assert_b64_rejected("Zm9v-_8=", "0x2d at position 5")
    end)

    it("a length that is not a multiple of 4", function()
      for _, s in ipairs({ "Z", "Zg", "Zg=", "Zm9vY", "Zm9vYm", "Zm9vYmF", "Zg===", "=" }) do
        assert_b64_rejected(s, ("length %d is not a multiple of 4"):format(#s))
      end
    end)

    it("'=' anywhere but the last one or two positions", function()
      assert_b64_rejected("=Zg=", "'=' at position 1")
      assert_b64_rejected("Z=g=", "'=' at position 2")
      assert_b64_rejected("Zm=v", "'=' at position 3")
      assert_b64_rejected("Zg=a", "'=' at position 3")
      assert_b64_rejected("A===", "'=' at position 2")
      assert_b64_rejected("====", "'=' at position 1")
      assert_b64_rejected("Zg==Zg==", "'=' at position 3")
      assert_b64_rejected("Zm8=Zm9v", "'=' at position 4")
      assert_b64_rejected("Zm9vY===", "'=' at position 6")
      assert_b64_rejected("Zm9v====", "'=' at position 5")
    end)

    it("non-zero bits hidden by the padding (non-canonical input)", function()
      -- With "==" the second character keeps 2 bits, with "=" the third
      -- keeps 4: the rest must be zero, so exactly 1 in 16 (resp. 1 in 4)
      -- characters is acceptable there.
      local accepted_one, accepted_two = 0, 0
      for i = 1, 64 do
        local c = ALPHABET:sub(i, i)
        local v = VALUE[c]
        local one = "Z" .. c .. "=="
        if v % 16 == 0 then
          assert.equal(1, #core.b64decode(one))
          accepted_one = accepted_one + 1
        else
          assert_b64_rejected(one, "non-canonical")
        end
        local two = "Zm9vYm" .. c .. "="
        if v % 4 == 0 then
          assert.equal(5, #core.b64decode(two))
          accepted_two = accepted_two + 1
        else
          assert_b64_rejected(two, "unused bits set at position 7")
        end
      end
      assert.equal(4, accepted_one)
      assert.equal(16, accepted_two)
      assert_b64_rejected("Zh==", "position 2")
      assert_b64_rejected("Zm9=", "position 3")
    end)

    it("with a message naming the problem", function()
      local _, err = core.b64decode("Zm9v!mFy")
      assert.equal("ksms[ksms] invalid_input (bad_base64): "
        .. "invalid base64 character 0x21 at position 5", tostring(err))
    end)
  end)
end)

describe("hex", function()
  -- RFC 4648 §10, base16.
  local rfc_vectors = {
    { "", "" },
    { "f", "66" },
    { "fo", "666F" },
    { "foo", "666F6F" },
    { "foob", "666F6F62" },
    { "fooba", "666F6F6261" },
    { "foobar", "666F6F626172" },
  }

  before_each(function() math.randomseed(16) end)

  it("encodes the RFC 4648 vectors, lowercase unless asked for uppercase", function()
    for _, v in ipairs(rfc_vectors) do
      assert.equal(v[2]:lower(), core.hex(v[1]))
      assert.equal(v[2]:lower(), core.hex(v[1], false))
      assert.equal(v[2], core.hex(v[1], true))
    end
  end)

  it("decodes the RFC 4648 vectors in either case", function()
    for _, v in ipairs(rfc_vectors) do
      assert.equal(v[1], core.unhex(v[2]))
      assert.equal(v[1], core.unhex(v[2]:lower()))
    end
    assert.equal("\171\205\239", core.unhex("aBcDEf"))
  end)

  it("encodes every byte value like string.format", function()
    local s = all_bytes()
    local lower, upper = {}, {}
    for i = 0, 255 do
      lower[#lower + 1] = ("%02x"):format(i)
      upper[#upper + 1] = ("%02X"):format(i)
    end
    assert.equal(table.concat(lower), core.hex(s))
    assert.equal(table.concat(upper), core.hex(s, true))
    assert.equal(s, core.unhex(table.concat(lower)))
    assert.equal(s, core.unhex(table.concat(upper)))
  end)

  it("round-trips random binary of every length from 0 to 300", function()
    for n = 0, 300 do
      local s = random_bytes(n)
      assert.equal(s, core.unhex(core.hex(s)))
      assert.equal(s, core.unhex(core.hex(s, true)))
    end
  end)

  it("rejects an odd length", function()
    for _, s in ipairs({ "a", "abc", "666F6", "0" }) do
      assert_hex_rejected(s, ("length %d is odd"):format(#s))
    end
  end)

  it("rejects every non-hex byte in either digit of a pair", function()
    for byte = 0, 255 do
      local c = string.char(byte)
      if not c:match("%x") then
        assert_hex_rejected(c .. "0", ("0x%02x at position 1"):format(byte))
        assert_hex_rejected("0" .. c, ("0x%02x at position 2"):format(byte))
        assert_hex_rejected("abcd" .. c .. "f", ("0x%02x at position 5"):format(byte))
      end
    end
    assert_hex_rejected("0x12", "0x78 at position 2")
    assert_hex_rejected("12 3", "0x20 at position 3")
    assert_hex_rejected("gg", "0x67 at position 1")
  end)
end)
