--- ksms.cli.provider: the provider a command talks to, from the resolved
-- options (ksms.cli.config): a ksms client over libcurl wrapped so the
-- command knows whether anything left the machine, or over the dry-run
-- recorder. Secret option values are handed to the output's masker first.
--
--   local p = provider.open(ctx, { need_client = true })
--   p.name, p.client, p.options, p.from, p.dry, p.recorded (dry run: requests)
--   p:sent()   -> number of HTTP requests started (0: nothing was sent)
--   p:close()
-- @module ksms.cli.provider
-- @alias _M

local config = require "ksms.cli.config"
local flags = require "ksms.cli.flags"
local secrets = require "ksms.secrets"
local status = require "ksms.cli.status"
local dryrun = require "ksms.cli.dryrun"
local core = require "ksms.core"

local pairs, ipairs, pcall, tostring, error, setmetatable, type = pairs, ipairs, pcall, tostring, error, setmetatable, type
local format, sort, concat = string.format, table.sort, table.concat
local monotonic = core.monotonic

local _M = { _VERSION = "0.2.0" }

local Handle = {}
Handle.__index = Handle

-- A raised library message without its "ksms.client: " prefix.
local function clean(msg)
  msg = tostring(msg):gsub("^[^:]*%.lua:%d+: ", "")
  return msg
end
_M.clean = clean

-- Wraps a transport: counts what it starts, and with --verbose says what
-- went out and how it ended (URLs masked, never a body).
local function counting(t, out)
  local w = { started = 0 }
  function w.request(_, req)
    w.started = w.started + 1
    local t0 = monotonic()
    out:debug(format("%s %s", req.method or "POST", req.url))
    local res, err = t:request(req)
    out:debug(format("-> %s in %.0f ms", res and ("HTTP " .. res.status) or tostring(err), (monotonic() - t0) * 1000))
    return res, err
  end
  function w.request_many(_, reqs, opts)
    local t0 = monotonic()
    out:debug(format("%d requests to %s", #reqs, reqs[1] and reqs[1].url or "?"))
    if opts and opts.on_start then
      -- Streaming (send_many's hooks, the outbox's worker): only the
      -- requests on_start lets go are started.
      local on_start, copy = opts.on_start, {}
      for k, v in pairs(opts) do copy[k] = v end
      copy.on_start = function(k)
        local go = on_start(k)
        -- a number is "ask again then" (the client's rate): not started yet
        if go ~= false and type(go) ~= "number" then w.started = w.started + 1 end
        return go
      end
      opts = copy
    else
      w.started = w.started + #reqs
    end
    local outs = t:request_many(reqs, opts)
    out:debug(format("-> %d answers in %.0f ms", #outs, (monotonic() - t0) * 1000))
    return outs
  end
  function w.close() t:close() end
  return w
end

--- The provider's name from --provider, KSMS_PROVIDER or the config file.
function _M.name(ctx)
  if ctx.provider_name then return ctx.provider_name end
  local name, from = config.provider(ctx.opts.provider, ctx:load_config())
  if not name then
    error(status.usage("no provider: give --provider NAME (" .. concat(config.PROVIDERS, ", ")
      .. "), set KSMS_PROVIDER, or put provider = NAME under [default] in the config file"), 0)
  end
  if not config.OPTIONS[name] then
    error(status.usage(format("unknown provider %q (known: %s)", name, concat(config.PROVIDERS, ", "))), 0)
  end
  ctx.out:debug(format("provider %s (from %s)", name, from))
  ctx.provider_name = name
  return name
end

--- The resolved options of the provider; secrets registered with the masker.
function _M.options(ctx, name)
  local given, gerr = flags.client_options(ctx.opts)
  if not given then error(status.usage(gerr), 0) end
  -- Secrets first, so that no message below can show one.
  for k, v in pairs(given) do if secrets.is_secret(k) then ctx.out:secret(v) end end
  local options, sources = config.resolve(name, given, ctx:load_config())
  if not options then error(status.usage(sources), 0) end
  for k, v in pairs(options) do if secrets.is_secret(k) then ctx.out:secret(v) end end
  local names = {}
  for k in pairs(options) do names[#names + 1] = k end
  sort(names)
  for _, k in ipairs(names) do
    local v = options[k]
    local shown = secrets.is_secret(k) and format("(secret, %d characters)", #tostring(v)) or tostring(v)
    ctx.out:debug(format("option %s = %s  [%s]", k, shown, sources[k]))
  end
  return options
end

--- open(ctx [, { dry = bool }]) -> handle. Raises a usage error (exit 2)
-- for a missing provider, missing credentials or options it refuses.
function _M.open(ctx)
  local name = _M.name(ctx)
  local options = _M.options(ctx, name)
  local from = options.from
  options.from = nil
  local missing = config.missing(name, options)
  if missing then error(status.usage(missing), 0) end
  local h = setmetatable({ name = name, options = options, from = from, dry = ctx.opts.dry_run and true or false,
    recorded = {} }, Handle)
  h.capabilities = require("ksms.client").info(name).capabilities
  if h.capabilities.session then
    -- A session client (OneShot) has no HTTP transport. It checks the
    -- options (require_tls too) without connecting: a dry run refuses what
    -- the real run would.
    local ok, client = pcall(require("ksms").client, name, options)
    if not ok then error(status.usage(clean(client)), 0) end
    options.require_tls = nil -- checked; the dry run's session knows no such option
    if not h.dry then h.client = client end
    return h
  end
  local transport
  if h.dry then
    transport = dryrun.recorder(function(req) h.recorded[#h.recorded + 1] = req end)
  else
    local ok, t = pcall(require("ksms.transport").new, { kind = "curl", timeout = options.timeout,
      connect_timeout = options.connect_timeout, insecure = options.insecure, ca_file = options.ca_file })
    if not ok then error(status.usage(clean(t)), 0) end
    transport = counting(t, ctx.out)
  end
  h.transport = transport
  local copy = { transport = transport }
  for k, v in pairs(options) do copy[k] = v end
  local ok, client = pcall(require("ksms").client, name, copy)
  if not ok then
    transport:close()
    error(status.usage(clean(client)), 0)
  end
  h.client = client
  return h
end

--- How many requests (or frames) may have left, for the exit code.
-- @treturn integer
function Handle:sent()
  if self.dry then return 0 end
  if self.capabilities.session then
    -- Connected once: frames may have been written.
    local s = self.client and self.client.session
    return (s and (s.conn or s.bound)) and 1 or 0
  end
  return self.transport and self.transport.started or 0
end

--- Providers that have a capability, for "X does not support Y" messages.
function _M.able(what)
  local able = {}
  for _, name in ipairs(config.PROVIDERS) do
    if require("ksms.client").info(name).capabilities[what] then able[#able + 1] = name end
  end
  return able
end

-- Raises a usage error unless the provider has the capability.
local function check(name, caps, what, label, hint)
  if caps and caps[what] then return end
  local others = _M.able(what)
  error(status.usage(format("%s does not support %s%s%s", name, label or what,
    #others > 0 and ("; providers that do: " .. concat(others, ", ")) or "", hint and ("; " .. hint) or "")), 0)
end

--- need(ctx, what [, label [, hint]]): the capability checked from the
-- provider's name alone (ksms.client.info), before any credential is
-- asked for. hint: a string, or a function of the capabilities.
function _M.need(ctx, what, label, hint)
  local name = _M.name(ctx)
  local caps = require("ksms.client").info(name).capabilities
  if type(hint) == "function" then hint = hint(caps) end
  check(name, caps, what, label, hint)
  return name, caps
end

--- Closes the client and its transport (errors ignored).
function Handle:close()
  if self.client then pcall(self.client.close, self.client) end
  if self.transport then pcall(self.transport.close, self.transport) end
  self.client, self.transport = nil, nil
end

return _M
