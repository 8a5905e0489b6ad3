-- ksms.router.breaker, the in-process backend on a controlled clock (the
-- shared-dict backend needs nginx; outside it, dict raises).
local breaker = require "ksms.router.breaker"

describe("ksms.router.breaker", function()
  it("opens after N failing-over failures, lets one trial through after the cooldown, closes on its success", function()
    local t = 100
    local b = breaker.new({ failures = 2, cooldown = 10, trial_timeout = 5 }, { now = function() return t end })
    b:record("a", true)
    assert.equal("closed", b:state("a"))
    b:record("a", true)
    assert.equal("open", b:state("a"))
    assert.is_false(b:may_try("a"))
    t = t + 10
    assert.equal("half_open", b:state("a"))
    assert.is_true(b:may_try("a"))   -- the one trial
    assert.is_false(b:may_try("a"))  -- no second while it is out
    t = t + 5                        -- a trial that never reported is given up
    assert.is_true(b:may_try("a"))
    b:record("a", false)
    assert.equal("closed", b:state("a"))
    assert.is_true(b:may_try("a"))
  end)

  it("refuses dict outside nginx and unknown options", function()
    assert.has_error(function() breaker.new { dict = "ksms_router" } end)
    assert.has_error(function() breaker.new { failure = 2 } end)
    assert.has_error(function() breaker.new { trial_timeout = 0 } end)
  end)
end)
