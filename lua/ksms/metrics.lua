--- ksms.metrics: counters and a latency histogram built on the on_event hook
-- (ksms.events), rendered in the Prometheus text exposition format 0.0.4.
--
--   local metrics = require("ksms.metrics").new()        -- in this process
--   local client = ksms.client("senders", { api_key = ..., on_event = metrics:hook() })
--   metrics:observe(event)                               -- the same, by hand
--   io.write(metrics:render())
--
--   -- nginx: one lua_shared_dict, so every worker's numbers add up
--   --   lua_shared_dict ksms_metrics 1m;
--   local metrics = require("ksms.metrics").new { dict = "ksms_metrics" }
--
-- The series (docs/metrics.md):
--   ksms_operations_total{provider,operation,status}          one per event
--   ksms_messages_total{provider,operation,status}            recipients of message
--                                                              operations (send, send_many,
--                                                              alimtalk, friendtalk)
--   ksms_errors_total{provider,operation,category,code}       events not ok
--   ksms_request_duration_seconds{provider,operation}         histogram of duration (not
--                                                              for pushes and disconnects,
--                                                              which have none)
--
-- Label values come from known sets only, anything else is "other", so a
-- hostile or odd answer cannot grow the number of series: provider (the
-- names ksms.client knows), operation (those of ksms.events), status,
-- category (ksms.errors.categories) and code: by default only the codes
-- ksms itself gives (timeout, connect, closed, ...); opts.codes adds a set
-- ({ ["185"] = true, [7] = true }), or "all" keeps every code as the event
-- carries it (at most 32 characters, digit runs masked: the caller then
-- bounds the cardinality).
--
-- new(opts): dict (a lua_shared_dict name: counters kept there with incr,
-- shared by every worker; without it, a plain table in this Lua state),
-- buckets (upper bounds in seconds, ascending; default DEFAULT_BUCKETS),
-- codes (see above).
--
-- @module ksms.metrics
-- @alias _M

local errors = require "ksms.errors"

local type, pairs, ipairs, tostring, tonumber, setmetatable = type, pairs, ipairs, tostring, tonumber, setmetatable
local format, gsub, find, concat, sort = string.format, string.gsub, string.find, table.concat, table.sort
local floor, huge = math.floor, math.huge
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

_M.DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }

local PROVIDERS = { senders = true, messageme = true, ppurio = true, cafe24 = true, oneshot = true }
local OPERATIONS = { send = true, send_many = true, balance = true, alimtalk = true, friendtalk = true,
  report = true, sender_numbers = true, register_sender = true, history = true, spam = true,
  change_phone = true, bind = true, disconnect = true }
local MESSAGES = { send = true, send_many = true, alimtalk = true, friendtalk = true }
local TIMED = { report = false, spam = false, change_phone = false, disconnect = false }
local STATUSES = { ok = true, failed = true, maybe_sent = true }
-- The codes ksms gives itself (transports, the OneShot driver, ksms.codes).
local OWN_CODES = { timeout = true, connect = true, closed = true, send = true, receive = true,
  bad_response = true, no_outcome = true, not_connected = true, bind_timeout = true, flush = true,
  http_status = true, resolve = true, tls = true, too_large = true, callback = true, other = true }
_M.own_codes = OWN_CODES

local HELP = {
  ksms_operations_total = { "counter", "Provider operations ksms ran, by outcome." },
  ksms_messages_total = { "counter", "Recipients of the messages ksms sent, by outcome." },
  ksms_errors_total = { "counter", "Provider operations that did not succeed, by error category and code." },
  ksms_request_duration_seconds = { "histogram", "Seconds a provider operation took." },
}
local FAMILIES = { "ksms_errors_total", "ksms_messages_total", "ksms_operations_total",
  "ksms_request_duration_seconds" }

local M = {}
M.__index = M

--- new([opts]) -> a registry. opts.dict: a lua_shared_dict name, so every
-- nginx worker adds to the same numbers; buckets: the histogram's upper
-- bounds in seconds; codes: extra code label values, or "all".
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.metrics.new: options table expected") end
  errors.check_options("ksms.metrics.new", opts, { dict = "string", buckets = "table", codes = "table|string" })
  local self = setmetatable({ values = {} }, M)
  if opts.dict ~= nil then
    local ngx = rawget(_G, "ngx")
    local dict = type(ngx) == "table" and ngx.shared and ngx.shared[opts.dict]
    if not dict then misuse("ksms.metrics.new: no lua_shared_dict named '" .. tostring(opts.dict) .. "'") end
    self.dict = dict
  end
  local buckets = opts.buckets or _M.DEFAULT_BUCKETS
  local prev = -huge
  for i, b in ipairs(buckets) do
    if type(b) ~= "number" or b ~= b or b <= prev or b == huge then
      misuse("ksms.metrics.new: buckets are ascending finite numbers (bucket " .. i .. ")")
    end
    prev = b
  end
  self.buckets = buckets
  local codes = opts.codes
  if codes ~= nil and codes ~= "all" and type(codes) ~= "table" then
    misuse("ksms.metrics.new: codes is a set table or \"all\"")
  end
  self.codes = codes
  return self
end

local function known(set, v) if v ~= nil and set[v] then return v end return "other" end

function M:_code(code)
  if code == nil then return "" end
  local codes = self.codes
  if codes == "all" then return tostring(code) end
  if OWN_CODES[code] or (codes and (codes[code] or codes[tostring(code)])) then return tostring(code) end
  return "other"
end

local function add(self, key, n)
  if self.dict then
    local _, err = self.dict:incr(key, n, 0)
    if err then self.dict_errors = (self.dict_errors or 0) + 1 end
  else
    self.values[key] = (self.values[key] or 0) + n
  end
end

-- Keys: family \t labels \t suffix (suffix "" for a counter; for the
-- histogram "b<i>" the count in bucket i alone, not cumulative; "s" the sum).
local function key(family, labels, suffix) return family .. "\t" .. labels .. "\t" .. (suffix or "") end

--- m:observe(event): counts one event (ksms.events); anything but a table
-- is ignored, so a hook never raises here.
function M:observe(ev)
  if type(ev) ~= "table" then return end
  local provider, operation = known(PROVIDERS, ev.provider), known(OPERATIONS, ev.operation)
  local status = known(STATUSES, ev.status)
  local po = format('provider="%s",operation="%s"', provider, operation)
  local pos = po .. format(',status="%s"', status)
  add(self, key("ksms_operations_total", pos), 1)
  if MESSAGES[operation] then
    local n = ev.recipients
    if type(n) ~= "number" or n ~= n or n < 0 or n == huge then n = 0 end
    add(self, key("ksms_messages_total", pos), floor(n))
  end
  if status ~= "ok" then
    local category = known(errors.categories, ev.category)
    add(self, key("ksms_errors_total", po .. format(',category="%s",code="%s"', category,
      (gsub(self:_code(ev.code), '[\\"\n]', "_")))), 1)
  end
  if TIMED[operation] == nil then
    local d = ev.duration
    if type(d) ~= "number" or d ~= d or d < 0 or d == huge then d = 0 end
    local buckets, i = self.buckets, 1
    while buckets[i] and d > buckets[i] do i = i + 1 end
    local fam = "ksms_request_duration_seconds"
    add(self, key(fam, po, "b" .. i), 1)
    add(self, key(fam, po, "s"), d)
  end
end

--- m:hook() -> a function usable as any client's on_event.
function M:hook()
  return function(ev) return self:observe(ev) end
end

-- The shortest text that reads back as v (integers without a point).
local function num(v)
  if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
  for p = 6, 17 do
    local s = format("%." .. p .. "g", v)
    if tonumber(s) == v then return s end
  end
  return format("%.17g", v)
end

-- The stored values: { [key] = number }.
function M:_values()
  if not self.dict then return self.values end
  local out = {}
  for _, k in ipairs(self.dict:get_keys(0)) do
    if find(k, "^ksms_[%w_]+\t") then
      local v = self.dict:get(k)
      if type(v) == "number" then out[k] = v end
    end
  end
  return out
end

--- m:render() -> the Prometheus text exposition (format 0.0.4; serve it
-- with Content-Type: text/plain; version=0.0.4). Families in name order,
-- series in label order; a family with no series is left out.
function M:render()
  local by = {}
  for k, v in pairs(self:_values()) do
    local family, labels, suffix = k:match("^([^\t]+)\t([^\t]*)\t(.*)$")
    if family and HELP[family] then
      by[family] = by[family] or {}
      local s = by[family][labels] or {}
      by[family][labels] = s
      s[suffix] = v
    end
  end
  local out = {}
  for _, family in ipairs(FAMILIES) do
    local series = by[family]
    if series then
      local h = HELP[family]
      out[#out + 1] = format("# HELP %s %s", family, h[2])
      out[#out + 1] = format("# TYPE %s %s", family, h[1])
      local names = {}
      for labels in pairs(series) do names[#names + 1] = labels end
      sort(names)
      for _, labels in ipairs(names) do
        local s = series[labels]
        if h[1] == "counter" then
          out[#out + 1] = format("%s{%s} %s", family, labels, num(s[""] or 0))
        else
          local cum, buckets = 0, self.buckets
          for i = 1, #buckets + 1 do
            cum = cum + (s["b" .. i] or 0)
            out[#out + 1] = format('%s_bucket{%s,le="%s"} %s', family, labels,
              i <= #buckets and num(buckets[i]) or "+Inf", num(cum))
          end
          out[#out + 1] = format("%s_sum{%s} %s", family, labels, num(s.s or 0))
          out[#out + 1] = format("%s_count{%s} %s", family, labels, num(cum))
        end
      end
    end
  end
  if #out == 0 then return "" end
  return concat(out, "\n") .. "\n"
end

--- m:reset(): forgets every number (the dict's ksms_ keys too).
function M:reset()
  if self.dict then
    for k in pairs(self:_values()) do self.dict:delete(k) end
  else
    self.values = {}
  end
end

return _M
