-- router_app.lua - the handler nginx_router_spec runs in a real nginx: GET
-- /send routes one message through a ksms.router over two fake Senders
-- servers (env KSMS_ROUTE_A_URL, KSMS_ROUTE_B_URL), one router per worker,
-- its breaker in the lua_shared_dict ksms_router (?shared=0: in the
-- worker), and answers JSON { pid, route, first } where first says what
-- route a did: "skipped:open", or its outcome's category.
local ksms = require "ksms"
local cjson = require "cjson.safe"

local _M = {}

local routers = {} -- per worker: [shared] = router (its breaker lives on)

local function router(shared)
  local key = shared and "shared" or "local"
  if not routers[key] then
    local function client(url)
      return ksms.client("senders", { api_key = "test-senders-key", base_url = os.getenv(url), timeout = 5 })
    end
    routers[key] = ksms.router {
      routes = { { name = "a", client = client("KSMS_ROUTE_A_URL") }, { name = "b", client = client("KSMS_ROUTE_B_URL") } },
      breaker = { failures = 4, cooldown = 1, dict = shared and "ksms_router" or nil },
    }
  end
  return routers[key]
end

function _M.send()
  local args = ngx.req.get_uri_args()
  local r = router(args.shared ~= "0")
  local res, err = r:send { to = "01011112222", from = "0212345678", text = "w" .. ngx.worker.pid() }
  local out = res or err
  local t = out.tried and out.tried[1] or {}
  local first = t.skipped and ("skipped:" .. t.skipped) or (t.outcome and (t.outcome.ok and "ok" or t.outcome.category))
  ngx.say(cjson.encode { pid = ngx.worker.pid(), route = out.route, first = first, state = r:breaker_state("a") })
end

return _M
