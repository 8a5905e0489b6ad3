-- nginx_rate_spec.lua - the client's rate over a lua_shared_dict in a real
-- nginx with 2 workers (spec/nginx_rate/rate_app.lua): sends spread over
-- both workers never pass the rate at the fake Senders server, where each
-- worker's own bucket lets twice through; and a 429 one worker got holds
-- the other back until its Retry-After passes.
local nginx_control = require "nginx_control"
local fake_control = require "fake_control"
local requests = require "nginx_requests"

local ROOT = nginx_control.repo_root()

local ready, why = nginx_control.ready()
if not ready then
  describe("the client's rate in nginx", function() pending("skipped: " .. why) end)
  return
end

local SEND = "/APIV2/sms_send"

-- The most arrivals at the fake in any closed 1 s window, and their span.
local function most_in_second(fake)
  local ts = {}
  for i, r in ipairs(fake:requests(SEND)) do ts[i] = r.at end
  table.sort(ts)
  local most, j = 0, 1
  for i = 1, #ts do
    while ts[i] - ts[j] > 1 do j = j + 1 end
    if i - j + 1 > most then most = i - j + 1 end
  end
  return most, #ts > 0 and ts[#ts] - ts[1] or 0, #ts
end

describe("the client's rate in nginx", function()
  local fake, nginx

  setup(function()
    fake = fake_control.start("senders")
    nginx = nginx_control.start { ksms = true, workers = 2, reuseport = true,
      lua_path = ROOT .. "/spec/nginx_rate/?.lua",
      main = "env KSMS_SENDERS_BASE_URL=" .. fake.base_url .. ";\n",
      http = "lua_shared_dict ksms_rate 1m;",
      locations = 'location = /send { content_by_lua_block { require("rate_app").send() } }' }
  end)
  teardown(function()
    if nginx then nginx:stop() end
    if fake then fake:stop() end
  end)
  before_each(function() fake:reset() end)

  -- 16 connections at once of 2 messages each; the pids that answered.
  local function burst(query)
    local reqs = {}
    for i = 1, 16 do reqs[i] = { path = "/send?n=2&" .. query .. (i % 2 == 0 and "&many=1" or "") } end
    local pids, ok = {}, 0
    for _, a in ipairs(requests.many(nginx.port, reqs)) do
      pids[a.pid] = true
      ok = ok + a.ok
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    return n, ok
  end

  it("keeps 32 messages over both workers within 20 + 1 a second with a shared dict", function()
    local workers, ok = burst("shared=1")
    assert.is_true(workers >= 2, "both workers sent: " .. workers)
    assert.equal(32, ok)
    local most, span, n = most_in_second(fake)
    assert.equal(32, n)
    assert.is_true(most <= 21, "at most 21 in any second at the fake, got " .. most)
    assert.is_true(span >= 1.4, "32 starts in 32 slots of 50 ms span at least 1.5 s, got " .. span)
    requests.no_errors(nginx, { "[error]", "[alert]" })
  end)

  it("lets each worker's own bucket through without one (the dict is what holds them)", function()
    local workers, ok = burst("shared=0")
    assert.is_true(workers >= 2, "both workers sent: " .. workers)
    assert.equal(32, ok)
    local most = most_in_second(fake)
    assert.is_true(most > 21, "two buckets of 20/s let more than 21 through in a second, got " .. most)
  end)

  it("shares a 429's Retry-After: every worker refuses without sending until it passes", function()
    fake:script { path = SEND, status = 429, headers = { ["Retry-After"] = "2" }, body = "slow down", times = 1 }
    local first = requests.get(nginx.port, "/send?n=1&shared=1")
    assert.same({ "http_429" }, first.codes)
    local reqs = {}
    for i = 1, 12 do reqs[i] = { path = "/send?n=1&shared=1" .. (i % 2 == 0 and "&many=1" or "") } end
    local pids = {}
    for _, a in ipairs(requests.many(nginx.port, reqs)) do
      assert.same({ "retry_after" }, a.codes)
      pids[a.pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2, "both workers refused: " .. n)
    assert.equal(1, #fake:requests(SEND))
  end)
end)
