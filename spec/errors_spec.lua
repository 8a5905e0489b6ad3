-- The error boundary: tostring(err) for long fields (the C __tostring),
-- the bounds errors.new puts on message and code, and the installed `ksms
-- send` against a fake Senders that answers an undocumented 3,000-byte
-- result.
local core = require "ksms.core"
local errors = require "ksms.errors"
local cjson = require "cjson"
local H = require "spec_helper"
local fake_control = require "fake_control"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local BUILD = os.getenv("KSMS_TEST_BUILD") or ("build/" .. LUA)

local rep = string.rep

-- Well-formed UTF-8? (cp949_len refuses anything else; LuaJIT has no utf8.)
local function utf8_ok(s) return core.cp949_len(s) ~= nil end

describe("tostring(err)", function()
  it("gives exactly the expected text whatever the length of message and code", function()
    -- Past the luaL_Buffer's inline space (about 1 KB) is where it broke.
    for _, n in ipairs { 0, 1, 200, 1000, 1100, 3000, 3500, 9000 } do
      local code, message = rep("c", n) .. "|", rep("가", n) .. "|"
      local e = setmetatable({ provider = "senders", category = "server", code = code, message = message },
        errors.mt)
      assert.equal("ksms[senders] server (" .. code .. "): " .. message, tostring(e))
      -- The same object made by errors.new and then given long fields.
      local e2 = errors.new { category = "unknown", provider = "cafe24" }
      e2.code, e2.message = code, message
      assert.equal("ksms[cafe24] unknown (" .. code .. "): " .. message, tostring(e2))
    end
  end)

  it("leaves out what is missing and converts numbers", function()
    local mt = errors.mt
    assert.equal("ksms[?] unknown", tostring(setmetatable({}, mt)))
    assert.equal("ksms[?] unknown", tostring(setmetatable({ category = {}, code = true, message = {} }, mt)))
    assert.equal("ksms[p] server (315): m", tostring(setmetatable({ provider = "p", category = "server",
      code = 315, message = "m" }, mt)))
    assert.equal("ksms[p] server: 7", tostring(setmetatable({ provider = "p", category = "server",
      message = 7 }, mt)))
  end)
end)

describe("errors.new bounds", function()
  it("cuts a long message and code on a character boundary and says the original length", function()
    for _, n in ipairs { 513, 1000, 3000, 100000 } do
      for _, unit in ipairs { "x", "가", "😀", "é" } do
        local long = rep(unit, math.ceil(n / #unit))
        local e = errors.new { category = "server", code = long, message = long }
        local suffix = "... (" .. #long .. " bytes)"
        for field, max in pairs { message = errors.MESSAGE_MAX, code = errors.CODE_MAX } do
          local v = e[field]
          assert.is_true(#v <= max, field .. " is " .. #v .. " bytes")
          assert.equal(suffix, v:sub(-#suffix), field)
          local kept = v:sub(1, #v - #suffix)
          assert.equal(long:sub(1, #kept), kept, field)
          assert.is_true(utf8_ok(kept), field .. " cut inside a character")
          -- no more than one character's worth short of the bound
          assert.is_true(#kept > max - #suffix - #unit, field)
        end
        assert.is_true(#tostring(e) < 700)
      end
    end
    assert.equal(512, errors.MESSAGE_MAX)
    assert.equal(64, errors.CODE_MAX)
  end)

  it("keeps fields within the bounds as they are, numbers included", function()
    local m, c = rep("가", 170), rep("9", 64) -- 510 and 64 bytes
    local e = errors.new { category = "server", code = c, message = m }
    assert.equal(m, e.message)
    assert.equal(c, e.code)
    e = errors.new { category = "server", code = 315 }
    assert.equal(315, e.code)
    assert.equal("server", e.message)
    assert.equal("ksms[ksms] server (315): server", tostring(e))
    e = errors.new { category = "server", code = 2 ^ 70, message = 12 }
    assert.equal(2 ^ 70, e.code)
    assert.equal(12, e.message)
  end)

  it("C errors cut a long message at 255 bytes, never inside a character", function()
    -- A path the caller gave is quoted in the message of the file error.
    for pad = 0, 3 do
      local path = "/nonexistent/" .. rep("x", pad) .. rep("가", 120)
      local body, err = core.multipart_body { { name = "f", file = path } }
      assert.is_nil(body)
      assert.equal("file", err.code)
      assert.is_true(#err.message <= 255, #err.message)
      assert.is_true(#err.message > 240, #err.message)
      assert.is_true(utf8_ok(err.message), "message cut inside a character (pad " .. pad .. ")")
      assert.equal("cannot read file '" .. path:sub(1, 40), err.message:sub(1, 58))
    end
  end)
end)

describe("the installed ksms command and a hostile provider answer", function()
  local prefix, bin, senders

  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

  setup(function()
    prefix = os.tmpname()
    os.remove(prefix)
    -- -o: never rebuild the module here (the sanitizer runs use their own).
    local out, ok = H.run(("make -s install PREFIX=%s LUA=%s BUILD=%s -o %s/ksms/core.so 2>&1"):format(
      q(prefix), LUA, BUILD, BUILD))
    assert(ok, out)
    bin = prefix .. "/bin/ksms"
    senders = fake_control.start("senders")
  end)

  teardown(function()
    fake_control.stop_all()
    if prefix then os.execute("rm -rf " .. q(prefix)) end
  end)

  -- stdout, stderr, exit status of the installed command (no LUA_PATH).
  local function ksms(args)
    local err_path = os.tmpname()
    local cmd = ("cd / && env -u LUA_PATH -u LUA_CPATH KSMS_SENDERS_API_KEY=k KSMS_SENDERS_BASE_URL=%s %s %s 2>%s; echo \"::$?\"")
      :format(q(senders.base_url), q(bin), args, q(err_path))
    local p = assert(io.popen(cmd))
    local all = p:read("*a")
    p:close()
    local out, code = all:match("^(.*)::(%d+)%s*$")
    local err = H.read_file(err_path)
    os.remove(err_path)
    return out, err, tonumber(code)
  end

  it("send exits with a normal code when the answer's result is 3,000 bytes", function()
    local huge = rep("9", 3000)
    for _, json in ipairs { false, true } do
      senders:script { path = "/APIV2/sms_send", result = huge, times = 1 }
      local out, err, code = ksms("send --provider senders --to 01011112222 --from 0212345678 --text hi"
        .. (json and " --json" or ""))
      -- 3: the provider may have accepted it (an undocumented code); 139 was the crash.
      assert.equal(3, code, err)
      local text = json and out or err
      assert.is_nil(text:find(huge, 1, true), "the whole answer was printed")
      assert.truthy(text:find("(3000 bytes)", 1, true), text)
      if json then
        local doc = cjson.decode(out)
        assert.is_false(doc.ok)
        assert.equal(rep("9", errors.CODE_MAX - #"... (3000 bytes)") .. "... (3000 bytes)", doc.error.code)
      else
        assert.matches("^ksms: send failed: ksms%[senders%] unknown %(9+%.%.%. %(3000 bytes%)%)", err)
      end
    end
    assert.equal(2, #senders:requests())
  end)
end)
