-- examples/nginx/notify.lua: sending an SMS from an nginx handler, with
-- metrics every worker adds to.
--
--   lua_shared_dict ksms_metrics 1m;
--   location = /notify  { content_by_lua_block { require("notify").handle() } }
--   location = /metrics { content_by_lua_block { require("notify").metrics() } }
--
-- GET /notify?to=01012345678[&text=...] sends one SMS through Senders and
-- answers 200 "<kind> <code>", 400 for a missing or refused argument (a
-- wrong number, a text too long), 504 when the provider may have accepted
-- it (a timeout after the request left: do not resend), 502 otherwise.
--
-- The client is made once per worker (this module's upvalue: a worker
-- loads a module once) on the first request, since cosockets do not exist
-- in init_worker. Its settings come from the environment (declared with
-- `env` in nginx.conf, or os.getenv sees nothing):
--   KSMS_SENDERS_API_KEY   the API key (required)
--   KSMS_SENDERS_BASE_URL  where to send (default: Senders' own host; the
--                          demo points it at the bundled fake provider)
--   KSMS_FROM              the registered caller number (02-1234-5678)
local ksms = require "ksms"
local metrics = require "ksms.metrics"

local ngx = ngx
local pcall, tostring, os_getenv = pcall, tostring, os.getenv

local _M = { _VERSION = "0.1.0" }

local registry = metrics.new { dict = "ksms_metrics" } -- one per worker, numbers shared
local client                                       -- made on first use, then kept

local function env(name)
  local v = os_getenv(name)
  if v == "" then return nil end
  return v
end

local function get_client()
  if client then return client end
  client = ksms.client("senders", {
    api_key = env("KSMS_SENDERS_API_KEY") or "",
    base_url = env("KSMS_SENDERS_BASE_URL"),
    timeout = tonumber(env("KSMS_TIMEOUT") or "") or 10,
    on_event = registry:hook(),
  })
  return client
end

local function answer(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.say(text)
  return ngx.exit(status)
end

local BAD_INPUT = { invalid_input = true, recipient = true, message_length = true, sender_number = true }

function _M.handle()
  local to, text = ngx.var.arg_to, ngx.var.arg_text
  if not to or to == "" then return answer(400, "missing argument: to") end
  text = text and ngx.unescape_uri(text) or "주문하신 상품이 발송되었습니다."
  -- A raise (misuse, a missing API key) must not become a bare 500.
  local ok, res, err = pcall(function()
    return get_client():send { from = env("KSMS_FROM") or "02-1234-5678", to = ngx.unescape_uri(to), text = text }
  end)
  if not ok then
    ngx.log(ngx.ERR, "notify: ", tostring(res))
    return answer(500, "ksms raised; see the error log")
  end
  if not res then
    ngx.log(ngx.ERR, "sms failed: ", tostring(err)) -- never contains the key
    if BAD_INPUT[err.category] then return answer(400, tostring(err)) end
    return answer(err.maybe_sent and 504 or 502, tostring(err))
  end
  return answer(200, res.kind .. " " .. tostring(res.code))
end

-- The Prometheus text of every worker's numbers (a shared dict).
function _M.metrics()
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.print(registry:render())
end

return _M
