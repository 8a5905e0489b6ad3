-- app.lua - one fake provider: its httpd server, its state (balance, keys,
-- caller numbers...), the record of every provider request, the scripted
-- answers, and the control API under /_fake/ (fakes.control_api).
--
-- A provider module (fakes.senders, fakes.messageme) gives:
--   name, default_state(), routes = { [path] = function(state, fields, req)
--   return status, answer_table end }, and optionally mo_fields(fields) for
--   a provider that calls an MO webhook.
local httpd = require "fakes.httpd"
local json = require "fakes.json"
local scripts = require "fakes.scripts"
local control_api = require "fakes.control_api"

local _M = {}
_M.__index = _M

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return setmetatable(out, getmetatable(v))
end
_M.deep_copy = deep_copy

local function is_control(path)
  return path:sub(1, 7) == "/_fake/"
end

-- opts: host, port, idle_exit, state (overrides of the provider's defaults).
function _M.new(provider, opts)
  opts = opts or {}
  local self = setmetatable({ provider = provider, scripts = scripts.new(),
                              records = {}, mo_jobs = {}, next_mo = 0 }, _M)
  local initial = provider.default_state()
  local ok, err = self:merge_state(initial, opts.state or {})
  if not ok then return nil, err end
  self.initial_state = initial
  self.state = deep_copy(initial)
  local server, serr = httpd.new{
    host = opts.host, port = opts.port, idle_exit = opts.idle_exit,
    handler = function(req, res) self:handle(req, res) end,
    counts = function(req) return not is_control(req.path) end,
  }
  if not server then return nil, serr end
  self.server = server
  return self
end

-- Merges overrides into state; only keys the provider's state has (a typo
-- in a test must not pass silently).
function _M:merge_state(state, overrides)
  if type(overrides) ~= "table" then return nil, "state must be a JSON object" end
  for k, v in pairs(overrides) do
    if state[k] == nil then return nil, "unknown state key " .. tostring(k) end
    state[k] = deep_copy(v)
  end
  return true
end

function _M:reset()
  self.scripts:clear()
  self.records = {}
  self.state = deep_copy(self.initial_state)
  self.server:reset_stats()
end

function _M:record(req)
  local form = json.array()
  for i, f in ipairs(req.form) do form[i] = json.array({ f[1], f[2] }) end
  local parts = json.array()
  for i, p in ipairs(req.multipart or {}) do
    parts[i] = { name = p.name, filename = p.filename, content_type = p.content_type,
                 headers = p.headers, data = p.data }
  end
  self.records[#self.records + 1] = {
    seq = req.seq, conn = req.conn, method = req.method, path = req.path,
    query = req.query, headers = req.headers, header_names = req.header_names,
    body = req.body, form = form,
    multipart = parts, at = req.at,
  }
end

-- The provider's own answer to req (this may change state: a send costs).
function _M:provider_answer(req)
  local route = self.provider.routes[req.path]
  local status, answer, extra
  if not route then
    status, answer = 404, { fake_error = "no such path on " .. self.provider.name }
  elseif req.method ~= "POST" then
    status, answer = 405, { fake_error = "the document says POST" }
  else
    status, answer, extra = route(self.state, req.fields, req)
  end
  local headers = extra or { ["Content-Type"] = self.state.content_type }
  if status == 405 then headers["Allow"] = "POST" end
  return status, headers, json.encode(answer)
end

-- What a script makes of req: a forced answer, or the provider's own.
function _M:scripted_answer(req, script)
  if script.result or script.status or script.body then
    local headers = script.headers or { ["Content-Type"] = self.state.content_type }
    local body = script.body
    if not body and script.result then body = json.encode({ result = script.result }) end
    local status = script.status or 200
    return status, headers, body or ("scripted status " .. status .. "\n")
  end
  return self:provider_answer(req)
end

local function answer(self, req, res, script)
  if not script then
    return res:send(self:provider_answer(req))
  end
  -- close, garbage and hang cut the exchange before the provider acts on it,
  -- unless the script says process = true; half delivers part of an answer,
  -- so the provider has acted.
  local fault = script.fault
  if fault and fault ~= "half" and not script.process then
    return res:fault(fault)
  end
  local status, headers, body = self:scripted_answer(req, script)
  if fault then return res:fault(fault, status, headers, body) end
  res:send(status, headers, body)
end

function _M:handle(req, res)
  if is_control(req.path) then
    return control_api.handle(self, req, res)
  end
  self:record(req)
  local script = self.scripts:take(req)
  local delay = script and script.latency_ms
  if delay and delay > 0 then
    res:after(delay, function() answer(self, req, res, script) end)
  else
    answer(self, req, res, script)
  end
end

function _M:run()
  return self.server:run()
end

return _M
