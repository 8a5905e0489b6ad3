-- bench/http.lua: the HTTP path, beside baselines measured in this run.
--
-- 1. Requests per second through client:send (validation, form encoding,
--    libcurl, JSON answer) against a local nginx that answers like Senders,
--    beside bench/bin/curl_loop sending the same form POST with raw
--    libcurl on one keep-alive handle. Goal: at least 0.85 of it.
-- 2. 10,000 personalised messages through send_many at concurrency 32
--    against an nginx that answers after 50 ms, beside the latency bound
--    10,000 / 32 x 50 ms. Goal: within 1.2 of it.
--
-- Run with `make bench-http` (builds the baseline; needs nginx-light and
-- libnginx-mod-http-lua). BENCH_REQUESTS and BENCH_MESSAGES shrink it.
package.path = "spec/?.lua;" .. package.path
local ksms = require "ksms"
local core = require "ksms.core"
local socket = require "socket"
local nginx_control = require "nginx_control"

local REQUESTS = tonumber(os.getenv("BENCH_REQUESTS") or "") or 20000
local MESSAGES = tonumber(os.getenv("BENCH_MESSAGES") or "") or 10000
local ROUNDS = 3
local CONCURRENCY, LATENCY = 32, 0.05

local now = socket.gettime
local KEY = "bench-key"

local nginx = nginx_control.start {
  lua = true,
  locations = [[
    location = /APIV2/sms_send { default_type text/html; return 200 '{"result":"100"}'; }
    location = /slow/APIV2/sms_send {
      default_type text/html;
      content_by_lua_block { ngx.req.discard_body(); ngx.sleep(0.05); ngx.print('{"result":"100"}') }
    }
  ]],
}

local ok, err = pcall(function()
  -- 1. One request at a time.
  local client = ksms.client("senders", { api_key = KEY, base_url = nginx.base_url, timeout = 10 })
  local msg = { to = "010-1234-5678", from = "02-1234-5678", text = "[ksms] 주문하신 상품이 발송되었습니다." }
  assert(client:send(msg))
  -- The exact body ksms sends, for the C loop.
  local form = { { "api_key", KEY }, { "msg", msg.text }, { "callback", "0212345678" },
    { "dstaddr", "01012345678" }, { "send_reserve", "0" }, { "call_block", "0" } }
  local body_file = os.tmpname()
  local f = assert(io.open(body_file, "wb")); f:write(core.urlencode_form(form)); f:close()

  -- The transport alone, same request: shows what the Lua layers cost.
  local transport = client.transport
  local plain_req = { method = "POST", url = nginx.base_url .. "/APIV2/sms_send", form = form }
  local best_c, best_ksms, best_transport = 0, 0, 0
  local per_round = math.floor(REQUESTS / ROUNDS)
  for _ = 1, ROUNDS do
    local p = assert(io.popen(("bench/bin/curl_loop %s/APIV2/sms_send %s %d"):format(nginx.base_url, body_file, per_round)))
    local out = p:read("*a"); p:close()
    local c_rate = assert(tonumber(out:match("wall_rate ([%d.]+)")), "curl_loop failed: " .. out)
    if c_rate > best_c then best_c = c_rate end
    local t0 = now()
    for _ = 1, per_round do
      local res = client:send(msg)
      if not res then error("send failed") end
    end
    local r = per_round / (now() - t0)
    if r > best_ksms then best_ksms = r end
    t0 = now()
    for _ = 1, per_round do
      if not transport:request(plain_req) then error("request failed") end
    end
    r = per_round / (now() - t0)
    if r > best_transport then best_transport = r end
  end
  os.remove(body_file)
  print(("HTTP, one request at a time (%s, best of %d rounds of %d)"):format(
    _VERSION .. (jit and (" " .. jit.version) or ""), ROUNDS, per_round))
  print(("  raw libcurl loop          %9.0f requests/s"):format(best_c))
  print(("  ksms transport alone      %9.0f requests/s   %.2fx of raw libcurl"):format(
    best_transport, best_transport / best_c))
  print(("  ksms client:send          %9.0f requests/s   %.2fx of raw libcurl (goal >= 0.85: %s)"):format(
    best_ksms, best_ksms / best_c, best_ksms / best_c >= 0.85 and "met" or "MISSED"))
  client:close()

  -- 2. Many personalised messages against a 50 ms server.
  local slow = ksms.client("senders", { api_key = KEY, base_url = nginx.base_url .. "/slow", timeout = 30 })
  local msgs = {}
  for i = 1, MESSAGES do
    msgs[i] = { to = ("010%08d"):format(10000000 + i), from = "0212345678",
      text = ("[ksms] %d번 고객님, 주문이 접수되었습니다."):format(i) }
  end
  local t0 = now()
  local outs = slow:send_many(msgs, { concurrency = CONCURRENCY })
  local elapsed = now() - t0
  local failed = 0
  for _, o in ipairs(outs) do if not o.ok then failed = failed + 1 end end
  local bound = MESSAGES / CONCURRENCY * LATENCY
  print(("send_many: %d messages, concurrency %d, server latency %d ms"):format(MESSAGES, CONCURRENCY, LATENCY * 1000))
  print(("  latency bound             %9.2f s"):format(bound))
  print(("  ksms send_many            %9.2f s   %.3fx the bound (goal <= 1.2: %s), %d failed"):format(
    elapsed, elapsed / bound, elapsed / bound <= 1.2 and "met" or "MISSED", failed))
  slow:close()
end)
nginx:stop()
if not ok then error(err, 0) end
