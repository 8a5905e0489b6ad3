-- bench/fleet_nginx.lua: enqueueing from an nginx handler into the
-- account's Redis outbox (ksms.ngx.oneshot with redis = URL), beside the
-- same handler without ksms, measured in this run.
--
-- One nginx (BENCH_WORKERS workers, 1) runs start{ redis = URL, account }
-- with its fleet member bound to the fake OneShot server at Speed 1000
-- (what is enqueued is sent meanwhile, as in production). Two handlers
-- read the POSTed JSON message and answer JSON: /plain builds the message
-- table and answers, /enqueue also calls oneshot.submit (the OneShot
-- checks, one Redis script over a cosocket). bench/bin/curl_loop sends
-- BENCH_REQUESTS (3,000) requests to each on one keep-alive connection,
-- ROUNDS times in turn; the best round of each is kept. Printed: the
-- latency per request of each, the latency ksms adds, the ratio; and the
-- Redis script calls and connections per message from its enqueue to its
-- delivery report (INFO before an enqueue round and after the holder has
-- sent it: the handler's calls and the holder's; the outbox store opens a
-- connection per call over cosockets).
-- Between rounds the holder drains the queue, so every round starts alike.
--
-- Run with `make bench-fleet-nginx` (nginx-light, libnginx-mod-http-lua,
-- redis-server; builds the core for LuaJIT, which nginx runs).
package.path = "spec/?.lua;" .. package.path
local socket = require "socket"
local kredis = require "ksms.redis"
local fleet = require "ksms.oneshot.fleet"
local nginx_control = require "nginx_control"
local redis_control = require "redis_control"
local fake_control = require "fake_control"

local REQUESTS = tonumber(os.getenv("BENCH_REQUESTS") or "") or 3000
local WORKERS = tonumber(os.getenv("BENCH_WORKERS") or "") or 1
local ROUNDS = 3
local SPEED = 1000
local NS = "bench-fleet-nginx"
local now = socket.gettime

local literal = require("nginx_requests").literal -- the binder options as nginx.conf Lua (the specs')

local LOCATIONS = [[
    location = /plain {
      content_by_lua_block {
        ngx.req.read_body()
        local cjson = require "cjson"
        local m = cjson.decode(ngx.req.get_body_data())
        local msg = { to = m.to, from = m.from, text = m.text }
        ngx.print(cjson.encode { ok = true, key = "plain", n = #msg.text })
      }
    }
    location = /enqueue {
      content_by_lua_block {
        ngx.req.read_body()
        local cjson = require "cjson"
        local m = cjson.decode(ngx.req.get_body_data())
        local msg = { to = m.to, from = m.from, text = m.text }
        local key, err = require("ksms.ngx.oneshot").submit(msg, { account = "bench" })
        if not key then ngx.status = 500; ngx.print(tostring(err)); return end
        ngx.print(cjson.encode { ok = true, key = key, n = #msg.text })
      }
    }
    location = /status {
      content_by_lua_block {
        ngx.print(require("cjson").encode(require("ksms.ngx.oneshot").status { account = "bench" }))
      }
    }
]]

local srv = redis_control.start {}
local fake = fake_control.start("oneshot", { state = { speed = SPEED, report_delay_ms = 20 } })
local cfg = fake:session_options { redis = srv.url, account = "bench", namespace = NS,
  outbox_namespace = NS .. ":ob", lock_ttl = 5, reconnect_delay = 0.3, window = 400 }
local nginx = nginx_control.start {
  ksms = true, workers = WORKERS,
  http = ("init_worker_by_lua_block { require('ksms.ngx.oneshot').start(%s) }"):format(literal(cfg)),
  locations = LOCATIONS,
}

local ok, err = pcall(function()
  local conn = assert(kredis.connect { url = srv.url })
  local ob = assert(fleet.outbox { redis = srv.url, account = "bench", outbox_namespace = NS .. ":ob" })
  -- Script calls (EVALSHA and EVAL: every outbox and lock operation is
  -- one) and connections the server received so far.
  local function info()
    local text = assert(conn:call("INFO", "commandstats"))
    local scripts = tonumber(text:match("cmdstat_evalsha:calls=(%d+)") or 0) + tonumber(text:match("cmdstat_eval:calls=(%d+)") or 0)
    local stats = assert(conn:call("INFO", "stats"))
    return scripts, tonumber(stats:match("total_connections_received:(%d+)"))
  end
  local function bound()
    local deadline = now() + 15
    while now() < deadline do
      if (fake:stats().binds or 0) >= 1 then return true end
      socket.sleep(0.1)
    end
    error("the fleet member did not bind")
  end
  local function drained()
    local deadline = now() + 60
    while now() < deadline do
      local c = assert(ob:counts())
      if c.queued == 0 and c.sending == 0 then return end
      socket.sleep(0.05)
    end
    local c, st = assert(ob:counts()), fake:stats()
    error(("the holder did not drain the queue: %d queued, %d sending, %d sent, %d delivered; the fake accepted %d, %d 903s")
      :format(c.queued, c.sending, c.sent, c.delivered, st.accepted or 0, st.speed_errors or 0))
  end
  bound()
  local body_file = os.tmpname()
  local f = assert(io.open(body_file, "wb"))
  f:write('{"to":"01012345678","from":"15666639","text":"[ksms] 주문하신 상품이 발송되었습니다."}')
  f:close()
  local function loop(path)
    local p = assert(io.popen(("bench/bin/curl_loop %s%s %s %d"):format(nginx.base_url, path, body_file, REQUESTS)))
    local out = p:read("*a")
    p:close()
    return assert(tonumber(out:match("wall_rate ([%d.]+)")), "curl_loop failed: " .. out)
  end
  loop("/plain") -- warm both up
  loop("/enqueue")
  drained()
  local best_plain, best_enqueue, cmds, conns = 0, 0, math.huge, math.huge
  for _ = 1, ROUNDS do
    local r = loop("/plain")
    if r > best_plain then best_plain = r end
    drained()
    local c0, k0 = info()
    r = loop("/enqueue")
    if r > best_enqueue then best_enqueue = r end
    drained()
    socket.sleep(0.2) -- the last reports
    local c1, k1 = info()
    cmds = math.min(cmds, (c1 - c0) / REQUESTS)
    conns = math.min(conns, (k1 - k0) / REQUESTS)
  end
  os.remove(body_file)
  local counts = assert(ob:counts())
  local st = fake:stats()
  local plain_ms, enqueue_ms = 1000 / best_plain, 1000 / best_enqueue
  print(("enqueue from an nginx handler into Redis (%d worker(s), one keep-alive client, best of %d rounds of %d)"):format(
    WORKERS, ROUNDS, REQUESTS))
  print(("  handler without ksms      %9.0f requests/s   %.3f ms per request"):format(best_plain, plain_ms))
  print(("  handler + oneshot.submit  %9.0f requests/s   %.3f ms per request   %.2fx the latency"):format(
    best_enqueue, enqueue_ms, enqueue_ms / plain_ms))
  print(("  added per request         %9.3f ms"):format(enqueue_ms - plain_ms))
  print(("  Redis per message         %9.2f script calls, %.2f connections, enqueue to delivered (the handler's "
    .. "and the holder's)"):format(cmds, conns))
  print(("  sent by the holder        %9d of %d records at the fake (Speed %d, busiest second %d, 903s %d, binds %d)"):format(
    (counts.sent or 0) + (counts.delivered or 0), (counts.sent or 0) + (counts.delivered or 0) + counts.queued,
    SPEED, st.max_per_second or 0, st.speed_errors or 0, st.binds or 0))
  ob:close()
  conn:close()
end)
if not ok then io.stderr:write(nginx:error_log():sub(-4000)) end
nginx:stop()
fake:stop()
srv:stop()
if not ok then error(err, 0) end
