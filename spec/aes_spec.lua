-- core.aes128cbc_encrypt / core.aes128cbc_decrypt: AES-128-CBC with
-- PKCS#5/7 padding, checked against NIST SP 800-38A and the openssl tool.
local core = require "ksms.core"

-- Local hex helpers so these specs do not lean on core.hex.
local function from_hex(h)
  return (h:gsub("%s", ""):gsub("..", function(pair)
    return string.char(tonumber(pair, 16))
  end))
end

local function to_hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local H = require "spec_helper"
local read_file, write_file = H.read_file, H.write_file

-- A shell command with its stderr: output and whether it exited 0.
local function run(cmd) return H.run(cmd .. " 2>&1") end

-- openssl enc over files; returns the output bytes. Fails the test when
-- the tool fails, so a missing openssl cannot make these specs pass.
local function openssl_enc(direction_flags, input, key, iv)
  local in_path, out_path = os.tmpname(), os.tmpname()
  write_file(in_path, input)
  local out, ok = run(("openssl enc -aes-128-cbc %s -K %s -iv %s -in %s -out %s")
    :format(direction_flags, to_hex(key), to_hex(iv), in_path, out_path))
  local result = ok and read_file(out_path)
  os.remove(in_path)
  os.remove(out_path)
  assert(ok, "openssl enc failed: " .. tostring(out))
  return result
end

-- XORs byte i of s with x (arithmetic XOR: Lua 5.1 has no ~ operator).
local function flip(s, i, x)
  local b = s:byte(i)
  local flipped = 0
  for bit = 0, 7 do
    local p = 2 ^ bit
    if (math.floor(b / p) % 2) ~= (math.floor(x / p) % 2) then flipped = flipped + p end
  end
  return s:sub(1, i - 1) .. string.char(flipped) .. s:sub(i + 1)
end

local function assert_protocol_error(code, out, err)
  assert.is_nil(out)
  assert.is_table(err)
  assert.equal("protocol", err.category)
  assert.equal(code, err.code)
  assert.equal("ksms", err.provider)
  assert.is_false(err.retryable)
  assert.is_string(err.message)
  assert.equal("ksms[ksms] protocol (" .. code .. "): " .. err.message, tostring(err))
end

-- NIST SP 800-38A, F.2.1 (CBC-AES128.Encrypt) and F.2.2 (.Decrypt).
local NIST_KEY = from_hex("2b7e151628aed2a6abf7158809cf4f3c")
local NIST_IV = from_hex("000102030405060708090a0b0c0d0e0f")
local NIST_PLAIN = from_hex([[
  6bc1bee22e409f96e93d7e117393172a
  ae2d8a571e03ac9c9eb76fac45af8e51
  30c81c46a35ce411e5fbc1191a0a52ef
  f69f2445df4f9b17ad2b417be66c3710]])
local NIST_CIPHER = from_hex([[
  7649abac8119b246cee98e9b12e9197d
  5086cb9b507219ee95db113a917678b2
  73bed6b8e3c1743b7116e69e22229516
  3ff1caa1681fac09120eca307586e1a7]])
-- A 64-byte plaintext is padded with a whole block of 0x10 bytes, chained
-- on the last NIST block. Its encryption, as computed once with
--   openssl enc -aes-128-cbc -nopad -K <NIST key> -iv 3ff1caa1...86e1a7
-- (and re-derived by a test below):
local NIST_PAD_BLOCK = from_hex("8cb82807230e1321d3fae00d18cc2012")
local FULL_PADDING = string.rep("\16", 16)

describe("AES-128-CBC", function()
  before_each(function() math.randomseed(38) end)

  local function random_bytes(n)
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    return table.concat(t)
  end

  describe("NIST SP 800-38A vectors", function()
    it("F.2.1: encrypts to the NIST ciphertext followed by a padding block", function()
      local cipher = core.aes128cbc_encrypt(NIST_PLAIN, NIST_KEY, NIST_IV)
      assert.equal(80, #cipher)
      assert.equal(to_hex(NIST_CIPHER), to_hex(cipher:sub(1, 64)))
      assert.equal(to_hex(NIST_PAD_BLOCK), to_hex(cipher:sub(65)))
    end)

    it("F.2.1: the last block decrypts to a full block of padding", function()
      local cipher = core.aes128cbc_encrypt(NIST_PLAIN, NIST_KEY, NIST_IV)
      local last_block = cipher:sub(65, 80)
      -- Raw CBC with the previous ciphertext block as IV, no unpadding.
      local plain = openssl_enc("-d -nopad", last_block, NIST_KEY, NIST_CIPHER:sub(49, 64))
      assert.equal(to_hex(FULL_PADDING), to_hex(plain))
      -- and the hard-coded constant is that same block.
      assert.equal(to_hex(NIST_PAD_BLOCK), to_hex(
        openssl_enc("-nopad", FULL_PADDING, NIST_KEY, NIST_CIPHER:sub(49, 64))))
    end)

    it("F.2.2: decrypts the NIST ciphertext (plus its padding block)", function()
      local plain = core.aes128cbc_decrypt(NIST_CIPHER .. NIST_PAD_BLOCK, NIST_KEY, NIST_IV)
      assert.equal(to_hex(NIST_PLAIN), to_hex(plain))
    end)
  end)

  describe("interoperates with openssl enc (PKCS#5 padding)", function()
    local korean = "안녕하세요. 인증번호는 [482913] 입니다. 타인에게 알려주지 마세요."
    local messages = {}
    for _, n in ipairs({ 0, 1, 15, 16, 17, 100 }) do
      messages[#messages + 1] = { name = n .. " bytes", length = n }
    end
    messages[#messages + 1] = { name = "Korean UTF-8 text", text = korean }

    for _, m in ipairs(messages) do
      it("both ways for " .. m.name, function()
        local plain = m.text or random_bytes(m.length)
        local key, iv = random_bytes(16), random_bytes(16)

        local ours = core.aes128cbc_encrypt(plain, key, iv)
        assert.equal(16 * (math.floor(#plain / 16) + 1), #ours)
        -- openssl reads what we wrote ...
        assert.equal(plain, openssl_enc("-d", ours, key, iv))
        -- ... writes exactly what we write ...
        local theirs = openssl_enc("-e", plain, key, iv)
        assert.equal(to_hex(theirs), to_hex(ours))
        -- ... and we read what it wrote.
        assert.equal(plain, core.aes128cbc_decrypt(theirs, key, iv))
      end)
    end

    it("on a message much larger than one buffer", function()
      local plain = string.rep(random_bytes(997), 1500)
      local key, iv = random_bytes(16), random_bytes(16)
      local ours = core.aes128cbc_encrypt(plain, key, iv)
      -- Compared as booleans: a failure message of two 1.5 MB strings helps nobody.
      assert.is_true(openssl_enc("-e", plain, key, iv) == ours)
      assert.is_true(plain == core.aes128cbc_decrypt(ours, key, iv))
    end)
  end)

  describe("wrong key or IV length", function()
    local SECRET = "TOPSECRETKEY-0123456789"

    local function assert_raises(fn, arg_number, what)
      local ok, msg = pcall(fn)
      assert.is_false(ok)
      msg = tostring(msg)
      assert.is_truthy(msg:find("bad argument #" .. arg_number, 1, true), msg)
      assert.is_truthy(msg:find(what .. " must be exactly 16 bytes", 1, true), msg)
      -- The key never shows up in the message, not even partly.
      assert.is_nil(msg:find("TOPSECRET", 1, true), msg)
      assert.is_nil(msg:find(to_hex("TOPSECRET"), 1, true), msg)
    end

    for _, f in ipairs({ "aes128cbc_encrypt", "aes128cbc_decrypt" }) do
      it("raises in " .. f, function()
        local good = string.rep("k", 16)
        local input = string.rep("x", 32)
        for _, n in ipairs({ 0, 8, 15, 17, 23 }) do
          local bad = SECRET:sub(1, n)
          assert_raises(function() core[f](input, bad, good) end, 2, "key")
          assert_raises(function() core[f](input, good, bad) end, 3, "iv")
        end
        assert.has_error(function() core[f](input, nil, good) end)
        assert.has_error(function() core[f](input, good, nil) end)
        assert.has_error(function() core[f](nil, good, good) end)
        -- The length is reported.
        local _, msg = pcall(core[f], input, SECRET:sub(1, 17), good)
        assert.is_truthy(tostring(msg):find("got 17", 1, true))
      end)
    end
  end)

  describe("decrypt rejects", function()
    local key = from_hex("000102030405060708090a0b0c0d0e0f")
    local iv = from_hex("f0e0d0c0b0a090807060504030201000")

    it("a ciphertext length that is not a positive multiple of 16", function()
      for _, n in ipairs({ 0, 1, 15, 17, 31, 33, 47 }) do
        local out, err = core.aes128cbc_decrypt(string.rep("\0", n), key, iv)
        assert_protocol_error("bad_length", out, err)
        assert.is_truthy(err.message:find("length " .. n .. " ", 1, true), err.message)
      end
    end)

    it("tampered padding", function()
      -- "hello" is padded with eleven 0x0b bytes. Flipping bits of the IV
      -- (one block) or of the previous block (two blocks) flips the same
      -- bits of the decrypted last block.
      local one_block = core.aes128cbc_encrypt("hello", key, iv)
      local two_blocks = core.aes128cbc_encrypt("0123456789abcdef" .. "hello", key, iv)
      assert.equal(16, #one_block)
      assert.equal(32, #two_blocks)
      local tampered = {
        -- last byte 0x00: there is no zero-length padding
        { one_block, flip(iv, 16, 0x0b) },
        -- last byte 0x11: more than a block of padding
        { one_block, flip(iv, 16, 0x1a) },
        -- last byte 0x10, but the rest of the block is not 0x10
        { one_block, flip(iv, 16, 0x1b) },
        -- last byte still 0x0b, one of the other ten padding bytes changed
        { one_block, flip(iv, 7, 0x01) },
        -- the same through the previous ciphertext block
        { flip(two_blocks, 16, 0x0b), iv },
        { flip(two_blocks, 14, 0x40), iv },
      }
      for i, case in ipairs(tampered) do
        local out, err = core.aes128cbc_decrypt(case[1], key, case[2])
        assert_protocol_error("bad_padding", out, err)
        assert.is_nil(err.message:find(key, 1, true), "case " .. i)
      end
      -- The untouched ciphertexts are fine.
      assert.equal("hello", core.aes128cbc_decrypt(one_block, key, iv))
      assert.equal("0123456789abcdefhello", core.aes128cbc_decrypt(two_blocks, key, iv))
    end)

    it("a message decrypted with the wrong key", function()
      local cipher = core.aes128cbc_encrypt("the quick brown fox", key, iv)
      local wrong_key = from_hex("000102030405060708090a0b0c0d0e0e")
      local out, err = core.aes128cbc_decrypt(cipher, wrong_key, iv)
      assert_protocol_error("bad_padding", out, err)
    end)
  end)

  it("keeps no state from one call to the next (context reuse)", function()
    local key_a, iv_a = random_bytes(16), random_bytes(16)
    local key_b, iv_b = random_bytes(16), random_bytes(16)
    local plain = random_bytes(40)
    local first = core.aes128cbc_encrypt(plain, key_a, iv_a)
    local expected = openssl_enc("-e", plain, key_a, iv_a)
    assert.equal(to_hex(expected), to_hex(first))

    -- Interleave the other direction, another key, failures and raises.
    local other = core.aes128cbc_encrypt(plain, key_b, iv_b)
    assert.are_not.equal(first, other)
    assert.equal(plain, core.aes128cbc_decrypt(other, key_b, iv_b))
    -- 40 bytes end in eight 0x08 bytes of padding; make the last one 0x00.
    assert.equal(48, #first)
    assert.is_nil(core.aes128cbc_decrypt(flip(first, 32, 0x08), key_a, iv_a))
    assert.is_false(pcall(core.aes128cbc_encrypt, plain, "short", iv_a))
    assert.is_nil(core.aes128cbc_decrypt(string.rep("x", 17), key_a, iv_a))

    assert.equal(to_hex(first), to_hex(core.aes128cbc_encrypt(plain, key_a, iv_a)))
    assert.equal(plain, core.aes128cbc_decrypt(first, key_a, iv_a))
    assert.equal(to_hex(other), to_hex(core.aes128cbc_encrypt(plain, key_b, iv_b)))
  end)
end)
