-- ksms.oneshot.pacer with late polls: timers and poll(2) wake a millisecond
-- or two late, which at Speed 1000 is a whole slot or two. The pacer uses
-- the slots it missed (briefly) so the achieved rate stays at Speed / 1.02,
-- and no window of 1.02 s, however placed, ever holds more than Speed.
local pacer = require "ksms.oneshot.pacer"

local function run(rate, step, seconds, opts)
  local p = pacer.new(rate, opts)
  local sends, t = {}, 0
  while t < seconds do
    while p:take(t) do sends[#sends + 1] = t end
    t = t + step
  end
  return sends
end

local function max_in_window(sends, window)
  local most, j = 0, 1
  for i = 1, #sends do
    while sends[i] - sends[j] >= window do j = j + 1 end
    if i - j + 1 > most then most = i - j + 1 end
  end
  return most
end

describe("pacer", function()
  it("keeps Speed / 1.02 when polled every 2 ms at Speed 1000", function()
    local sends = run(1000, 0.002, 10)
    assert.is_true(#sends >= 9700, "only " .. #sends .. " in 10 s")
    assert.is_true(max_in_window(sends, 1.02) <= 1000)
    assert.is_true(max_in_window(sends, 1.0) <= 1000)
  end)

  it("does not burst after idling, and catches up at most max_lag worth", function()
    local p = pacer.new(1000)
    assert.is_true(p:take(0))
    -- Idle for a second: the next poll sends one, not a backlog.
    local n = 0
    while p:take(1.0) do n = n + 1 end
    assert.equal(1, n)
    -- Polled 2.5 slots late: up to max_lag (3 ms) of missed slots go out.
    n = 0
    while p:take(1.0 + 0.00102 * 3.5) do n = n + 1 end
    assert.is_true(n >= 2 and n <= 4, "caught up " .. n)
  end)

  it("holds the window under any poll rhythm", function()
    for _, step in ipairs({ 0.0001, 0.0007, 0.003, 0.013, 0.25 }) do
      for _, rate in ipairs({ 7, 100, 1000 }) do
        local sends = run(rate, step, 5)
        assert.is_true(max_in_window(sends, 1.02) <= rate, ("rate %d step %g"):format(rate, step))
      end
    end
  end)
end)
