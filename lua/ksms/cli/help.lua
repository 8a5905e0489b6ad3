--- ksms.cli.help: the tool's help, each command's, `ksms help options`, and
-- the bash/zsh completion and man page generated from the same tables.
-- @module ksms.cli.help
-- @alias _M

local config = require "ksms.cli.config"
local flags = require "ksms.cli.flags"
local STATES = require("ksms.outbox.states").names -- ksms outbox list --state

local ipairs, pairs = ipairs, pairs
local format, concat, sort, gsub = string.format, table.concat, table.sort, string.gsub

local _M = { _VERSION = "0.2.0" }

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

--- The text of `ksms --help`.
-- @tparam table commands the command table
-- @tparam string version
-- @treturn string
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
  lines[#lines + 1] = "  ksms outbox list --state maybe_sent --outbox c.journal"
  lines[#lines + 1] = "  ksms balance --provider senders --json"
  return concat(lines, "\n")
end

--- The text of `ksms COMMAND --help`.
-- @tparam table c a command's entry
-- @treturn string
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

--- The text of `ksms help options`: every client option of every provider.
-- @treturn string
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

-- ---- completion and the man page ----
--
-- Generated from the same command and flag tables as the help above, so
-- the three never disagree: help.bash_completion(commands),
-- help.zsh_completion(commands), help.man(commands, version) (`ksms
-- completion bash|zsh`, `ksms man`; `make install` writes them under
-- $(PREFIX)/share).

local EXTRA_TOOL = { { name = "version", kind = "bool", help = "the version" } }

--- Every flag a command takes, shown and hidden (provider options) alike,
-- the global ones included; each name once.
function _M.flags_of(c)
  local seen, list = {}, {}
  for _, f in ipairs(flags.join(c.flags or {}, flags.GLOBAL)) do
    if not seen[f.name] then seen[f.name] = true; list[#list + 1] = f end
  end
  return list
end

local function names(list, with_value)
  local out = {}
  for _, f in ipairs(list) do
    if with_value == nil or (f.kind ~= "bool") == with_value then out[#out + 1] = "--" .. f.name end
  end
  return concat(out, " ")
end

-- Flags that take a value, of any command: the completion skips their value
-- when it looks for the command word.
local function value_flags(commands)
  local seen, out = {}, {}
  for _, c in ipairs(commands) do
    for _, f in ipairs(_M.flags_of(c)) do
      if f.kind ~= "bool" and not seen[f.name] then seen[f.name] = true; out[#out + 1] = "--" .. f.name end
    end
  end
  sort(out)
  return out
end

local function command_names(commands)
  local out = {}
  for _, c in ipairs(commands) do out[#out + 1] = c.name end
  out[#out + 1] = "help"
  return out
end

--- The bash completion script, from the same command and flag tables as --help.
-- @tparam table commands the command table of ksms.cli.main
function _M.bash_completion(commands)
  local l = {
    "# bash completion for ksms; generated by `ksms completion bash` from the tables of --help",
    "_ksms() {",
    "  local cur prev cmd i",
    "  cur=${COMP_WORDS[COMP_CWORD]}",
    "  prev=${COMP_WORDS[COMP_CWORD-1]}",
    "  for ((i = 1; i < COMP_CWORD; i++)); do",
    "    case ${COMP_WORDS[i]} in",
    "      " .. concat(value_flags(commands), "|") .. ") ((i++)) ;;",
    "      -*) ;;",
    "      *) cmd=${COMP_WORDS[i]}; break ;;",
    "    esac",
    "  done",
    "  case $prev in",
    "    --provider) COMPREPLY=($(compgen -W \"" .. concat(config.PROVIDERS, " ") .. "\" -- \"$cur\")); return ;;",
    "    --state) COMPREPLY=($(compgen -W \"" .. concat(STATES, " ") .. "\" -- \"$cur\")); return ;;",
    "    --config|--journal|--outbox|--text-file|--image) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;",
    "  esac",
    "  local words",
    "  case $cmd in",
  }
  for _, c in ipairs(commands) do
    l[#l + 1] = format("    %s) words=\"%s\" ;;", c.name, names(_M.flags_of(c)))
    if c.subcommands then -- the subcommand word first (ksms outbox list)
      local subs = {}
      for i, s in ipairs(c.subcommands) do subs[i] = s.name end
      l[#l] = format("    %s) words=\"%s\"", c.name, names(_M.flags_of(c)))
      l[#l + 1] = format("        [[ $cur == -* ]] || (( COMP_CWORD != i + 1 )) || words=\"%s\" ;;", concat(subs, " "))
    end
  end
  l[#l + 1] = "    help) words=\"" .. concat(command_names(commands), " ") .. " options\" ;;"
  l[#l + 1] = "    completion) words=\"bash zsh\" ;;"
  l[#l + 1] = format("    '') words=\"%s %s\"", names(flags.join(flags.GLOBAL, EXTRA_TOOL)), "")
  l[#l + 1] = "        [[ $cur == -* ]] || words=\"" .. concat(command_names(commands), " ") .. "\" ;;"
  l[#l + 1] = "  esac"
  l[#l + 1] = "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))"
  l[#l + 1] = "  [[ -n $cmd && $cur != -* && ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- \"$cur\"))"
  l[#l + 1] = "  return 0"
  l[#l + 1] = "}"
  l[#l + 1] = "complete -F _ksms ksms"
  return concat(l, "\n") .. "\n"
end

-- zsh: "name:description" with the colons of the text escaped.
local function zdesc(name, text)
  return "'" .. gsub(name, ":", "\\:") .. ":" .. gsub(gsub(text or "", "'", "'\\''"), ":", "\\:") .. "'"
end

--- The zsh completion script (_ksms), from the same tables as --help.
-- @tparam table commands the command table of ksms.cli.main
function _M.zsh_completion(commands)
  local l = {
    "#compdef ksms",
    "# zsh completion for ksms; generated by `ksms completion zsh` from the tables of --help",
    "_ksms() {",
    "  local cmd i",
    "  local -a cmds opts",
    "  for (( i = 2; i < CURRENT; i++ )); do",
    "    case ${words[i]} in",
    "      " .. concat(value_flags(commands), "|") .. ") (( i++ )) ;;",
    "      -*) ;;",
    "      *) cmd=${words[i]}; break ;;",
    "    esac",
    "  done",
    "  case ${words[CURRENT-1]} in",
    "    --provider) compadd -- " .. concat(config.PROVIDERS, " ") .. "; return ;;",
    "    --state) compadd -- " .. concat(STATES, " ") .. "; return ;;",
    "    --config|--journal|--outbox|--text-file|--image) _files; return ;;",
    "  esac",
  }
  local cmds = {}
  for _, c in ipairs(commands) do cmds[#cmds + 1] = zdesc(c.name, c.summary) end
  cmds[#cmds + 1] = zdesc("help", "help on a command, or help options")
  l[#l + 1] = "  cmds=(" .. concat(cmds, " ") .. ")"
  l[#l + 1] = "  case $cmd in"
  for _, c in ipairs(commands) do
    local o = {}
    for _, f in ipairs(_M.flags_of(c)) do o[#o + 1] = zdesc("--" .. f.name, f.help or f.option or "") end
    l[#l + 1] = format("    %s) opts=(%s) ;;", c.name, concat(o, " "))
    if c.subcommands then -- the subcommand word right after the command's
      local subs = {}
      for i, s in ipairs(c.subcommands) do subs[i] = zdesc(s.name, s.summary) end
      l[#l] = format("    %s) opts=(%s)", c.name, concat(o, " "))
      l[#l + 1] = "        if (( CURRENT == i + 1 )) && [[ ${words[CURRENT]} != -* ]]; then"
      l[#l + 1] = format("          local -a subs; subs=(%s); _describe subcommand subs; return; fi ;;", concat(subs, " "))
    end
  end
  l[#l + 1] = "    help) _describe command cmds; compadd options; return ;;"
  l[#l + 1] = "    completion) compadd bash zsh; return ;;"
  local g = {}
  for _, f in ipairs(flags.join(flags.GLOBAL, EXTRA_TOOL)) do g[#g + 1] = zdesc("--" .. f.name, f.help) end
  l[#l + 1] = "    '') if [[ ${words[CURRENT]} != -* ]]; then _describe command cmds; return; fi"
  l[#l + 1] = "        opts=(" .. concat(g, " ") .. ") ;;"
  l[#l + 1] = "  esac"
  l[#l + 1] = "  if [[ ${words[CURRENT]} == -* ]]; then _describe option opts; else _files; fi"
  l[#l + 1] = "}"
  l[#l + 1] = "_ksms \"$@\""
  return concat(l, "\n") .. "\n"
end

-- roff: backslashes and hyphens escaped, a line never starts with . or '.
local function roff(s)
  s = gsub(s or "", "\\", "\\e")
  s = gsub(s, "%-", "\\-")
  s = gsub(s, "\n([%.'])", "\n\\&%1")
  s = gsub(s, "^([%.'])", "\\&%1")
  return s
end

local function flag_item(l, f)
  local left = "\\fB\\-\\-" .. roff(f.name) .. "\\fR" .. (f.kind ~= "bool" and (" \\fI" .. roff(f.arg or "VALUE") .. "\\fR") or "")
  l[#l + 1] = ".TP"
  l[#l + 1] = left
  l[#l + 1] = roff(f.help or "")
end

local function para(l, text)
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    l[#l + 1] = line == "" and ".PP" or roff(line)
  end
end

--- The man page (roff, section 1), from the same tables as --help.
-- @tparam table commands the command table of ksms.cli.main
-- @tparam string version
function _M.man(commands, version)
  local l = {
    format('.TH KSMS 1 "" "ksms %s" "User Commands"', roff(version)),
    ".SH NAME",
    "ksms \\- Korean SMS/LMS/MMS and KakaoTalk messages from the shell",
    ".SH SYNOPSIS",
    ".B ksms",
    ".I COMMAND",
    "[\\fIoptions\\fR]",
    ".br",
    ".B ksms",
    ".I COMMAND",
    "\\fB\\-\\-help\\fR",
    ".SH COMMANDS",
  }
  for _, c in ipairs(commands) do
    l[#l + 1] = ".SS " .. roff(c.name)
    l[#l + 1] = roff(c.summary)
    l[#l + 1] = ".PP"
    l[#l + 1] = ".nf"
    l[#l + 1] = roff(c.usage)
    l[#l + 1] = ".fi"
    if c.details then l[#l + 1] = ".PP"; para(l, c.details) end
    for _, f in ipairs(c.flags or {}) do if not f.hidden then flag_item(l, f) end end
  end
  l[#l + 1] = ".SH OPTIONS"
  l[#l + 1] = "For every command:"
  for _, f in ipairs(flags.join(flags.GLOBAL, EXTRA_TOOL)) do flag_item(l, f) end
  l[#l + 1] = ".PP"
  local opts = {}
  for _, f in ipairs(flags.PROVIDER_OPTIONS) do opts[#opts + 1] = "\\fB\\-\\-" .. roff(f.name) .. "\\fR" end
  l[#l + 1] = "Provider options, for every command that talks to a provider (ksms help options): "
    .. concat(opts, ", ") .. "."
  l[#l + 1] = ".SH ENVIRONMENT AND FILES"
  l[#l + 1] = ".nf"
  para(l, _M.CREDENTIALS)
  l[#l + 1] = ".fi"
  l[#l + 1] = ".SH EXIT STATUS"
  l[#l + 1] = ".nf"
  para(l, (gsub(_M.EXIT_CODES, "^Exit codes:\n", "")))
  l[#l + 1] = ".fi"
  l[#l + 1] = ".SH SEE ALSO"
  l[#l + 1] = "\\fBksms \\-\\-help\\fR, \\fBksms help options\\fR"
  return concat(l, "\n") .. "\n"
end

return _M
