--- ksms.cli.flags: the flag groups commands share (args.parse declarations).
-- @module ksms.cli.flags
-- @alias _M

local config = require "ksms.cli.config"

local ipairs, pairs, gsub = ipairs, pairs, string.gsub

local _M = { _VERSION = "0.2.0" }

_M.GLOBAL = {
  { name = "provider", kind = "string", arg = "NAME",
    help = "senders | messageme | ppurio | cafe24 | oneshot (or KSMS_PROVIDER, or [default] provider)" },
  { name = "config", kind = "string", arg = "PATH", help = "config file (default $XDG_CONFIG_HOME/ksms/config)" },
  { name = "opt", kind = "multi", arg = "NAME=VALUE", help = "any client option (repeatable), e.g. --opt timeout=5" },
  { name = "json", kind = "bool", help = "machine-readable JSON on stdout" },
  { name = "verbose", kind = "bool", help = "say where each option came from and what is sent (secrets masked)" },
  { name = "help", short = "h", kind = "bool", help = "this help" },
}

-- Flags that take the provider's client options: --api-key, --base-url, ...
-- (version is left to --opt version=N: --version is the tool's).
_M.PROVIDER_OPTIONS = {}
for _, name in ipairs(config.all_option_names()) do
  if name ~= "version" then
    local kind = "string"
    for _, opts in pairs(config.OPTIONS) do if opts[name] == "boolean" then kind = "bool" end end
    _M.PROVIDER_OPTIONS[#_M.PROVIDER_OPTIONS + 1] = { name = (gsub(name, "_", "-")), kind = kind,
      option = name, hidden = true }
  end
end

_M.DRY_RUN = { name = "dry-run", kind = "bool",
  help = "print the exact request (secrets masked) and send nothing" }

--- flags.join(group, ...) -> one list
function _M.join(...)
  local out = {}
  for _, group in ipairs({ ... }) do
    for _, f in ipairs(group) do out[#out + 1] = f end
  end
  return out
end

--- The client options given on the command line: option flags and --opt.
function _M.client_options(opts)
  local given = {}
  for _, f in ipairs(_M.PROVIDER_OPTIONS) do
    local v = opts[(gsub(f.name, "%-", "_"))]
    if v ~= nil then given[f.option] = v end
  end
  for _, kv in ipairs(opts.opt or {}) do
    local k, v = kv:match("^%s*([%w_%-]+)%s*=(.*)$")
    if not k then return nil, "--opt takes NAME=VALUE (e.g. --opt timeout=5)" end
    given[(gsub(k, "%-", "_"))] = v
  end
  return given
end

return _M
