-- scripts.lua - the queue of scripted answers a test posts to /_fake/script.
-- A script applies to the next `times` requests whose path matches (absent
-- times: until reset). The first queued script that matches a request wins,
-- so scripts for one path are used up in the order they were posted.
local httpd = require "fakes.httpd"

local _M = {}
_M.__index = _M

local KNOWN = { path = true, method = true, result = true, latency_ms = true, fault = true,
                status = true, body = true, headers = true, times = true, process = true }

-- An HTTP request matches a script by path (or "*") and, when given, method.
local function http_matches(script, req)
  return (script.path == "*" or script.path == req.path)
     and (script.method == nil or script.method == req.method)
end

-- matches(script, key) says whether a script applies to what take() is
-- given, validate(posted) checks one script as posted (script | nil, err);
-- the defaults are HTTP's (the OneShot fake passes its own).
function _M.new(matches, validate)
  return setmetatable({ queue = {}, matches = matches or http_matches,
                        validate = validate or _M.validate }, _M)
end

-- The faults a script may name (httpd.FAULTS: close, half, garbage, hang
-- and the hostile answers of fakes.hostile), sorted, comma-separated.
function _M.fault_names()
  local names = {}
  for name in pairs(httpd.FAULTS) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Checks and normalises a script from JSON. Returns script or nil, err.
function _M.validate(s)
  if type(s) ~= "table" then return nil, "a script is a JSON object" end
  for k in pairs(s) do
    if not KNOWN[k] then return nil, "unknown script field " .. tostring(k) end
  end
  local out = { path = s.path or "*", method = s.method, fault = s.fault,
                headers = s.headers, body = s.body, process = s.process == true }
  if type(out.path) ~= "string" then return nil, "path must be a string" end
  if out.fault ~= nil and not httpd.FAULTS[out.fault] then
    return nil, "fault must be one of " .. _M.fault_names()
  end
  if s.result ~= nil then
    if type(s.result) ~= "string" and type(s.result) ~= "number" then
      return nil, "result must be a string"
    end
    out.result = type(s.result) == "number" and string.format("%d", s.result) or s.result
  end
  for _, k in ipairs({ "latency_ms", "status", "times" }) do
    if s[k] ~= nil and (type(s[k]) ~= "number" or s[k] < 0) then
      return nil, k .. " must be a non-negative number"
    end
  end
  out.latency_ms = s.latency_ms
  out.status = s.status and math.floor(s.status)
  if out.status and (out.status < 100 or out.status > 999) then return nil, "bad status" end
  if s.times ~= nil then
    out.times = math.floor(s.times)
    if out.times < 1 then return nil, "times must be at least 1" end
  end
  if out.body ~= nil and type(out.body) ~= "string" then return nil, "body must be a string" end
  return out
end

function _M:add(script)
  self.queue[#self.queue + 1] = script
end

-- Queues a posted script object, or a list of them: all or none. Returns
-- how many scripts are queued now, or nil, err for the first bad one.
function _M:add_posted(body)
  local list = body[1] and body or { body }
  local valid = {}
  for i, s in ipairs(list) do
    local script, err = self.validate(s)
    if not script then return nil, err end
    valid[i] = script
  end
  for _, script in ipairs(valid) do self:add(script) end
  return #self.queue
end

-- The script for req, with one of its uses taken; nil when none matches.
function _M:take(req)
  for i, script in ipairs(self.queue) do
    if self.matches(script, req) then
      if script.times then
        script.times = script.times - 1
        if script.times == 0 then table.remove(self.queue, i) end
      end
      return script
    end
  end
  return nil
end

function _M:clear()
  self.queue = {}
end

function _M:list()
  return self.queue
end

return _M
