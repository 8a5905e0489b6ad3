-- ksms.cli.help: the tool's help, each command's, and `ksms help options`.

local config = require "ksms.cli.config"
local flags = require "ksms.cli.flags"

local ipairs, pairs = ipairs, pairs
local format, concat, sort = string.format, table.concat, table.sort

local _M = { _VERSION = "0.1.0" }

_M.EXIT_CODES = [[
Exit codes:
  0  success
  1  the provider refused (auth, balance, caller number, ...); check: a
     provider cannot carry the text; bulk: some rows were refused
  2  usage error or invalid input: nothing was sent
  3  network, timeout or unknown outcome: it may have been sent (bulk:
     rows that may have been sent are listed; re-runs never resend them)
  4  network failure before anything left (DNS, connection refused, TLS
     handshake, connect timeout, OneShot not connected): not sent, safe
     to retry (bulk: the only failures were such rows)]]

_M.CREDENTIALS = [[
Credentials and options, highest precedence first:
  flags          --api-key K, --base-url U, ... or --opt name=value
  environment    KSMS_<PROVIDER>_<OPTION>, e.g. KSMS_SENDERS_API_KEY,
                 KSMS_ONESHOT_PORT; KSMS_PROVIDER, KSMS_FROM
  config file    --config PATH, default $XDG_CONFIG_HOME/ksms/config or
                 ~/.config/ksms/config: [default] provider = / from =, and a
                 [provider] section per provider (api_key = ...)
Secrets (api_key, secure_key, password, key, iv, anything named *key*,
*secret*, *password*, *token*) are never printed, not even with --verbose.
--require-tls (require_tls = true) refuses plain http:// URLs: Senders,
MessageMe, ppurio and Cafe24's history host publish only http, which
carries the API key, the text and the numbers in clear.
`ksms help options` lists every option of every provider.]]

local function flag_line(f)
  local left = "--" .. f.name .. (f.short and (", -" .. f.short) or "")
  if f.kind ~= "bool" then left = left .. " " .. (f.arg or "VALUE") end
  return format("  %-28s %s", left, f.help or "")
end

function _M.tool(commands, version)
  local lines = {
    "ksms " .. version .. ": Korean SMS/LMS/MMS and KakaoTalk messages from the shell",
    "",
    "Usage: ksms COMMAND [options]      ksms COMMAND --help      ksms help options",
    "",
    "Commands:",
  }
  for _, c in ipairs(commands) do lines[#lines + 1] = format("  %-16s %s", c.name, c.summary) end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options for every command:"
  for _, f in ipairs(flags.GLOBAL) do lines[#lines + 1] = flag_line(f) end
  lines[#lines + 1] = "  --version                    the version"
  lines[#lines + 1] = ""
  lines[#lines + 1] = _M.CREDENTIALS
  lines[#lines + 1] = ""
  lines[#lines + 1] = _M.EXIT_CODES
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Examples:"
  lines[#lines + 1] = "  export KSMS_SENDERS_API_KEY=...        # or ~/.config/ksms/config"
  lines[#lines + 1] = "  ksms send --provider senders --to 010-1111-2222 --from 02-1234-5678 --text '안녕하세요'"
  lines[#lines + 1] = "  ksms check '됬나요? 😀'"
  lines[#lines + 1] = "  ksms bulk customers.csv --provider senders --from 0212345678 --text '{name}님 안녕하세요' --journal c.journal"
  lines[#lines + 1] = "  ksms balance --provider senders --json"
  return concat(lines, "\n")
end

function _M.command(c)
  local lines = { format("ksms %s: %s", c.name, c.summary), "", "Usage: " .. c.usage }
  if c.details then lines[#lines + 1] = ""; lines[#lines + 1] = c.details end
  local shown = {}
  for _, f in ipairs(c.flags) do if not f.hidden then shown[#shown + 1] = f end end
  if #shown > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Options:"
    for _, f in ipairs(shown) do lines[#lines + 1] = flag_line(f) end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Common options:"
  for _, f in ipairs(flags.GLOBAL) do lines[#lines + 1] = flag_line(f) end
  if not c.offline then
    lines[#lines + 1] = "  Provider options (--api-key, --base-url, --host, --port, ...): ksms help options"
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Examples:"
  for _, e in ipairs(c.examples or {}) do lines[#lines + 1] = "  " .. e end
  lines[#lines + 1] = ""
  lines[#lines + 1] = _M.EXIT_CODES
  return concat(lines, "\n")
end

function _M.options()
  local lines = { "Client options, per provider. Each is a flag (--api-key), an --opt name=value,",
    "an environment variable KSMS_<PROVIDER>_<OPTION>, or a line in the provider's config section.",
    "Required ones are marked *; secrets are masked in every output.",
    "require_tls = true refuses http:// URLs (base_url, Cafe24's history_url) before anything is sent." }
  for _, p in ipairs(config.PROVIDERS) do
    lines[#lines + 1] = ""
    lines[#lines + 1] = format("[%s]", p)
    local required = {}
    for _, k in ipairs(config.REQUIRED[p]) do required[k] = true end
    local names = {}
    for k in pairs(config.OPTIONS[p]) do names[#names + 1] = k end
    sort(names, function(a, b)
      if required[a] ~= required[b] then return required[a] == true end
      return a < b
    end)
    for _, k in ipairs(names) do
      local flag = k == "version" and "--opt version=N" or ("--" .. k:gsub("_", "-"))
      lines[#lines + 1] = format("  %s %-26s %-8s %-36s %s", required[k] and "*" or " ", k, config.OPTIONS[p][k],
        config.env_name(p, k), flag)
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Example ~/.config/ksms/config:"
  lines[#lines + 1] = "  [default]\n  provider = senders\n  from = 02-1234-5678\n\n  [senders]\n  api_key = ...\n\n"
    .. "  [oneshot]\n  host = oneshot.example\n  port = 9000\n  id = myid\n  password = ...\n  key = ...\n  iv = ..."
  return concat(lines, "\n")
end

return _M
