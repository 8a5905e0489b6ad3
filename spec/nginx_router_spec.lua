-- nginx_router_spec.lua - ksms.router's breaker over a lua_shared_dict in
-- a real nginx with 2 workers (spec/nginx_router/router_app.lua), against
-- two fake Senders servers: failures counted in either worker open the
-- breaker for both, after the cool-down exactly one trial goes to route a
-- however many requests run at once, and its success closes it for both.
local nginx_control = require "nginx_control"
local fake_control = require "fake_control"
local requests = require "nginx_requests"
local socket = require "socket"

local ROOT = nginx_control.repo_root()

local ready, why = nginx_control.ready()
if not ready then
  describe("the router's breaker in nginx", function() pending("skipped: " .. why) end)
  return
end

local SEND = "/APIV2/sms_send"

describe("the router's breaker shared by nginx's workers", function()
  local a, b, nginx

  setup(function()
    a, b = fake_control.start("senders"), fake_control.start("senders")
    nginx = nginx_control.start { ksms = true, workers = 2, reuseport = true,
      lua_path = ROOT .. "/spec/nginx_router/?.lua",
      main = ("env KSMS_ROUTE_A_URL=%s;\nenv KSMS_ROUTE_B_URL=%s;\n"):format(a.base_url, b.base_url),
      http = "lua_shared_dict ksms_router 1m;",
      locations = 'location = /send { content_by_lua_block { require("router_app").send() } }' }
  end)
  teardown(function()
    if nginx then nginx:stop() end
    fake_control.stop_all()
  end)

  -- Sequential requests, each on its own connection; the answers and the
  -- number of workers that gave them.
  local function one_by_one(n, query)
    local out, pids, workers = {}, {}, 0
    for i = 1, n do
      out[i] = requests.get(nginx.port, "/send?" .. (query or ""))
      if not pids[out[i].pid] then pids[out[i].pid] = true; workers = workers + 1 end
    end
    return out, workers
  end

  it("opens for every worker after 4 failures in total, lets one trial through after the cool-down, and closes on its success", function()
    a:reset(); b:reset()
    a:script { path = SEND, result = "185" } -- balance, until reset: every try fails over
    local out, workers = one_by_one(14)
    assert.is_true(workers >= 2, "both workers answered: " .. workers)
    assert.equal(4, #a:requests(SEND), "4 failures in total opened it, whichever worker met them")
    for i = 5, 14 do
      assert.equal("b", out[i].route)
      assert.equal("skipped:open", out[i].first)
      assert.equal("open", out[i].state)
    end
    assert.equal(14, #b:requests(SEND))
    -- The cool-down (1 s) passes: 8 requests at once over both workers, one trial.
    socket.sleep(1.2)
    local reqs = {}
    for i = 1, 8 do reqs[i] = { path = "/send" } end
    local trials = 0
    for _, ans in ipairs(requests.many(nginx.port, reqs)) do
      assert.equal("b", ans.route)
      if ans.first == "balance" then trials = trials + 1 end
    end
    assert.equal(1, trials)
    assert.equal(5, #a:requests(SEND), "exactly one trial reached route a")
    -- The route recovers: the next trial succeeds and closes it for both workers.
    a:reset()
    socket.sleep(1.2)
    out, workers = one_by_one(8)
    assert.is_true(workers >= 2, "both workers answered: " .. workers)
    for _, ans in ipairs(out) do assert.equal("a", ans.route) end
    assert.equal(8, #a:requests(SEND))
    requests.no_errors(nginx, { "[error]", "[alert]" })
  end)

  it("without the dict each worker counts alone and route a gets more failures", function()
    a:reset(); b:reset()
    a:script { path = SEND, result = "185" }
    local _, workers = one_by_one(14, "shared=0")
    assert.is_true(workers >= 2, "both workers answered: " .. workers)
    assert.is_true(#a:requests(SEND) > 4, "two breakers of 4: got " .. #a:requests(SEND))
  end)
end)
