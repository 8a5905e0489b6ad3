--- ksms.router.breaker: the circuit breaker per route of ksms.router, in
-- the process (a table) or shared by every worker of an nginx (a
-- lua_shared_dict).
--
--   local breaker = require "ksms.router.breaker"
--   local b = breaker.new { failures = 5, cooldown = 30 }             -- this process
--   local b = breaker.new { failures = 5, cooldown = 30, dict = "ksms_router" } -- nginx workers
--   if b:may_try("a") then ... b:record("a", failed_over) end
--   b:state("a")   -- "closed", "open" or "half_open"
--
-- After `failures` failures in a row that fail over (record(route, true)),
-- a route is open: may_try says no for `cooldown` seconds. Then it is
-- half-open: may_try says yes to exactly one caller (the trial) and no to
-- the others until the trial's outcome is recorded. A failing-over failure
-- opens it again for another cooldown; any other outcome (record(route,
-- false): a success, a maybe_sent, a refusal of the message) closes it and
-- resets the count. A trial whose outcome never comes (its worker died
-- mid-request, the client raised) is given up after `trial_timeout`
-- seconds (default 60), and the next caller becomes the trial: without
-- that expiry a dead trial would keep the route out forever.
--
-- With `dict` (a lua_shared_dict name; only inside nginx, elsewhere it
-- raises as misuse) the state lives in the dict and every worker sees the
-- same breaker: the count goes up with dict:incr (atomic), the open-until
-- time is one key, and the trial is taken with dict:add of a trial key
-- (atomic: one worker of all wins it) whose expiry is trial_timeout.
-- Keys are "ksms.router:" .. #name .. ":" .. name .. ":" .. route ..
-- (":count", ":open", ":trial"); `name` is the router's (opts.name, else
-- its route names joined), so two routers in one dict do not mix and a
-- router built the same way in every worker shares its state.
-- @module ksms.router.breaker
-- @alias _M

local errors = require "ksms.errors"
local core = require "ksms.core"

local type, pairs, setmetatable, rawget = type, pairs, setmetatable, rawget
local misuse, check_options = errors.misuse, errors.check_options

local _M = { _VERSION = "0.2.0" }

local OPTIONS = { failures = "number", cooldown = "number", dict = "string", name = "string",
  trial_timeout = "number" }

-- ---- in the process: one table per route ----

local Local = {}
Local.__index = Local

--- b:may_try(route) -> whether a message may try the route now (half-open: the one trial).
-- @tparam string route
-- @treturn boolean
function Local:may_try(route)
  local s = self.routes[route]
  if not s or not s.open_until then return true end
  local t = self.now()
  if t < s.open_until then return false end
  if s.trial_until and t < s.trial_until then return false end
  s.trial_until = t + self.trial_timeout -- half-open: this caller is the one trial
  return true
end

--- b:record(route, failed_over): the outcome of a try (failed_over: a failure that moves on).
-- @tparam string route
-- @tparam boolean failed_over
function Local:record(route, failed_over)
  local s = self.routes[route]
  if not failed_over then
    if s then self.routes[route] = nil end
    return
  end
  if not s then s = { count = 0 }; self.routes[route] = s end
  s.count = s.count + 1
  -- the count is not reset while open, so a failed trial reopens here too
  if s.count >= self.failures then s.open_until, s.trial_until = self.now() + self.cooldown, nil end
end

--- b:state(route) -> "closed", "open" or "half_open".
-- @tparam string route
-- @treturn string
function Local:state(route)
  local s = self.routes[route]
  if not s or not s.open_until then return "closed" end
  if self.now() < s.open_until then return "open" end
  return "half_open"
end

-- ---- across nginx workers: a lua_shared_dict ----

local Shared = {}
Shared.__index = Shared

local function keys(self, route)
  local k = self.keys[route]
  if not k then
    local p = self.prefix .. route
    k = { count = p .. ":count", open = p .. ":open", trial = p .. ":trial" }
    self.keys[route] = k
  end
  return k
end

--- b:may_try(route) -> whether a message may try the route now (half-open: the one trial).
-- @tparam string route
-- @treturn boolean
function Shared:may_try(route)
  local k = keys(self, route)
  local open_until = self.dict:get(k.open)
  if type(open_until) ~= "number" then return true end
  if self.now() < open_until then return false end
  -- half-open: add is atomic across workers, so one caller of all wins the
  -- trial; the expiry frees it if that caller never records an outcome
  local ok = self.dict:add(k.trial, true, self.trial_timeout)
  return ok == true
end

--- b:record(route, failed_over): the outcome of a try (failed_over: a failure that moves on).
-- @tparam string route
-- @tparam boolean failed_over
function Shared:record(route, failed_over)
  local k = keys(self, route)
  local d = self.dict
  if not failed_over then
    -- close: only when there is something to reset (a success costs reads).
    -- The count first, so a failure racing with the close counts from 0;
    -- then the open time (closed for every worker), then the trial.
    if (d:get(k.count) or 0) ~= 0 or d:get(k.open) ~= nil then
      d:delete(k.count)
      d:delete(k.open)
      d:delete(k.trial)
    end
    return
  end
  local n = d:incr(k.count, 1, 0)
  -- (nil: the dict is full; the breaker then stays as it is, never raises)
  if n and n >= self.failures then
    -- the open time before the trial is freed: a worker between the two
    -- sees open, never a second trial
    d:set(k.open, self.now() + self.cooldown)
    d:delete(k.trial)
  end
end

--- b:state(route) -> "closed", "open" or "half_open".
-- @tparam string route
-- @treturn string
function Shared:state(route)
  local k = keys(self, route)
  local open_until = self.dict:get(k.open)
  if type(open_until) ~= "number" then return "closed" end
  if self.now() < open_until then return "open" end
  return "half_open"
end

--- new(opts[, defaults]) -> a breaker (may_try, record, state by route name).
-- opts: failures (5), cooldown (30 s), trial_timeout (60 s), dict (a
-- lua_shared_dict name, nginx only), name (the key prefix in the dict);
-- defaults: { now = the clock, name = the default name } from the router.
-- The clock (seconds) is defaults.now, else core.monotonic. With a dict
-- it must be one clock for every worker: CLOCK_MONOTONIC is the machine's
-- (not a process's), and the workers of one nginx share a machine, so
-- core.monotonic serves them all and, unlike ngx.now() (the wall clock,
-- cached per worker until ngx.update_time()), never jumps when the time is
-- set. A per-process clock (os.clock) would not do.
-- @tparam[opt] table opts
-- @tparam[opt] table defaults
-- @return the breaker
function _M.new(opts, defaults)
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.router: breaker is { failures, cooldown, dict, name, trial_timeout }") end
  check_options("ksms.router: breaker", opts, OPTIONS)
  for k, t in pairs(OPTIONS) do
    if opts[k] ~= nil and type(opts[k]) ~= t then misuse("ksms.router: breaker." .. k .. " must be a " .. t) end
  end
  defaults = defaults or {}
  local failures, cooldown = opts.failures or 5, opts.cooldown or 30
  local trial_timeout = opts.trial_timeout or 60
  if not (failures >= 1) or not (cooldown >= 0) then misuse("ksms.router: breaker needs failures >= 1 and cooldown >= 0") end
  if not (trial_timeout > 0) then misuse("ksms.router: breaker needs trial_timeout > 0") end
  local self = { failures = failures, cooldown = cooldown, trial_timeout = trial_timeout,
    now = defaults.now or core.monotonic }
  if opts.dict == nil then
    self.routes = {}
    return setmetatable(self, Local)
  end
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    misuse("ksms.router: breaker.dict needs nginx (a lua_shared_dict); outside nginx leave it out")
  end
  local dict = ngx.shared[opts.dict]
  if not dict then misuse("ksms.router: breaker.dict: no lua_shared_dict named '" .. opts.dict .. "'") end
  local name = opts.name or defaults.name or ""
  self.dict, self.keys = dict, {}
  self.prefix = "ksms.router:" .. #name .. ":" .. name .. ":"
  return setmetatable(self, Shared)
end

return _M
