--- ksms.client: the provider-neutral client every adapter plugs into.
--
-- An adapter (ksms.providers.<name>) turns a call into a *plan*: the HTTP
-- requests it needs and a `finish` function that turns their outcomes
-- (responses or transport errors, in order) into one result or error.
-- Transport errors become outcomes here (transport_outcome) and nowhere
-- else: a plan of one request whose transport failed never reaches its
-- finish, so a finish of one request only reads a response; a plan of
-- several gets the errors among the responses (common.combine). The
-- client runs plans over the transport: one request directly, several
-- (chunks, send_many) through request_many. Adapters never do I/O, so the
-- same adapter runs over libcurl or OpenResty cosockets.
--
-- The rate option (ksms.rate) paces the requests of messages before they
-- are handed over, and an HTTP 429 (any adapter's: mapped here, before a
-- finish sees it) is a rate_limit refusal that holds every call of the
-- client until its Retry-After passes.
--
-- Results: { ok = true, provider, kind, code, id, raw, ... }.
-- Errors: nil, err (see ksms.errors). A message that may have reached the
-- provider carries err.maybe_sent = true and is never resent by ksms.
-- @module ksms.client
-- @alias _M

local errors = require "ksms.errors"
local secrets = require "ksms.secrets"
local events = require "ksms.events"
local rate = require "ksms.rate"

local type, pairs, ipairs, setmetatable, error = type, pairs, ipairs, setmetatable, error
local format, concat, find, lower, sub = string.format, table.concat, string.find, string.lower, string.sub
local misuse = errors.misuse

local _M = { _VERSION = "0.2.0" }

local Client = {}
Client.__index = Client

-- Providers load lazily so a script using one never loads the others.
local PROVIDERS = {
  senders = "ksms.providers.senders",
  messageme = "ksms.providers.messageme",
  ppurio = "ksms.providers.ppurio",
  cafe24 = "ksms.providers.cafe24",
}
_M.providers = PROVIDERS

-- Every provider ksms.client takes, in the order tools list them.
_M.names = { "senders", "messageme", "ppurio", "cafe24", "oneshot" }

-- ksms.client.info(name) -> { options, required, capabilities, limits } |
-- nil: what a provider takes and can do, read from its adapter (or the
-- OneShot client) without making a client. options maps every option
-- ksms.client(name, ...) takes to its type (ksms.client's own and the
-- adapter's); required lists those without which it raises.
local INFO = {}
--- What a provider takes and offers, without a client: options, required options, capabilities, limits (the CLI reads it).
-- @tparam string name a provider name
-- @treturn table
function _M.info(name)
  if INFO[name] then return INFO[name] end
  local m
  if name == "oneshot" then m = require "ksms.oneshot.client"
  elseif PROVIDERS[name] then m = require(PROVIDERS[name])
  else return nil end
  local options = {}
  if name ~= "oneshot" then for k, v in pairs(_M.options) do options[k] = v end end
  for k, v in pairs(m.options) do options[k] = v end
  INFO[name] = { options = options, required = m.required, capabilities = m.capabilities, limits = m.limits }
  return INFO[name]
end

local function capability_error(self, what)
  local able = {}
  for name, modname in pairs(PROVIDERS) do
    local ok, p = pcall(require, modname)
    if ok and p.capabilities and p.capabilities[what] then able[#able + 1] = name end
  end
  table.sort(able)
  misuse(format("ksms: %s does not support %s (check client.capabilities.%s)%s",
    self.provider, what, what,
    #able > 0 and ("; providers that do: " .. concat(able, ", ")) or ""))
end

--- Turns a transport failure into the outcome of one provider operation.
function _M.transport_outcome(provider, err)
  local maybe = err.maybe_sent and true or false
  local msg = err.message or tostring(err)
  if maybe then msg = msg .. "; the provider may have accepted it, ksms will not resend it" end
  return errors.new {
    category = err.category or "network", code = err.code, message = msg,
    provider = provider, retryable = not maybe and err.retryable ~= false,
    maybe_sent = maybe,
  }
end

-- The error of a message held back before its request was handed over:
-- its expires_at passed, or on_sending said no. Nothing was sent.
local function held_back(provider, why)
  if type(why) == "table" then return why end -- the rate's refusal (ksms.rate)
  if why == "expired" then
    return errors.new { category = "expired", code = "expired", provider = provider, retryable = false,
      maybe_sent = false, message = "not sent: the message's expires_at passed before it was handed to the transport" }
  end
  return errors.new { category = "cancelled", code = "cancelled", provider = provider, retryable = false,
    maybe_sent = false, message = "not sent: on_sending returned false" }
end

-- The operations the rate option paces (messages); the Retry-After gate
-- holds every operation.
local PACED = { send = true, alimtalk = true, friendtalk = true, send_many = true }

-- A response of status 429 becomes the rate_limit refusal (ksms.rate) and
-- closes the client's gate for its Retry-After; anything else as it is.
function Client:_check_429(o)
  if type(o) == "table" and o.status == 429 and not errors.is(o) then
    local err = rate.http_429(self.provider, o, self.ctx.now())
    self.limiter:block(err.retry_after)
    return err
  end
  return o
end

-- A plan's outcome from the outcomes of its requests (outs[first..last]).
function Client:_settle(plan, outs, first, last)
  local slice = {}
  for k = first, last do
    local o = outs[k]
    if errors.is(o) and o.code == "http_429" and o.provider == self.provider then
      -- already the provider's refusal (_check_429), not a transport failure
    elseif errors.is(o) or (type(o) == "table" and o.category and not o.status) then
      o = _M.transport_outcome(self.provider, o)
    end
    slice[#slice + 1] = o
  end
  if #slice == 1 and errors.is(slice[1]) then
    -- One request that failed in transport: that is the outcome, and
    -- the adapter's finish never sees it (only ksms.providers.common's
    -- combine, for plans of several requests, gets errors among them).
    return self:_outcome(slice[1])
  end
  local res, err = plan.finish(slice)
  return self:_outcome(res or err)
end

-- The limiter's deadline (its clock) for a message expiring at `at`
-- (epoch seconds by the client's now), nil for none.
function Client:_deadline(at)
  if not at then return nil end
  return self.limiter.clock() + (at - self.ctx.now())
end

-- Runs a list of plans; returns one outcome per plan (result or error).
-- With on_event, one event per plan (ksms.events): operation names it,
-- metas[i] = { kind, recipients } what the caller knows of plan i.
-- stream (optional) = { on_sending(i), on_outcome(i, out), expires = { [i] = epoch } }:
-- plan i's first request is handed to the transport only after
-- on_sending(i) (false: it is not, nor are its others) and while its
-- expires_at has not passed; on_outcome(i, out) as soon as its last
-- request ends. Both run inside the transport's request_many callbacks.
-- Every request first passes the Retry-After gate, and for a paced
-- operation (PACED) waits for its start from the rate (ksms.rate): a plan
-- refused there gets that refusal, nothing sent. Waiting inside
-- request_many is on_start's "ask again in d seconds", so the requests in
-- flight go on meanwhile.
function Client:_run(plans, concurrency, operation, metas, stream)
  local t0 = self.on_event and events.monotonic()
  local reqs, slices, plan_of = {}, {}, {}
  for i, plan in ipairs(plans) do
    local first = #reqs + 1
    for _, r in ipairs(plan.requests) do reqs[#reqs + 1] = r; plan_of[#reqs] = i end
    slices[i] = { first, #reqs }
  end
  local lim = self.limiter
  local paced = PACED[operation] and lim.per_second and true or false
  local outs
  local results = {}
  -- The streaming path also for a batch over the client's own transport
  -- (ksms's, with on_start): a 429 then holds the batch's later messages.
  if stream or (paced and #reqs > 1) or (#plans > 1 and self.owns_transport) then
    stream = stream or {}
    outs = {}
    local held, left, start_at = {}, {}, {}
    for i, sl in ipairs(slices) do left[i] = sl[2] - sl[1] + 1 end
    local expires, now = stream.expires, self.ctx.now
    local on_sending, on_outcome = stream.on_sending, stream.on_outcome
    local function on_start(k)
      local i = plan_of[k]
      if held[i] then return false end
      local first = k == slices[i][1]
      local at = start_at[k]
      if not at then
        local exp = expires and expires[i]
        if first and exp and now() >= exp then held[i] = "expired"; return false end
        if first then
          local refusal = lim:gate()
          if refusal then held[i] = refusal; return false end
        end
        at = 0
        if paced then
          local err
          -- A plan's later requests (chunks) wait for their start but are
          -- never refused by the rate: its first part is already sent.
          at, err = lim:reserve(first and self:_deadline(exp) or nil)
          if not at then
            if first then held[i] = err; return false end
            at = 0
          end
        end
        start_at[k] = at
        local wait = at > 0 and lim:left(at) or 0
        if wait > 0 then return wait end
      else
        local wait = lim:left(at)
        if wait > 0 then return wait end
        if first then
          -- It waited: a 429 that came meanwhile holds it still.
          local refusal = lim:gate()
          if refusal then held[i] = refusal; return false end
        end
      end
      if first and on_sending and on_sending(i) == false then held[i] = "cancelled"; return false end
      return true
    end
    local function on_done(k, o)
      o = self:_check_429(o)
      outs[k] = o
      local i = plan_of[k]
      left[i] = left[i] - 1
      if left[i] > 0 then return end
      local out
      if held[i] then out = self:_outcome(held_back(self.provider, held[i]))
      else out = self:_settle(plans[i], outs, slices[i][1], slices[i][2]) end
      results[i] = out
      for j = slices[i][1], slices[i][2] do outs[j] = nil end -- a long stream keeps only outcomes
      if on_outcome then on_outcome(i, out) end
    end
    if #reqs > 0 then
      self.transport:request_many(reqs, { concurrency = concurrency or self.concurrency,
        on_start = on_start, on_done = on_done })
    end
  else
    local refusal = #reqs > 0 and lim:gate()
    if not refusal and paced and #reqs == 1 then
      local at
      at, refusal = lim:reserve(self:_deadline(self._expires))
      if at then
        rate.sleep(lim:left(at))
        refusal = lim:gate() -- a 429 that came while it waited
      end
    end
    if refusal then
      for i = 1, #plans do results[i] = self:_outcome(refusal) end
      outs = nil
    elseif #reqs == 1 then
      local res, err = self.transport:request(reqs[1])
      outs = { self:_check_429(res or err) }
    elseif #reqs > 1 then
      outs = self.transport:request_many(reqs, { concurrency = concurrency or self.concurrency })
      for k = 1, #outs do outs[k] = self:_check_429(outs[k]) end
    else
      outs = {}
    end
    if outs then
      for i, plan in ipairs(plans) do results[i] = self:_settle(plan, outs, slices[i][1], slices[i][2]) end
    end
  end
  if self.on_event then
    -- send_many's requests run at once: each message's duration is the batch's.
    local duration = events.monotonic() - t0
    for i, out in ipairs(results) do
      local meta = metas and metas[i] or {}
      events.emit(self.on_event, events.event(self.provider, operation or "send", out, duration,
        meta.kind, type(out.recipients) == "number" and out.recipients or meta.recipients, 1), self.log)
    end
  end
  return results
end

-- Every outcome a client returns leaves through here, the one place that
-- stamps the provider (adapters and the shared rules need not) and masks
-- errors: a server may echo the request (the key, in any encoding) into
-- the answer an error quotes.
function Client:_outcome(out)
  out.provider = self.provider
  if out.ok then return out end
  return self.masker:mask_in_place(out)
end

function Client:_one(operation, meta, plan, err, expires_at)
  if not plan then return nil, self:_outcome(err) end
  self._expires = expires_at -- the rate's deadline for this one message
  local out = self:_run({ plan }, nil, operation, meta and { meta })[1]
  self._expires = nil
  if out.ok then return out end
  return nil, out
end

-- What an event tells of a message: its kind when given, and a count of
-- its recipients (never the numbers).
function Client:_meta(msg, kind)
  if not self.on_event then return nil end -- nothing to tell: no table on the hot path
  if type(msg) ~= "table" then return { kind = kind } end
  return { kind = type(msg.kind) == "string" and msg.kind or kind, recipients = events.recipients_of(msg.to) }
end

--- client:send{ to, from, text, subject, image, at, kind, expires_at, ... } -> result | nil, err
-- expires_at (epoch seconds, by the client's now): past it, nothing is
-- sent and the error's category is `expired`.
function Client:send(msg)
  local plan, err = self.adapter.plan_send(self.cfg, msg, self.ctx)
  if plan and msg.expires_at and self.ctx.now() >= msg.expires_at then
    plan, err = nil, held_back(self.provider, "expired")
  end
  return self:_one("send", self:_meta(msg), plan, err, plan and msg.expires_at)
end

--- Checks a message as send does (the same errors; misuse raises), sending nothing.
-- The outbox checks what it is given with this before storing it.
-- @tparam table msg a message as for send
-- @return true and what the checks decided ({ kind, bytes, text, held_until }:
--   text as it would be sent, an ad composed), or nil, err
function Client:check(msg)
  local plan, err = self.adapter.plan_send(self.cfg, msg, self.ctx)
  if plan then return true, plan.checked end
  return nil, self:_outcome(err)
end

local SEND_MANY_OPTIONS = { concurrency = "number", on_sending = "function", on_outcome = "function" }

--- client:send_many(messages [, { concurrency = 8, on_sending, on_outcome }]) -> { outcome, ... }
-- Each outcome is a result (ok = true) or an error object, in the order of
-- messages. A message refused before sending gets its error; the others
-- are still sent. Programmer errors in any message raise before anything
-- is sent.
--
-- Streaming: on_sending(i) is called just before message i's request is
-- handed to the transport (returning false exactly holds it back: its
-- outcome is a `cancelled` error, nothing sent); on_outcome(i, outcome)
-- once per message as soon as its outcome is known (at once, before
-- anything is sent, for a message refused by the checks). A message whose
-- expires_at has passed when its turn comes is not sent (`expired`). A
-- callback that raises stops new requests; those already handed over end
-- (on_outcome still called) and then the raise goes on to the caller.
-- Both need a transport with request_many's on_start and on_done (ksms's
-- libcurl and nginx transports have them).
function Client:send_many(messages, opts)
  if type(messages) ~= "table" then misuse("ksms: send_many needs a list of messages") end
  local concurrency, on_sending, on_outcome
  if opts ~= nil then
    if type(opts) ~= "table" then misuse("ksms: send_many options must be a table") end
    errors.check_options("ksms: send_many", opts, SEND_MANY_OPTIONS)
    concurrency, on_sending, on_outcome = opts.concurrency, opts.on_sending, opts.on_outcome
    for name, fn in pairs { on_sending = on_sending, on_outcome = on_outcome } do
      if type(fn) ~= "function" then misuse("ksms: send_many's " .. name .. " must be a function") end
    end
  end
  if concurrency ~= nil and (type(concurrency) ~= "number" or concurrency < 1) then
    misuse("ksms: concurrency must be a positive number")
  end
  local plans, outcomes, where, metas, expires = {}, {}, {}, {}, nil
  local refused = {}
  for i, msg in ipairs(messages) do
    local plan, err = self.adapter.plan_send(self.cfg, msg, self.ctx)
    if plan then
      plans[#plans + 1] = plan
      where[#plans] = i
      metas[#plans] = self:_meta(msg)
      if msg.expires_at then
        expires = expires or {}
        expires[#plans] = msg.expires_at
      end
    else
      outcomes[i] = self:_outcome(err)
      refused[#refused + 1] = i
    end
  end
  local stream
  if on_sending or on_outcome or expires then
    if on_outcome then for _, i in ipairs(refused) do on_outcome(i, outcomes[i]) end end
    stream = {
      expires = expires,
      on_sending = on_sending and function(k) return on_sending(where[k]) end,
      on_outcome = on_outcome and function(k, out) on_outcome(where[k], out) end,
    }
  end
  local results = self:_run(plans, concurrency, "send_many", metas, stream)
  for k = 1, #plans do outcomes[where[k]] = results[k] end
  return outcomes
end

--- The account's balance.
-- @return `{ balance = n, ... }`, or nil, err
-- @raise when the provider has no balance call (see capabilities)
function Client:balance()
  if not self.capabilities.balance then capability_error(self, "balance") end
  return self:_one("balance", nil, self.adapter.plan_balance(self.cfg, self.ctx))
end

--- Sends a KakaoTalk AlimTalk message: template, variables, to, from, fallback.
-- @tparam table msg
-- @return a result, or nil, err
-- @raise when the provider lacks AlimTalk
function Client:alimtalk(msg)
  if not self.capabilities.alimtalk then capability_error(self, "alimtalk") end
  return self:_one("alimtalk", self:_meta(msg, "alimtalk"), self.adapter.plan_alimtalk(self.cfg, msg, self.ctx))
end

--- Sends a KakaoTalk FriendTalk message: channel, text, to, from, button, image, image_link.
-- @tparam table msg
-- @return a result, or nil, err
-- @raise when the provider lacks FriendTalk
function Client:friendtalk(msg)
  if not self.capabilities.friendtalk then capability_error(self, "friendtalk") end
  return self:_one("friendtalk", self:_meta(msg, "friendtalk"), self.adapter.plan_friendtalk(self.cfg, msg, self.ctx))
end

--- client:report(id) -> the delivery report of a sent message (ppurio: cmid)
function Client:report(id)
  if not self.capabilities.report then capability_error(self, "report") end
  return self:_one("report", nil, self.adapter.plan_report(self.cfg, id, self.ctx))
end

--- client:sender_numbers([number]) -> { ok = true, numbers = { { number, ... } } }
function Client:sender_numbers(number)
  if not self.capabilities.sender_numbers then capability_error(self, "sender_numbers") end
  return self:_one("sender_numbers", nil, self.adapter.plan_sender_numbers(self.cfg, number, self.ctx))
end

--- client:register_sender(number, comment) -> result | nil, err
function Client:register_sender(number, comment)
  if not self.capabilities.register_sender then capability_error(self, "register_sender") end
  return self:_one("register_sender", nil, self.adapter.plan_register_sender(self.cfg, number, comment, self.ctx))
end

--- client:history{ ... } -> { ok = true, records = { ... } } (Cafe24)
function Client:history(query)
  if not self.capabilities.history then capability_error(self, "history") end
  return self:_one("history", nil, self.adapter.plan_history(self.cfg, query or {}, self.ctx))
end

--- Closes the transport when the client made it. Idempotent.
function Client:close()
  if self.owns_transport and self.transport then self.transport:close() end
  self.transport = nil
end

Client.__close = Client.close
-- No __gc: the transport has its own finalizer.

function Client:__tostring()
  -- Never the credentials.
  return format("ksms.client(%s, %s)", self.provider, self.cfg.base_url or "?")
end

-- require_tls = true refuses a client that would send anything over plain
-- http://. Senders, MessageMe and ppurio publish only http endpoints, and
-- so does Cafe24's history host: there the API key, the message text and
-- the phone numbers travel in clear. It raises, like a missing api_key:
-- the URLs are the caller's configuration, known before anything is sent.
-- One check for every provider, on the URLs its adapter resolved (every
-- cfg field named *_url).
local function check_require_tls(provider, options, cfg)
  local want = options.require_tls
  if want == nil or want == false then return end
  if want ~= true then misuse("ksms.client: require_tls must be true or false") end
  if provider == "oneshot" then
    misuse("ksms.client(\"oneshot\"): require_tls cannot be met: OneShot is a TCP protocol without TLS")
  end
  local plain = {}
  for name, url in pairs(cfg) do
    if type(url) == "string" and find(name, "_url$") and lower(sub(url, 1, 7)) == "http://" then
      plain[#plain + 1] = name .. " = " .. url
    end
  end
  if #plain == 0 then return end
  table.sort(plain)
  misuse(format("ksms.client(\"%s\"): require_tls refuses plain HTTP (%s): the API key, the message text and "
    .. "the phone numbers would travel in clear; give https:// URLs or leave require_tls off",
    provider, concat(plain, ", ")))
end

-- The options every HTTP provider takes, beside its adapter's own
-- (adapter.options: credentials, base_url, ...), with their types.
_M.options = {
  timeout = "number", connect_timeout = "number", -- seconds
  transport = "table|string", -- an object with request, request_many, close; or "ngx" | "curl"
  insecure = "boolean", ca_file = "string", -- TLS, for the transport ksms makes
  concurrency = "number", -- requests at once in send_many (default 8)
  now = "function", -- epoch seconds, for reservations and the ad night rule
  ad = "table", -- { name, opt_out, night }: advertising messages (ksms.rules.ad, docs/ads.md)
  require_tls = "boolean", -- see check_require_tls
  rate = "number|table", -- requests started per second, or { per_second, burst, max_wait, dict, key } (ksms.rate)
  on_event = "function", -- called once per provider operation (ksms.events, docs/metrics.md)
  logger = "function", -- logger(level, message, fields): where ksms's log lines go (ksms.events.logger)
}

-- The client's log: the caller's logger (or the default), every message
-- through the client's masker, the provider in the fields.
local function masked_log(provider, logger, masker)
  events.check(format("ksms.client(%q)", provider), logger, "logger")
  local log = events.logger(logger)
  return function(level, message, fields)
    fields = fields or {}
    fields.provider = fields.provider or provider
    log(level, masker:mask(message), fields)
  end
end

--- ksms.client(provider, options) -> client
-- options: the provider's credentials (api_key, ...), base_url (scheme,
-- host and port; the documented paths are appended), timeout and
-- connect_timeout (seconds), transport (an object with request,
-- request_many, close; or "ngx" | "curl"; default: nginx cosockets inside
-- nginx, libcurl elsewhere, see ksms.transport), concurrency (default 8),
-- now (a function returning epoch seconds, for reservations), require_tls
-- (true: raise rather than use an http:// URL, see check_require_tls),
-- on_event (a function called once per provider operation, ksms.events),
-- logger (logger(level, message, fields): where the client's log lines go,
-- secrets masked; default ngx.log inside nginx, else stderr), ad ({ name,
-- opt_out, night }: the sender name, 080 opt-out number and night policy
-- of messages sent with ad = true, see docs/ads.md), rate (requests
-- started per second, a number or { per_second, burst, max_wait, dict,
-- key }: ksms.rate, docs/providers.md; an HTTP 429 closes the client's
-- gate for its Retry-After either way).
-- An option neither the client nor the adapter declares raises: a typo
-- such as baseurl would otherwise send to the provider's default host.
function _M.new(provider, options)
  if type(provider) ~= "string" then misuse("ksms.client: provider name expected") end
  -- OneShot is a bound TCP session, not request/response plans.
  if provider == "oneshot" then
    if type(options) == "table" and options.rate ~= nil then
      misuse("ksms.client(\"oneshot\"): no rate option: OneShot paces every message by the Speed its bind granted "
        .. "(ksms.oneshot.pacer), and that is the provider's own limit")
    end
    if type(options) == "table" and options.require_tls ~= nil then
      check_require_tls(provider, options) -- raises unless false
      local rest = {} -- the session refuses options it does not know
      for k, v in pairs(options) do if k ~= "require_tls" then rest[k] = v end end
      options = rest
    end
    return require("ksms.oneshot.client").new(options)
  end
  local modname = PROVIDERS[provider]
  if not modname then
    local names = {}
    for name in pairs(PROVIDERS) do names[#names + 1] = name end
    table.sort(names)
    misuse(format("ksms.client: unknown provider '%s' (known: %s)", provider, concat(names, ", ")))
  end
  options = options or {}
  if type(options) ~= "table" then misuse("ksms.client: options must be a table") end
  local adapter = require(modname)
  errors.check_options(format("ksms.client(%q)", provider), options, _M.options, adapter.options)
  -- Credentials, checked here for every adapter (its P.required).
  for _, k in ipairs(adapter.required or {}) do
    local v = options[k]
    if type(v) ~= "string" or v == "" then misuse(format("ksms.client(%q): options.%s is required", provider, k)) end
  end
  local cfg = adapter.configure(options)
  check_require_tls(provider, options, cfg)
  local transport, owns = options.transport, false
  if not transport or type(transport) == "string" then
    -- A kind ("ngx" or "curl") or none: ksms.transport picks (cosockets
    -- inside nginx, libcurl elsewhere) and raises where neither is right.
    transport = require("ksms.transport").new {
      kind = transport or nil,
      timeout = options.timeout, connect_timeout = options.connect_timeout,
      insecure = options.insecure, ca_file = options.ca_file,
    }
    owns = true
  end
  local ctx = {
    provider = provider,
    now = options.now or os.time,
    ad = require("ksms.message").check_ad_option(options.ad, format("ksms.client(%q)", provider)),
  }
  local masker = secrets.masker()
  for name, value in pairs(options) do
    if secrets.is_secret(name) and type(value) == "string" then masker:add(value) end
  end
  return setmetatable({
    provider = provider, adapter = adapter, cfg = cfg, ctx = ctx,
    transport = transport, owns_transport = owns,
    capabilities = adapter.capabilities, limits = adapter.limits,
    concurrency = options.concurrency or 8, masker = masker,
    on_event = events.check(format("ksms.client(%q)", provider), options.on_event),
    log = masked_log(provider, options.logger, masker),
    limiter = rate.new(options.rate, provider, format("ksms.client(%q)", provider)),
  }, Client)
end

return _M
