--- ksms.router: several clients behind one client's shape, failing over
-- only when an outcome proves that nothing was sent.
--
--   local r = ksms.router { routes = { senders_client, { name = "backup", client = cafe24_client } } }
--   local res, err = r:send(msg)   -- res.route, res.tried; err.route, err.tried
--   r:send_many(list), r:alimtalk(msg), r:friendtalk(msg), r:check(msg)
--
-- For each message the routes are tried in order (policy "failover"), or
-- (policy "weighted", weights = { 3, 1 } parallel to routes or { a = 3, b =
-- 1 } by name) the first is picked by smooth weighted round robin and the
-- others follow in list order, by the same rules. A route whose client lacks the capability (alimtalk,
-- friendtalk) or whose checks refuse the message (client:check: a
-- character Cafe24 cannot carry, a text too long) is skipped, with its
-- reason in `tried`, and never sent to. A route's failure moves the message
-- on only when it proves nothing was sent: a refusal the provider answered
-- (categories auth, balance, sender_number, rate_limit by default), or a
-- network, timeout or server failure that says maybe_sent = false (the
-- request was never written: DNS, connect, TLS). Anything that may have
-- been sent (maybe_sent = true, or not known) ends there and is returned
-- at once, naming the route that may have sent it: ksms never sends a
-- message twice on its own. opts.fail_over (a list of categories) replaces
-- the refusal set.
--
-- Every result and error carries `route` (the route's name: its `name`, or
-- its client's provider) and `tried`: { { route =, outcome = res|err,
-- skipped = "capability" | "check" | "open" | nil }, ... } in order.
--
-- A circuit breaker per route (breaker = { failures = 5, cooldown = 30 },
-- ksms.router.breaker): after that many failures in a row of the kind that
-- fail over, the route is skipped (skipped = "open") for cooldown seconds;
-- then one message tries it (half-open): a success closes the breaker, a
-- failing-over failure opens it again. Any outcome that is not a
-- failing-over failure (a success, a maybe_sent, a refusal of the message)
-- resets the count. A trial that never reports (a worker died mid-trial)
-- is given up after breaker.trial_timeout (60 s). The clock is opts.now
-- (seconds, default core.monotonic). The breaker lives in the router
-- object (one process's), or with breaker.dict (a lua_shared_dict name) in
-- nginx's shared memory: one breaker for every worker, keyed by
-- breaker.name (default: the route names joined).
--
-- Not yet (issue 16): send_many's on_sending / on_outcome hooks.
-- @module ksms.router
-- @alias _M

local errors = require "ksms.errors"
local core = require "ksms.core"
local breaker_mod = require "ksms.router.breaker"
local concat = table.concat

local type, ipairs, pairs, tostring, setmetatable, next = type, ipairs, pairs, tostring, setmetatable, next
local floor, huge = math.floor, math.huge
local misuse, check_options = errors.misuse, errors.check_options

local _M = { _VERSION = "0.2.0" }

-- Refusals the provider answered: it did not take the message.
local REFUSALS = { "auth", "balance", "sender_number", "rate_limit" }
-- Failures that fail over only with maybe_sent = false (never written).
local UNWRITTEN = { network = true, timeout = true, server = true }

local R = {}
R.__index = R

local OPTIONS = { routes = "table", policy = "string", weights = "table", fail_over = "table", breaker = "table",
  now = "function" }

-- The weights of policy "weighted": a list parallel to routes, or a map by
-- route name (or both, once each); every route needs a positive weight.
local function weights_of(w, routes)
  if type(w) ~= "table" then
    misuse("ksms.router: policy \"weighted\" needs weights = { ... } (a list parallel to routes, or a map by route name)")
  end
  local by_name, out = {}, {}
  for i, r in ipairs(routes) do by_name[r.name] = i end
  for k, v in pairs(w) do
    local i = by_name[k]
    if type(k) == "number" and k >= 1 and k <= #routes and k == floor(k) then i = k end
    if not i then misuse("ksms.router: weights: '" .. tostring(k) .. "' is not a route (a position or a route's name)") end
    if out[i] then misuse("ksms.router: weights: route '" .. routes[i].name .. "' has two weights") end
    if type(v) ~= "number" or not (v > 0) or v == huge then
      misuse("ksms.router: weights: route '" .. routes[i].name .. "' needs a positive number")
    end
    out[i] = v
  end
  local total = 0
  for i, r in ipairs(routes) do
    if not out[i] then misuse("ksms.router: weights: route '" .. r.name .. "' has no weight") end
    total = total + out[i]
  end
  return out, total
end

local function route_of(i, r)
  if type(r) ~= "table" then misuse("ksms.router: routes[" .. i .. "] is not a client or { name, client }") end
  local client, name = r, nil
  if r.client ~= nil then client, name = r.client, r.name end
  if type(client) ~= "table" or type(client.send) ~= "function" then
    misuse("ksms.router: routes[" .. i .. "] has no client (a ksms client with send)")
  end
  name = name or client.provider
  if type(name) ~= "string" then misuse("ksms.router: routes[" .. i .. "] needs a name") end
  return { name = name, client = client }
end

--- ksms.router{ routes, policy = "failover" | "weighted", weights, fail_over, breaker, now } -> a router.
-- @tparam table opts
-- @return the router
function _M.new(opts)
  if type(opts) ~= "table" then misuse("ksms.router: options table expected") end
  check_options("ksms.router", opts, OPTIONS)
  if type(opts.routes) ~= "table" or #opts.routes == 0 then misuse("ksms.router: routes (a list of clients) is required") end
  local policy = opts.policy or "failover"
  if policy ~= "failover" and policy ~= "weighted" then
    misuse("ksms.router: policy \"" .. tostring(policy) .. "\" is not one of \"failover\", \"weighted\"")
  end
  if policy ~= "weighted" and opts.weights ~= nil then misuse("ksms.router: weights go with policy = \"weighted\"") end
  local routes, seen = {}, {}
  for i, r in ipairs(opts.routes) do
    local route = route_of(i, r)
    if seen[route.name] then misuse("ksms.router: two routes are named '" .. route.name .. "': give names") end
    seen[route.name] = true
    routes[i] = route
  end
  local set = {}
  for _, c in ipairs(opts.fail_over or REFUSALS) do
    if not errors.categories[c] then misuse("ksms.router: fail_over: '" .. tostring(c) .. "' is not an error category") end
    set[c] = true
  end
  local now, names = opts.now or core.monotonic, {}
  for i, route in ipairs(routes) do names[i] = route.name end
  local breaker = breaker_mod.new(opts.breaker, { now = now, name = concat(names, ",") })
  local weights, total, current = nil, nil, nil
  if policy == "weighted" then
    weights, total = weights_of(opts.weights, routes)
    current = {}
    for i = 1, #routes do current[i] = 0 end
  end
  return setmetatable({ routes = routes, refusals = set, now = now, breaker = breaker,
    weights = weights, total = total, current = current }, R)
end

-- The routes in the order one message tries them. "failover": the list.
-- "weighted": the first by smooth weighted round robin (nginx's: every
-- route's current weight grows by its weight, the largest, the first on a
-- tie, is picked and loses the total), then the others in list order.
function R:_order()
  local routes, w = self.routes, self.weights
  if not w then return routes end
  local cur, best = self.current, nil
  for i = 1, #routes do
    cur[i] = cur[i] + w[i]
    if not best or cur[i] > cur[best] then best = i end
  end
  cur[best] = cur[best] - self.total
  local order = { routes[best] }
  for i, r in ipairs(routes) do if i ~= best then order[#order + 1] = r end end
  return order
end

--- Whether err proves that nothing was sent, so the next route may try.
-- @param err a ksms error
-- @treturn boolean
function R:fails_over(err)
  if type(err) ~= "table" or err.maybe_sent == true then return false end
  if self.refusals[err.category] then return true end
  return UNWRITTEN[err.category] == true and err.maybe_sent == false
end

-- The route's breaker (ksms.router.breaker): may this message try it?
function R:_may_try(name) return self.breaker:may_try(name) end

-- The outcome of a try: failed_over (a failure that moves on) or not.
function R:_record(name, failed_over) return self.breaker:record(name, failed_over) end

--- The state of a route's breaker: "closed", "open" or "half_open".
-- @tparam string name the route's name
-- @treturn string
function R:breaker_state(name) return self.breaker:state(name) end

local function finish(out, route, tried)
  out.route, out.tried = route, tried
  return out
end

-- One message through the routes: method "send", "alimtalk", "friendtalk".
function R:_route(method, msg)
  if type(msg) ~= "table" then misuse("ksms.router: " .. method .. " needs a message table") end
  local tried, last = {}, nil
  for _, route in ipairs(self:_order()) do
    local c = route.client
    local caps = c.capabilities or {}
    if method ~= "send" and (not caps[method] or type(c[method]) ~= "function") then
      tried[#tried + 1] = { route = route.name, skipped = "capability" }
    else
      -- the checks first: a message this route refuses is no trial of it
      local ok, cerr = true, nil
      if method == "send" and type(c.check) == "function" then ok, cerr = c:check(msg) end
      if not ok then
        tried[#tried + 1] = { route = route.name, skipped = "check", outcome = cerr }
        last = last or { route = route.name, err = cerr }
      elseif not self:_may_try(route.name) then
        tried[#tried + 1] = { route = route.name, skipped = "open" }
      else
        local res, err = c[method](c, msg)
        tried[#tried + 1] = { route = route.name, outcome = res or err }
        local moves = not res and self:fails_over(err)
        self:_record(route.name, moves)
        if res then return finish(res, route.name, tried) end
        last = { route = route.name, err = err }
        if not moves then return nil, finish(err, route.name, tried) end
      end
    end
  end
  if last and last.err then return nil, finish(last.err, last.route, tried) end
  return nil, finish(errors.new { category = "invalid_input", code = "no_route", provider = "ksms", retryable = false,
    maybe_sent = false, message = "no route can carry this message" }, nil, tried)
end

--- r:send(msg) -> result | nil, err (see the module comment).
-- @tparam table msg
function R:send(msg) return self:_route("send", msg) end
--- r:alimtalk(msg): as send, through the routes that have AlimTalk.
-- @tparam table msg
function R:alimtalk(msg) return self:_route("alimtalk", msg) end
--- r:friendtalk(msg): as send, through the routes that have FriendTalk.
-- @tparam table msg
function R:friendtalk(msg) return self:_route("friendtalk", msg) end

--- r:check(msg) -> { { route, ok, err, info }, ... }: each route's checks.
-- @tparam table msg
-- @treturn table
function R:check(msg)
  local out = {}
  for i, route in ipairs(self.routes) do
    local c = route.client
    local ok, info = true, nil
    if type(c.check) == "function" then ok, info = c:check(msg) end
    out[i] = { route = route.name, ok = ok == true, err = (not ok) and info or nil, info = ok and info or nil }
  end
  return out
end

--- r:send_many(messages) -> { outcome, ... } in order, each with route and
-- tried: message by message through send (hooks not yet taken).
-- @tparam table messages
-- @tparam[opt] table opts (none yet)
-- @treturn table
function R:send_many(messages, opts)
  if type(messages) ~= "table" then misuse("ksms.router: send_many needs a list of messages") end
  if opts ~= nil and next(opts) ~= nil then misuse("ksms.router: send_many takes no options yet") end
  local out = {}
  for i, msg in ipairs(messages) do
    local res, err = self:send(msg)
    out[i] = res or err
  end
  return out
end

return _M
