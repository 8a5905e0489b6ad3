--- ksms.cli.main: the `ksms` command. Finds the command in argv, parses its
-- flags, runs it, and turns whatever happened into an exit code
-- (ksms.cli.status). bin/ksms calls main.run(arg).
-- @module ksms.cli.main
-- @alias _M

local args = require "ksms.cli.args"
local flags = require "ksms.cli.flags"
local output = require "ksms.cli.output"
local status = require "ksms.cli.status"
local config = require "ksms.cli.config"
local help = require "ksms.cli.help"
local provider = require "ksms.cli.provider"
local secrets = require "ksms.secrets"

local ipairs, pairs, pcall, error, tostring, type, require = ipairs, pairs, pcall, error, tostring, type, require
local format, find = string.format, string.find

local _M = { _VERSION = "0.2.0" }

local MODULES = { "ksms.cli.commands.send", "ksms.cli.commands.account", "ksms.cli.commands.check",
  "ksms.cli.commands.bulk", "ksms.cli.commands.outbox", "ksms.cli.commands.listen" }

local COMMANDS, BY_NAME = {}, {}
for _, modname in ipairs(MODULES) do
  for _, c in ipairs(require(modname).commands) do
    COMMANDS[#COMMANDS + 1] = c
    BY_NAME[c.name] = c
  end
end
_M.commands = COMMANDS

-- ksms completion bash|zsh, ksms man: generated from these very tables.
local function print_doc(ctx, text)
  ctx.out:write(ctx.out.stdout, text)
  return status.OK
end
for _, c in ipairs({
  {
    name = "completion", summary = "print the bash or zsh completion script",
    usage = "ksms completion bash | zsh", flags = {}, offline = true,
    examples = { "source <(ksms completion bash)", "ksms completion zsh > ~/.zfunc/_ksms" },
    run = function(ctx)
      local shell = ctx.args[1]
      if shell == "bash" then return print_doc(ctx, help.bash_completion(COMMANDS)) end
      if shell == "zsh" then return print_doc(ctx, help.zsh_completion(COMMANDS)) end
      error(status.usage("give the shell: ksms completion bash | zsh"), 0)
    end,
  },
  {
    name = "man", summary = "print the manual page (roff)",
    usage = "ksms man", flags = {}, offline = true,
    examples = { "ksms man | man -l -" },
    run = function(ctx) return print_doc(ctx, help.man(COMMANDS, require("ksms")._VERSION)) end,
  },
}) do
  COMMANDS[#COMMANDS + 1] = c
  BY_NAME[c.name] = c
end

-- Every flag any command knows: to tell flag values from the command name.
local ALL_FLAGS = flags.join(flags.GLOBAL, { { name = "version", kind = "bool" } })
for _, c in ipairs(COMMANDS) do ALL_FLAGS = flags.join(ALL_FLAGS, c.flags) end

-- " (did you mean send?)" for a mistyped command name, or "".
local COMMAND_NAMES = { "help" }
for _, c in ipairs(COMMANDS) do COMMAND_NAMES[#COMMAND_NAMES + 1] = c.name end
local function did_you_mean(name)
  local hint = require("ksms.errors").closest(name, COMMAND_NAMES)
  return hint and format(" (did you mean %s?)", hint) or ""
end

local function version_text()
  return format("ksms %s (%s)", require("ksms")._VERSION, jit and jit.version or _VERSION)
end

-- The context a command runs with: parsed flags, positionals, the output,
-- and open() for the provider (config loaded on first use).
local function new_ctx(out, opts, positionals)
  local ctx = { out = out, opts = opts, args = positionals }
  function ctx.load_config(self)
    if not self.conf then
      local conf, err = config.load(self.opts.config)
      if not conf then error(status.usage(err), 0) end
      self.conf = conf
      if conf.path then out:debug("config " .. conf.path) end
      local warning = config.permission_warning(conf)
      if warning then out:note(warning) end
    end
    return self.conf
  end
  function ctx.open(self)
    self.handle = provider.open(self)
    return self.handle
  end
  return ctx
end

local function usage_exit(out, command, message)
  if out.json then
    out:json_doc({ ok = false, command = command, exit_code = status.USAGE,
      error = { category = "invalid_input", code = "usage", message = message } })
  else
    out:note(format("ksms%s: %s", command and (" " .. command) or "", message))
    out:note(format("(ksms %s--help for usage)", command and (command .. " ") or ""))
  end
  return status.USAGE
end

local function run_command(out, c, opts, positionals)
  local ctx = new_ctx(out, opts, positionals)
  local ok, code = pcall(c.run, ctx)
  local h = ctx.handle
  local sent = h and h:sent() or 0
  if h then pcall(h.close, h) end
  if ok then return code end
  local err = code
  if status.is_usage(err) then return usage_exit(out, c.name, err.message) end
  if find(tostring(err), "interrupted!", 1, true) then
    out:note("ksms: interrupted" .. (sent > 0 and "; what was being sent may have been sent" or ""))
    return sent > 0 and status.UNKNOWN or status.USAGE
  end
  -- A raise from the library: a misuse found before sending, or a bug.
  local msg = provider.clean(err)
  if sent == 0 then return usage_exit(out, c.name, msg) end
  out:note("ksms " .. c.name .. ": " .. msg)
  return status.UNKNOWN
end

--- run(argv) -> exit code
function _M.run(argv)
  argv = argv or {}
  local out = output.new {}
  -- --json and --verbose anywhere shape even the usage errors.
  for _, a in ipairs(argv) do
    if a == "--json" then out.json = true elseif a == "--verbose" then out.verbose = true end
    if a == "--" then break end
  end
  local name, at = args.find_command(argv, ALL_FLAGS)
  if name == nil then
    for _, a in ipairs(argv) do
      if a == "--version" then out:line(version_text()); return status.OK end
      if a == "--help" or a == "-h" then out:line(help.tool(COMMANDS, require("ksms")._VERSION)); return status.OK end
    end
    -- A mistyped flag (--versio) is named, not answered with the whole help.
    local unknown = args.first_unknown(argv, ALL_FLAGS)
    if unknown then return usage_exit(out, nil, args.unknown_option(unknown, ALL_FLAGS)) end
    out:note(help.tool(COMMANDS, require("ksms")._VERSION))
    return status.USAGE
  end
  if name == "help" then
    local topic = argv[at + 1]
    if topic == nil then out:line(help.tool(COMMANDS, require("ksms")._VERSION)); return status.OK end
    if topic == "options" then out:line(help.options()); return status.OK end
    if BY_NAME[topic] then out:line(help.command(BY_NAME[topic])); return status.OK end
    return usage_exit(out, nil, format("no command %q%s (ksms help lists them)", topic, did_you_mean(topic)))
  end
  local c = BY_NAME[name]
  if not c then
    return usage_exit(out, nil, format("unknown command %q%s (ksms --help lists them)", name, did_you_mean(name)))
  end
  local opts, positionals = args.parse(args.without(argv, at), 1, flags.join(flags.GLOBAL, c.flags))
  if not opts then
    for _, a in ipairs(argv) do
      if a == "--help" or a == "-h" then out:line(help.command(c)); return status.OK end
    end
    return usage_exit(out, name, positionals)
  end
  if opts.help then out:line(help.command(c)); return status.OK end
  -- Secret-named flags (--api-key, --sender-key, ...) are masked from here on.
  for k, v in pairs(opts) do
    if secrets.is_secret(k) and type(v) == "string" then out:secret(v) end
  end
  out.json, out.verbose = opts.json and true or false, opts.verbose and true or false
  return run_command(out, c, opts, positionals)
end

return _M
