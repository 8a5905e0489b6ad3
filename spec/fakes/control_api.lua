-- control_api.lua - the endpoints under /_fake/ through which a test drives
-- a fake (all JSON; see spec/fakes/README.md). Control requests are neither
-- recorded nor counted in the stats, and scripts never apply to them.
local json = require "fakes.json"
local forms = require "fakes.forms"
local http_client = require "fakes.http_client"

local _M = {}

local function reply(res, status, value)
  res:send(status, { ["Content-Type"] = "application/json" }, json.encode(value))
end
_M.reply = reply

local function decode_body(req)
  if req.body == "" then return {} end
  local v, err = json.decode(req.body)
  if v == nil then return nil, "body is not JSON: " .. tostring(err) end
  if type(v) ~= "table" then return nil, "body must be a JSON object" end
  return v
end

local function query_param(req, name)
  local _, map = forms.parse_urlencoded(req.query)
  return map[name]
end

local endpoints = {}

-- One script object, or a list of them, queued in order.
endpoints["POST /_fake/script"] = function(app, req, res, body)
  local queued, err = app.scripts:add_posted(body)
  if not queued then return reply(res, 400, { error = err }) end
  reply(res, 200, { ok = true, queued = queued })
end

endpoints["GET /_fake/scripts"] = function(app, req, res)
  reply(res, 200, json.array(app.scripts:list()))
end

-- Recorded provider requests in arrival order; ?path=/x keeps one path.
endpoints["GET /_fake/requests"] = function(app, req, res)
  local only = query_param(req, "path")
  local out = json.array()
  for _, r in ipairs(app.records) do
    if not only or r.path == only then out[#out + 1] = r end
  end
  reply(res, 200, out)
end

endpoints["POST /_fake/reset"] = function(app, req, res)
  app:reset()
  reply(res, 200, { ok = true })
end

endpoints["GET /_fake/stats"] = function(app, req, res)
  reply(res, 200, app.server.stats)
end

endpoints["GET /_fake/state"] = function(app, req, res)
  reply(res, 200, app.state)
end

-- Top-level keys replace the current state's (reset brings the start state back).
endpoints["POST /_fake/state"] = function(app, req, res, body)
  local ok, err = app:merge_state(app.state, body)
  if not ok then return reply(res, 400, { error = err }) end
  reply(res, 200, app.state)
end

endpoints["POST /_fake/shutdown"] = function(app, req, res)
  reply(res, 200, { ok = true })
  app.server:stop("shutdown")
end

-- The provider calls an MO webhook: { target = url, fields = {...} or
-- [[name, value], ...], async = false, timeout_ms = 10000 }. Answers with the
-- target's status, headers and body, and what was sent. With async = true it
-- answers { id } at once; GET /_fake/mo/<id> tells the outcome later.
local function send_mo(app, body, done)
  local sent = app.provider.mo_fields(body.fields or {})
  local payload = forms.encode(sent)
  local wire = json.array()
  for i, f in ipairs(sent) do wire[i] = json.array({ f[1], f[2] }) end
  http_client.request(app.server, {
    url = body.target, method = "POST", body = payload, timeout_ms = body.timeout_ms,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                ["User-Agent"] = "ksms-fake-" .. app.provider.name .. "-mo" },
  }, function(result)
    result.sent = { body = payload, form = wire }
    done(result)
  end)
end

endpoints["POST /_fake/mo"] = function(app, req, res, body)
  if not app.provider.mo_fields then
    return reply(res, 404, { error = app.provider.name .. " has no MO webhook" })
  end
  if type(body.target) ~= "string" then return reply(res, 400, { error = "target URL required" }) end
  if body.async then
    app.next_mo = app.next_mo + 1
    local id = app.next_mo
    app.mo_jobs[id] = { done = false }
    send_mo(app, body, function(result)
      result.done = true
      app.mo_jobs[id] = result
    end)
    return reply(res, 200, { id = id })
  end
  send_mo(app, body, function(result)
    reply(res, result.error and 502 or 200, result)
  end)
end

function _M.handle(app, req, res)
  local mo_id = req.path:match("^/_fake/mo/(%d+)$")
  if mo_id and req.method == "GET" then
    local job = app.mo_jobs[tonumber(mo_id)]
    if not job then return reply(res, 404, { error = "no such MO job" }) end
    return reply(res, 200, job)
  end
  return _M.dispatch(endpoints, app, req, res)
end

-- Runs the endpoint "METHOD /path" of `table` with the decoded JSON body;
-- 404 for none, 400 for a body that is not a JSON object. The OneShot
-- fake dispatches its own endpoints through it too.
function _M.dispatch(table, app, req, res)
  local endpoint = table[req.method .. " " .. req.path]
  if not endpoint then
    return reply(res, 404, { error = "no control endpoint " .. req.method .. " " .. req.path })
  end
  local body, err = decode_body(req)
  if not body then return reply(res, 400, { error = err }) end
  endpoint(app, req, res, body)
end

return _M
