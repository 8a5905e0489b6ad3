-- make demo-fleet's script (examples/fleet/demo.lua), run as the Makefile
-- target runs it but smaller (KSMS_DEMO_MESSAGES, KSMS_DEMO_SPEED): real
-- redis-server, fake OneShot server, three binder and three producer
-- processes, the holder killed with kill -9. The summary it prints is read
-- back here and its numbers checked against each other, not only its
-- "demo-fleet: OK" line, so the demo cannot silently stop showing what
-- docs/fleet.md says it shows.
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local BUILD = os.getenv("KSMS_TEST_BUILD") or ("build/" .. LUA)
local PER, SPEED = 40, 40

local function num(text, pattern)
  local v = text:match(pattern)
  return tonumber(v)
end

describe("make demo-fleet", function()
  it("is the Makefile's target for examples/fleet/demo.lua, after deps", function()
    local mk = H.read_file("Makefile")
    local body = mk:match("\ndemo%-fleet:[^\n]*deps[^\n]*\n(.-)\n\n")
    assert.is_truthy(body, "no demo-fleet target depending on deps")
    assert.matches("examples/fleet/demo.lua", body, 1, true)
  end)

  -- The environment is passed on (under the sanitizer passes LD_PRELOAD
  -- carries the runtime the sanitized core needs in every process).
  it("moves the connection after kill -9 and accounts for every message, report and bind", function()
    local cmd = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' "
      .. "KSMS_DEMO_MESSAGES=%d KSMS_DEMO_SPEED=%d %s examples/fleet/demo.lua 2>&1")
      :format(BUILD, PER, SPEED, LUA)
    local out, ok = H.run(cmd)
    assert.is_true(ok, out)
    assert.matches("demo-fleet: OK", out, 1, true)
    local total = 3 * PER

    -- Who held when: the killed holder, then another binder with a larger fence.
    local spans = {}
    for name, from, fence, why in out:gmatch("\n    (b%d)%s+([%d.]+) s to [^\n]- fence (%d+)%s+%(([^)]*)%)") do
      spans[#spans + 1] = { name = name, from = tonumber(from), fence = tonumber(fence), why = why }
    end
    assert.is_true(#spans >= 2, out)
    assert.equal("killed with kill -9", spans[1].why)
    assert.matches("kill %-9 " .. spans[1].name .. " %(the holder%)", out)
    for i = 2, #spans do
      assert.are_not.equal(spans[1].name, spans[i].name)
      assert.is_true(spans[i].fence > spans[i - 1].fence, out)
      assert.is_true(spans[i].from > spans[i - 1].from, out)
    end

    assert.equal(total, num(out, "messages: (%d+) enqueued by 3 producers"))
    local delivered, sent = num(out, "outbox: delivered=(%d+)"), num(out, "outbox:[^\n]- sent=(%d+)")
    local maybe = num(out, "outbox:[^\n]- maybe_sent=(%d+)")
    assert.equal(0, num(out, "queued=(%d+)"))
    assert.equal(0, num(out, "sending=(%d+)"))
    assert.equal(0, sent) -- every sent one got its report
    assert.equal(total, delivered + maybe)

    -- The fake: one bind per hold, none refused, nothing twice, Speed kept.
    assert.equal(#spans, num(out, "fake OneShot: binds=(%d+)"))
    assert.equal(0, num(out, "duplicate_binds=(%d+)"))
    assert.equal(0, num(out, "duplicates=(%d+)"))
    local accepted = num(out, "accepted=(%d+)")
    assert.is_true(accepted >= delivered and accepted <= total)
    local busiest = num(out, "busiest second at the fake: (%d+) messages")
    assert.is_true(busiest >= 1 and busiest <= SPEED, out)
    assert.equal(SPEED, num(out, "messages, Speed (%d+)"))
    assert.equal(0, num(out, "903/11 answers: (%d+)"))

    -- Reports: every accepted message's once in the stream, none left pending.
    assert.equal(accepted, num(out, "the stream gave the group (%d+)"))
    assert.equal(accepted, num(out, "the stream gave the group %d+, (%d+) distinct"))
    assert.equal(0, num(out, "(%d+) left pending"))
  end)
end)
