local core = require "ksms.core"
local H = require "spec_helper"

describe("deflate/inflate", function()
  it("compresses at level 9 by default exactly like the document", function()
    for _, v in ipairs(H.doc_frames()) do
      assert.equal(core.unhex(v.zlib_hex), core.deflate(v.json), v.name)
      assert.equal(core.unhex(v.zlib_hex), core.deflate(v.json, 9))
    end
  end)

  it("gives the same bytes whichever level was used before (stream reuse)", function()
    local s = H.doc_frames()[4].json
    local first = core.deflate(s)
    core.deflate(s, 1)
    core.deflate(string.rep("x", 100000), 0)
    assert.equal(first, core.deflate(s))
  end)

  it("agrees with the zlib command line tool's format (RFC 1950 header)", function()
    local z = core.deflate("abc")
    assert.equal(0x78, z:byte(1))
    assert.equal(0, (z:byte(1) * 256 + z:byte(2)) % 31)
  end)

  it("round-trips data of many sizes and levels", function()
    for _, n in ipairs({ 0, 1, 100, 65535, 65536, 300000 }) do
      local t = {}
      for i = 1, n do t[i] = string.char((i * 7 + math.floor(i / 8)) % 251) end
      local s = table.concat(t)
      for _, level in ipairs({ -1, 0, 1, 6, 9 }) do
        assert.equal(s, core.inflate(core.deflate(s, level), n + 1))
      end
    end
  end)

  it("caps the output of inflate", function()
    local z = core.deflate(string.rep("A", 2 * 1024 * 1024))
    local out, err = core.inflate(z)
    assert.is_nil(out)
    assert.equal("too_large", err.code)
    assert.equal(2 * 1024 * 1024, #core.inflate(z, 2 * 1024 * 1024))
  end)

  it("rejects corrupt, truncated and non-zlib input", function()
    local z = core.deflate("hello world hello world")
    for _, bad in ipairs({ "", "nonsense", z:sub(1, -2), z:sub(1, 5), z .. "x" }) do
      local out, err = core.inflate(bad)
      assert.is_nil(out)
      assert.equal("protocol", err.category)
      assert.is_string(err.code)
    end
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() core.deflate("x", 11) end)
    assert.has_error(function() core.deflate({}) end)
    assert.has_error(function() core.inflate("x", -1) end)
  end)
end)
