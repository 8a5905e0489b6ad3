-- The shape of the built module: what it exports, how it loads, its errors.
local core = require "ksms.core"
local errors = require "ksms.errors"
local H = require "spec_helper"

describe("ksms.core module", function()
  it("exports only luaopen_ksms_core from the shared object", function()
    local build = os.getenv("KSMS_TEST_BUILD") or "build/lua5.4"
    local out, ok = H.run("nm -D --defined-only " .. build .. "/ksms/core.so")
    assert.is_true(ok)
    local exported = {}
    for sym in out:gmatch("%x+ [TDBR] (%S+)") do
      if not sym:match("^_") then exported[#exported + 1] = sym end
    end
    assert.same({ "luaopen_ksms_core" }, exported)
  end)

  it("offers every binding the other modules rely on", function()
    for _, name in ipairs({ "b64encode", "b64decode", "hex", "unhex", "deflate", "inflate",
      "aes128cbc_encrypt", "aes128cbc_decrypt", "cp949_len", "charset_check",
      "frame_encode", "frame_decoder", "oneshot_json", "oneshot_frame", "json_object", "json_schema",
      "http_client", "urlencode_form", "multipart_body" }) do
      assert.is_function(core[name], name)
    end
    assert.is_string(core._VERSION)
  end)

  it("has one version: the core's, every module's and the released rockspec's", function()
    local rockspecs = {}
    for name in io.popen("ls ksms-*-*.rockspec"):lines() do
      local v = name:match("^ksms%-(%d+%.%d+%.%d+)%-%d+%.rockspec$")
      if v then rockspecs[#rockspecs + 1] = v end
    end
    table.sort(rockspecs)
    assert.is_true(#rockspecs >= 1)
    local release = rockspecs[#rockspecs]
    assert.equal(release, core._VERSION)
    assert.equal(release, require("ksms")._VERSION)
    for file in io.popen("find lua/ksms -name '*.lua'"):lines() do
      local v = io.open(file):read("*a"):match('_VERSION = "([^"]*)"')
      if v then assert.equal(release, v, file) end
    end
  end)

  it("returns structured, readable errors sharing one metatable", function()
    local v, err = core.inflate("not zlib")
    assert.is_nil(v)
    assert.is_true(errors.is(err))
    for _, field in ipairs({ "category", "code", "message", "provider" }) do
      assert.is_string(err[field], field)
    end
    assert.is_false(err.retryable)
    assert.equal("ksms[ksms] protocol (" .. err.code .. "): " .. err.message, tostring(err))
  end)

  it("builds Lua-side errors with the same convention", function()
    local e = errors.new { category = "auth", code = 155, message = "key refused", provider = "senders" }
    assert.equal("ksms[senders] auth (155): key refused", tostring(e))
    assert.is_false(e.retryable)
    assert.has_error(function() errors.new { category = "nonsense" } end)
  end)

  it("works when each binding is the first call in a fresh Lua state", function()
    local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
    local calls = {
      "c.frame_encode('x')", "require'ksms.oneshot.codec'.frame('AliveReq')",
      "require'ksms.oneshot.codec'.frame('MsgSendReq', { Message = ('x'):rep(5000) })",
      "c.oneshot_json('AliveReq')", "c.json_object({ a = 1 }, c.json_schema({ 'a' }))", "c.deflate('x')",
      "c.inflate(c.deflate('x'))", "c.frame_decoder():feed(c.frame_encode('y'))",
      "c.b64encode('x')", "c.b64decode('eA==')", "c.hex('x')", "c.unhex('78')",
      "c.aes128cbc_encrypt('x', ('k'):rep(16), ('i'):rep(16))", "c.cp949_len('가')",
      "c.charset_check('가', 'euc-kr')",
    }
    for _, call in ipairs(calls) do
      local out, ok = H.run(("%s -e %q 2>&1"):format(lua, "local c = require 'ksms.core'; assert(" .. call .. ")"))
      assert.is_true(ok, call .. ": " .. out)
    end
  end)

  it("keeps working state per Lua state: coroutines interleave safely", function()
    local co = coroutine.wrap(function()
      for i = 1, 50 do
        coroutine.yield(core.inflate(core.deflate(("x"):rep(i))))
      end
    end)
    for i = 1, 50 do
      local mine = core.deflate(("y"):rep(i * 3))
      assert.equal(("x"):rep(i), co())
      assert.equal(("y"):rep(i * 3), core.inflate(mine))
    end
  end)
end)
