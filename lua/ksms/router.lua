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
-- r:send_many(messages, { concurrency, on_sending, on_outcome }) streams as
-- client:send_many does: each route's share goes to its client's
-- send_many at once, and the messages that fail over go on to their next
-- route the same way. on_sending(i) is called at most once per message,
-- just before the first route that really takes it hands it to its
-- transport (false holds it back: it ends cancelled, moved on to no
-- route); on_outcome(i, outcome) exactly once, with the final outcome
-- (route, tried). A message every route skips never calls on_sending. A
-- breaker that opens while a route's batch goes out holds the rest of
-- that batch back (skipped = "open"), and they move on.
--
-- r:check(msg) -> true, info | nil, err: whether some route can carry the
-- message (what ksms.outbox asks of a client); info.route names the first
-- that can, info.routes (r:check_routes) gives every route's checks. So
-- the router has the shape the outbox needs (send_many with its hooks,
-- check, provider = "router"): ksms.outbox.open{ clients = { main = r } }.
-- Its records have no delivery lookup (ob:track lists them in no_lookup):
-- a record does not keep which route carried it.
-- @module ksms.router
-- @alias _M

local errors = require "ksms.errors"
local core = require "ksms.core"
local breaker_mod = require "ksms.router.breaker"
local concat = table.concat

local type, ipairs, pairs, tostring, setmetatable = type, ipairs, pairs, tostring, setmetatable
local sort = table.sort
local floor, huge = math.floor, math.huge
local misuse, check_options = errors.misuse, errors.check_options

local _M = { _VERSION = "0.2.0" }

--- The provider name a router gives (ksms.outbox and ob:track read it).
_M.PROVIDER = "router"

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
  -- What some route can do (a message is skipped where it cannot).
  local caps = {}
  for _, route in ipairs(routes) do
    for k, v in pairs(route.client.capabilities or {}) do if v then caps[k] = true end end
  end
  return setmetatable({ provider = _M.PROVIDER, capabilities = caps, routes = routes, refusals = set, now = now,
    breaker = breaker, weights = weights, total = total, current = current }, R)
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

-- Why a route does not take this message: "capability" or "check" (with
-- the check's error), or nil when it may try. The breaker is asked apart.
local function skip_reason(route, method, msg)
  local c = route.client
  if method ~= "send" then
    local caps = c.capabilities or {}
    if not caps[method] or type(c[method]) ~= "function" then return "capability" end
    return nil
  end
  if type(c.check) == "function" then
    local ok, cerr = c:check(msg)
    if not ok then return "check", cerr end
  end
  return nil
end

-- The outcome for a message no route carried: the first check refusal or
-- the last failing-over failure met, or "no_route".
local function no_route(last, tried)
  if last and last.err then return finish(last.err, last.route, tried) end
  return finish(errors.new { category = "invalid_input", code = "no_route", provider = "ksms", retryable = false,
    maybe_sent = false, message = "no route can carry this message" }, nil, tried)
end

-- Outcomes the breaker does not count: the caller held the message back,
-- or it expired before it left.
local NOT_COUNTED = { cancelled = true, expired = true }

-- One message through the routes: method "send", "alimtalk", "friendtalk".
function R:_route(method, msg)
  if type(msg) ~= "table" then misuse("ksms.router: " .. method .. " needs a message table") end
  local tried, last = {}, nil
  for _, route in ipairs(self:_order()) do
    local why, cerr = skip_reason(route, method, msg)
    if why then
      tried[#tried + 1] = { route = route.name, skipped = why, outcome = cerr }
      if cerr then last = last or { route = route.name, err = cerr } end
    elseif not self:_may_try(route.name) then
      tried[#tried + 1] = { route = route.name, skipped = "open" }
    else
      local c = route.client
      local res, err = c[method](c, msg)
      tried[#tried + 1] = { route = route.name, outcome = res or err }
      local moves = not res and self:fails_over(err)
      self:_record(route.name, moves)
      if res then return finish(res, route.name, tried) end
      last = { route = route.name, err = err }
      if not moves then return nil, finish(err, route.name, tried) end
    end
  end
  return nil, no_route(last, tried)
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

--- r:check_routes(msg) -> { { route, ok, err, info }, ... }: each route's checks.
-- @tparam table msg
-- @treturn table
function R:check_routes(msg)
  if type(msg) ~= "table" then misuse("ksms.router: check needs a message table") end
  local out = {}
  for i, route in ipairs(self.routes) do
    local c = route.client
    local ok, info = true, nil
    if type(c.check) == "function" then ok, info = c:check(msg) end
    out[i] = { route = route.name, ok = ok == true, err = (not ok) and info or nil, info = ok and info or nil }
  end
  return out
end

--- r:check(msg) -> true, info | nil, err: whether some route can carry msg.
-- info is the first such route's check (kind, bytes, text, ...) with
-- info.route and info.routes (every route's, as check_routes); err is the
-- first route's refusal, with err.routes.
-- @tparam table msg
-- @return true, info, or nil, err
function R:check(msg)
  local routes = self:check_routes(msg)
  for _, r in ipairs(routes) do
    if r.ok then
      local info = {}
      for k, v in pairs(r.info or {}) do info[k] = v end
      info.route, info.routes = r.route, routes
      return true, info
    end
  end
  local err = routes[1].err
  if type(err) == "table" then err.routes = routes end
  return nil, err
end

local SEND_MANY_OPTIONS = { concurrency = "number", on_sending = "function", on_outcome = "function" }

-- Each pending message's next route that may take it (skips noted in its
-- tried); messages no route is left for get their final outcome.
function R:_next_routes(pending, messages, state, final)
  local by_route, names = {}, {}
  for _, i in ipairs(pending) do
    local st, chosen = state[i], nil
    while not chosen and st.order[st.next] do
      local route = st.order[st.next]
      st.next = st.next + 1
      local why, cerr = skip_reason(route, "send", messages[i])
      if why then
        st.tried[#st.tried + 1] = { route = route.name, skipped = why, outcome = cerr }
        if cerr then st.last = st.last or { route = route.name, err = cerr } end
      elseif not self:_may_try(route.name) then
        st.tried[#st.tried + 1] = { route = route.name, skipped = "open" }
      else
        chosen = route
      end
    end
    if chosen then
      local list = by_route[chosen.name]
      if not list then list = { route = chosen }; by_route[chosen.name] = list; names[#names + 1] = chosen.name end
      list[#list + 1] = i
    else
      final(i, no_route(st.last, st.tried))
    end
  end
  return by_route, names
end

--- r:send_many(messages [, { concurrency, on_sending, on_outcome }]) -> { outcome, ... }
-- In order, each with route and tried; streamed route by route (see the
-- module comment for the hooks' contract).
-- @tparam table messages
-- @tparam[opt] table opts
-- @treturn table
function R:send_many(messages, opts)
  if type(messages) ~= "table" then misuse("ksms.router: send_many needs a list of messages") end
  opts = opts or {}
  if type(opts) ~= "table" then misuse("ksms.router: send_many options must be a table") end
  check_options("ksms.router: send_many", opts, SEND_MANY_OPTIONS)
  if opts.concurrency ~= nil and not (opts.concurrency >= 1) then misuse("ksms.router: concurrency must be >= 1") end
  local on_sending, on_outcome = opts.on_sending, opts.on_outcome
  local outs, state = {}, {}
  local pending = {}
  for i = 1, #messages do
    if type(messages[i]) ~= "table" then misuse("ksms.router: send_many: message " .. i .. " is not a table") end
    state[i] = { order = self:_order(), next = 1, tried = {} }
    pending[i] = i
  end
  local function final(i, out)
    outs[i] = out
    if on_outcome then on_outcome(i, out) end
  end
  while #pending > 0 do
    local by_route, names = self:_next_routes(pending, messages, state, final)
    pending = {}
    for _, name in ipairs(names) do
      local list = by_route[name]
      local c, batch, breaker_held = list.route.client, {}, {}
      for k, i in ipairs(list) do batch[k] = messages[i] end
      c:send_many(batch, { concurrency = opts.concurrency,
        on_sending = function(k)
          local i = list[k]
          -- The breaker opened while this batch went out: not tried here.
          if k > 1 and self:breaker_state(name) == "open" then breaker_held[k] = true; return false end
          local st = state[i]
          if not st.started then
            st.started = true
            if on_sending and on_sending(i) == false then st.held = true; return false end
          end
          return true
        end,
        on_outcome = function(k, out)
          local i = list[k]
          local st = state[i]
          if breaker_held[k] then
            st.tried[#st.tried + 1] = { route = name, skipped = "open" }
            pending[#pending + 1] = i
            return
          end
          st.tried[#st.tried + 1] = { route = name, outcome = out }
          if st.held then return final(i, finish(out, name, st.tried)) end
          local moves = not out.ok and self:fails_over(out)
          if out.ok or not NOT_COUNTED[out.category] then self:_record(name, moves) end
          if moves then
            st.last = { route = name, err = out }
            pending[#pending + 1] = i
          else
            final(i, finish(out, name, st.tried))
          end
        end })
    end
    sort(pending)
  end
  return outs
end

return _M
