-- core.sleep(seconds) -> seconds waited for: NaN and negative wait 0, more
-- than a day waits a day, and no number is cast to time_t out of range.
local core = require "ksms.core"
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"

describe("core.sleep", function()
  it("waits 0 for a negative number or NaN, and what it is given otherwise", function()
    assert.equal(0, core.sleep(-1))
    assert.equal(0, core.sleep(-math.huge))
    assert.equal(0, core.sleep(0 / 0))
    assert.equal(0, core.sleep(0))
    local t0 = core.monotonic()
    assert.equal(0.02, core.sleep(0.02))
    assert.is_true(core.monotonic() - t0 >= 0.015)
  end)

  it("clamps an infinite or huge wait to a day without undefined behaviour (clang UBSan)", function()
    local path = H.tmpname()
    -- Each huge wait runs in a child that `timeout` stops after 0.5 s:
    -- exit 124 means it was sleeping, not reporting a cast out of range.
    H.write_file(path, [[
local core = require "ksms.core"
io.write(string.format("%g %g %g\n", core.sleep(-1), core.sleep(0 / 0), core.sleep(-1e300)))
for _, v in ipairs { "math.huge", "1e300", "2^63", "86400.5" } do
  local p = io.popen(("timeout 0.5 %s -e 'require(\"ksms.core\").sleep(%s)' 2>&1; echo \"rc=$?\"")
    :format(arg[-1], v))
  io.write(v, " ", p:read("*a"))
  p:close()
end
]])
    local out, ok = H.run_ubsan_clang(LUA, path)
    os.remove(path)
    if out then
      assert(ok, out)
      assert.equal("0 0 0\nmath.huge rc=124\n1e300 rc=124\n2^63 rc=124\n86400.5 rc=124\n", out)
    end
  end)
end)
