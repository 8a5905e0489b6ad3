-- rate_app.lua - the handler nginx_rate_spec runs in a real nginx: GET
-- /send?n=N&many=1&shared=1 sends N messages to the fake Senders (from
-- env KSMS_SENDERS_BASE_URL) through one client per worker, paced by the
-- client's rate (shared: over the lua_shared_dict ksms_rate), and answers
-- JSON { pid, ok, codes }.
local ksms = require "ksms"
local cjson = require "cjson.safe"

local _M = {}

local clients = {} -- per worker: [shared] = client (its bucket lives on)

local function client(shared)
  local key = shared and "shared" or "local"
  if not clients[key] then
    clients[key] = ksms.client("senders", {
      api_key = "test-senders-key", base_url = os.getenv("KSMS_SENDERS_BASE_URL"), timeout = 5,
      rate = shared and { per_second = 20, dict = "ksms_rate" } or 20,
    })
  end
  return clients[key]
end

function _M.send()
  local args = ngx.req.get_uri_args()
  local n = tonumber(args.n) or 1
  local c = client(args.shared == "1")
  local msgs = {}
  for i = 1, n do
    msgs[i] = { to = "01011112222", from = "0212345678", text = "w" .. ngx.worker.pid() .. " " .. i }
  end
  local outs = {}
  if args.many == "1" then
    outs = c:send_many(msgs, { concurrency = 2 })
  else
    for i, m in ipairs(msgs) do
      local res, err = c:send(m)
      outs[i] = res or err
    end
  end
  local ok, codes = 0, {}
  for i, o in ipairs(outs) do
    if o.ok then ok = ok + 1 end
    codes[i] = o.ok and "ok" or tostring(o.code)
  end
  ngx.say(cjson.encode { pid = ngx.worker.pid(), ok = ok, codes = codes })
end

return _M
