-- fakes.timer_heap: a binary min-heap of timers ordered by (at, id), so a
-- fake holding thousands of pending timers (reports due in minutes) costs
-- O(log n) per timer, not a scan of all of them per loop turn.
local _M = {}
local Heap = {}
Heap.__index = Heap

function _M.new() return setmetatable({ n = 0 }, Heap) end

local function before(a, b)
  if a.at ~= b.at then return a.at < b.at end
  return a.id < b.id
end

function Heap:push(t)
  local n = self.n + 1
  self.n = n
  self[n] = t
  while n > 1 do
    local parent = math.floor(n / 2)
    if not before(self[n], self[parent]) then break end
    self[n], self[parent] = self[parent], self[n]
    n = parent
  end
end

-- The earliest timer, cancelled ones dropped on the way.
function Heap:peek()
  while self.n > 0 and self[1].cancelled do self:pop() end
  if self.n > 0 then return self[1] end
  return nil
end

function Heap:pop()
  local n = self.n
  if n == 0 then return nil end
  local top, last = self[1], self[n]
  self[n] = nil
  n = n - 1
  if n > 0 then self[1] = last end
  self.n = n
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(self[l], self[m]) then m = l end
    if r <= n and before(self[r], self[m]) then m = r end
    if m == i then break end
    self[i], self[m] = self[m], self[i]
    i = m
  end
  return top
end

return _M
