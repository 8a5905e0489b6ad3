-- core.random draws from the operating system (OpenSSL's RAND_bytes), not
-- math.random, which LuaJIT never seeds: OneShot message ids and reconnect
-- jitter differ between processes started at the same moment.
local core = require "ksms.core"
local session = require "ksms.oneshot.session"
local H = require "spec_helper"

local BUILD = os.getenv("KSMS_TEST_BUILD") or "build/lua5.4"
local KEY, IV = string.rep("k", 16), string.rep("i", 16)

-- A session whose connects are refused; after connect() fails, the
-- reconnect is due at the delay times the jitter factor.
local SCRIPT = [[
local core = require "ksms.core"
local protocol = require "ksms.oneshot.protocol"
local session = require "ksms.oneshot.session"
local KEY, IV, port = string.rep("k", 16), string.rep("i", 16), tonumber(arg[1])
local ids = {}
for i = 1, 3 do
  local p = protocol.new { id = "test001", password = "pw", key = KEY, iv = IV }
  ids[i] = assert(p:submit { to = "01012345678", from = "0212345678", text = "x" }).id
end
local s = session.new { host = "127.0.0.1", port = port, id = "test001", password = "pw", key = KEY, iv = IV,
  reconnect_delay = 1e6, connect_timeout = 1 }
assert(not s:connect(1))
local factor = (s.reconnect_at - core.monotonic()) / 1e6
s:close()
print(table.concat(ids, " ") .. string.format(" %.9f", factor))
]]

describe("core.random", function()
  it("keeps math.random's contract: [0, 1), [1, m], [m, n], each value drawn", function()
    local seen, counts = {}, {}
    for _ = 1, 600 do
      local f = core.random()
      assert.is_true(f >= 0 and f < 1)
      local v = core.random(6)
      assert.is_true(v >= 1 and v <= 6 and v % 1 == 0)
      counts[v] = (counts[v] or 0) + 1
      local w = core.random(-2, 2)
      assert.is_true(w >= -2 and w <= 2 and w % 1 == 0)
      seen[w] = true
    end
    for v = 1, 6 do assert.is_true(counts[v] > 40, "value " .. v .. " drawn " .. tostring(counts[v]) .. " times") end
    for w = -2, 2 do assert.is_true(seen[w]) end
    assert.equal(7, core.random(7, 7))
  end)

  it("raises for an empty interval or a number that is not an integer", function()
    assert.error_matches(function() core.random(2, 1) end, "interval is empty")
    assert.error_matches(function() core.random(0) end, "interval is empty")
    assert.error_matches(function() core.random(1.5) end, "no integer representation")
    assert.error_matches(function() core.random(1, 1e300) end, "no integer representation")
    assert.error_matches(function() core.random(0 / 0) end, "no integer representation")
  end)

  it("gives OneShot id prefixes and reconnect jitter that differ between processes started together (luajit, lua5.4)", function()
    local script = H.tmpname()
    H.write_file(script, SCRIPT)
    local port = H.free_port()
    local run = {}
    for _, lua in ipairs { "luajit", "luajit", "lua5.4", "lua5.4" } do
      run[#run + 1] = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/%s/?.so;;' %s %s %d &")
        :format(lua, lua, script, port)
    end
    local out, ok = H.run("(" .. table.concat(run, " ") .. " wait) 2>&1")
    os.remove(script)
    assert(ok, out)
    local prefixes, factors, lines = {}, {}, 0
    for line in out:gmatch("[^\n]+") do
      lines = lines + 1
      local a, b, c, factor = line:match("^(%w+)%-1 (%w+)%-1 (%w+)%-1 (%S+)$")
      assert(a, "unexpected output: " .. line)
      local ids = a .. " " .. b .. " " .. c
      assert.is_nil(prefixes[ids], "two processes drew the same id prefixes: " .. ids)
      prefixes[ids] = true
      factor = tonumber(factor)
      assert.is_true(factor >= 0.8 and factor <= 1.2, "jitter factor " .. factor)
      assert.is_nil(factors[factor], "two processes drew the same jitter: " .. factor)
      factors[factor] = true
    end
    assert.equal(4, lines, out)
  end)

  it("jitters the reconnect delay within 20% either way, over the whole range", function()
    local port = H.free_port()
    local lo, hi = math.huge, -math.huge
    for _ = 1, 100 do
      local s = session.new { host = "127.0.0.1", port = port, id = "test001", password = "pw", key = KEY, iv = IV,
        reconnect_delay = 1e6, connect_timeout = 1 }
      assert.is_nil(s:connect(1))
      local factor = (s.reconnect_at - core.monotonic()) / 1e6
      s:close()
      assert.is_true(factor >= 0.8 and factor <= 1.2, "jitter factor " .. factor)
      lo, hi = math.min(lo, factor), math.max(hi, factor)
    end
    -- 100 uniform draws all in one half of the range: odds 2 * 2^-100.
    assert.is_true(lo < 1 and hi > 1, ("factors from %g to %g"):format(lo, hi))
  end)
end)
