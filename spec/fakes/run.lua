-- run.lua - starts one fake provider server.
--
--   lua5.4 spec/fakes/run.lua <provider> [--port N] [--host H] [--idle-exit S]
--          [--api-key K] [--balance N] [--senders a,b,c] [--state JSON]
--
-- provider: senders | messageme. --port 0 (the default) takes a free port.
-- Prints "LISTENING <port>" on stdout once it accepts connections, then
-- serves until POST /_fake/shutdown or --idle-exit seconds (default 300)
-- without a request. Logs go to stderr.

-- Modules are required as fakes.<name>, from the directory above this file.
local here = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = here .. "/../?.lua;" .. package.path

local app_mod = require "fakes.app"
local json = require "fakes.json"

local PROVIDERS = { senders = "fakes.senders", messageme = "fakes.messageme" }

local function usage(msg)
  io.stderr:write("run.lua: ", msg, "\n",
    "usage: run.lua <senders|messageme> [--port N] [--host H] [--idle-exit S]",
    " [--api-key K] [--balance N] [--senders a,b] [--state JSON]\n")
  os.exit(2)
end

local function parse_args(argv)
  local opts = { state = {}, port = 0, idle_exit = 300 }
  opts.provider = argv[1]
  if not opts.provider or not PROVIDERS[opts.provider] then usage("unknown provider") end
  local i = 2
  while i <= #argv do
    local flag, value = argv[i], argv[i + 1]
    if value == nil then usage(flag .. " needs a value") end
    if flag == "--port" then opts.port = tonumber(value) or usage("bad port")
    elseif flag == "--host" then opts.host = value
    elseif flag == "--idle-exit" then opts.idle_exit = tonumber(value) or usage("bad --idle-exit")
    elseif flag == "--api-key" then opts.state.api_key = value
    elseif flag == "--balance" then opts.state.balance = tonumber(value) or usage("bad balance")
    elseif flag == "--senders" then
      local list = json.array()
      for n in value:gmatch("[^,]+") do list[#list + 1] = n end
      opts.state.senders = list
    elseif flag == "--state" then
      local state, err = json.decode(value)
      if type(state) ~= "table" then usage("--state: " .. tostring(err or "not an object")) end
      for k, v in pairs(state) do opts.state[k] = v end
    else
      usage("unknown option " .. flag)
    end
    i = i + 2
  end
  return opts
end

local opts = parse_args(arg)
local app, err = app_mod.new(require(PROVIDERS[opts.provider]), opts)
if not app then
  io.stderr:write("run.lua: ", tostring(err), "\n")
  os.exit(1)
end
io.stdout:write("LISTENING ", app.server.port, "\n")
io.stdout:flush()
local reason = app:run()
io.stderr:write("fake ", opts.provider, " on port ", app.server.port, " stopped: ", reason, "\n")
os.exit(0)
