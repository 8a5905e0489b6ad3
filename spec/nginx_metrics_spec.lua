-- nginx_metrics_spec.lua - examples/nginx/notify.lua in a real nginx with
-- 2 workers: sends that succeed, are refused and time out (against the
-- fake Senders server), then /metrics scraped: ksms.metrics over a
-- lua_shared_dict adds up every worker's numbers. Also make demo-nginx's
-- script, run as `make demo-nginx` runs it (a few seconds).
local nginx_control = require "nginx_control"
local fake_control = require "fake_control"
local H = require "spec_helper"

local ROOT = nginx_control.repo_root()

local ready, why = nginx_control.ready()
if not ready then
  describe("ksms.metrics in nginx", function() pending("skipped: " .. why) end)
  return
end

-- The value of one series in a render, nil when absent.
local function value(text, series)
  for line in text:gmatch("[^\n]+") do
    local name, v = line:match("^(.-) (%S+)$")
    if name == series then return tonumber(v) end
  end
  return nil
end

describe("ksms.metrics in nginx", function()
  local fake, nginx

  setup(function()
    fake = fake_control.start("senders")
    -- The example's handlers; reuseport spreads connections over both workers.
    nginx = nginx_control.start { ksms = true, workers = 2, reuseport = true,
      lua_path = ROOT .. "/examples/nginx/?.lua",
      main = ("env KSMS_SENDERS_API_KEY=test-senders-key;\nenv KSMS_SENDERS_BASE_URL=%s;\nenv KSMS_TIMEOUT=0.5;\n")
        :format(fake.base_url),
      http = "lua_shared_dict ksms_metrics 1m;",
      locations = [[
    location = /notify { add_header X-Pid $pid always; content_by_lua_block { require("notify").handle() } }
    location = /metrics { add_header X-Pid $pid always; content_by_lua_block { require("notify").metrics() } }]] }
  end)
  teardown(function()
    if nginx then nginx:stop() end
    if fake then fake:stop() end
  end)

  local function get(path)
    return assert(fake_control.http(nginx.port, "GET", path, nil, nil, 10))
  end

  it("adds up sends that succeed, fail and time out across 2 workers", function()
    local pids, statuses = {}, {}
    local function notify(n, path)
      for _ = 1, n do
        local res = get(path or "/notify?to=01012345678")
        pids[res.headers["x-pid"] or "?"] = true
        statuses[res.status] = (statuses[res.status] or 0) + 1
      end
    end
    notify(16)
    fake:script { path = "/APIV2/sms_send", result = "185", times = 3 }
    notify(3)
    fake:script { path = "/APIV2/sms_send", latency_ms = 2000, times = 2 }
    notify(2)
    notify(2, "/notify") -- a missing argument: 400, nothing sent, no event
    assert.same({ [200] = 16, [502] = 3, [504] = 2, [400] = 2 }, statuses)
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2, "both workers answered: " .. n)

    local scrape = get("/metrics")
    assert.equal(200, scrape.status)
    assert.matches("^text/plain; version=0.0.4", scrape.headers["content-type"])
    local text = scrape.body
    local op = 'ksms_operations_total{provider="senders",operation="send",status="%s"}'
    assert.equal(16, value(text, op:format("ok")), text)
    assert.equal(3, value(text, op:format("failed")), text)
    assert.equal(2, value(text, op:format("maybe_sent")), text)
    assert.equal(16, value(text, 'ksms_messages_total{provider="senders",operation="send",status="ok"}'))
    assert.equal(21, value(text, 'ksms_request_duration_seconds_count{provider="senders",operation="send"}'))
    assert.equal(21, value(text, 'ksms_request_duration_seconds_bucket{provider="senders",operation="send",le="+Inf"}'))
    -- The two timeouts took at least their 0.5 s each.
    assert.is_true(value(text, 'ksms_request_duration_seconds_sum{provider="senders",operation="send"}') >= 1)
    assert.equal(2, value(text, 'ksms_errors_total{provider="senders",operation="send",category="timeout",code="timeout"}'), text)
    assert.equal(21, #fake:requests("/APIV2/sms_send"))
    -- Every worker renders the same numbers (one shared dict).
    local seen = {}
    for _ = 1, 8 do
      local s = get("/metrics")
      seen[s.headers["x-pid"]] = s.body
    end
    for _, body in pairs(seen) do assert.equal(text, body) end
    assert.is_nil(nginx:error_log():find("on_event raised", 1, true))
  end)
end)

describe("make demo-nginx", function()
  it("sends one message through examples/nginx and stops both servers", function()
    local port = H.free_port()
    local out = H.tmpname()
    local ok = H.exec_ok(("cd %s && env -u LUA_PATH -u LUA_CPATH -u LD_PRELOAD KSMS_DEMO_PORT=%d KSMS_DEMO_LUA=%s sh examples/nginx/demo.sh > %s 2>&1")
      :format(ROOT, port, os.getenv("KSMS_TEST_LUA") or "lua5.4", out))
    local text = H.read_file(out)
    os.remove(out)
    assert.is_true(ok, text)
    assert.matches("HTTP 200: sms 100", text, 1, true)
    assert.matches("HTTP 400: missing argument: to", text, 1, true)
    assert.matches('ksms_operations_total{provider="senders",operation="send",status="ok"} 1', text, 1, true)
    -- Both stopped: nothing listens on the port any more.
    local socket = require "socket"
    local c = socket.tcp()
    c:settimeout(0.5)
    assert.is_nil(c:connect("127.0.0.1", port))
    c:close()
  end)
end)
