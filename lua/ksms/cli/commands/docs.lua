-- ksms completion bash|zsh, ksms man: generated from the --help tables
-- (ksms.cli.docs).

local status = require "ksms.cli.status"
local docs = require "ksms.cli.docs"

local error, require = error, require

local _M = { _VERSION = "0.1.0" }

local function all() return require("ksms.cli.main").commands end

local function run_completion(ctx)
  local shell = ctx.args[1]
  if shell == "bash" then ctx.out:write(ctx.out.stdout, docs.bash(all()))
  elseif shell == "zsh" then ctx.out:write(ctx.out.stdout, docs.zsh(all()))
  else error(status.usage("give the shell: ksms completion bash | zsh"), 0) end
  return status.OK
end

local function run_man(ctx)
  ctx.out:write(ctx.out.stdout, docs.man(all(), require("ksms")._VERSION))
  return status.OK
end

_M.commands = {
  {
    name = "completion", summary = "print the bash or zsh completion script",
    usage = "ksms completion bash | zsh", flags = {}, offline = true,
    examples = { "source <(ksms completion bash)", "ksms completion zsh > ~/.zfunc/_ksms" },
    run = run_completion,
  },
  {
    name = "man", summary = "print the manual page (roff)",
    usage = "ksms man", flags = {}, offline = true,
    examples = { "ksms man | man -l -" },
    run = run_man,
  },
}

return _M
