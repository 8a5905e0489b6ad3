-- run.lua - starts one fake provider server.
--
--   lua5.4 spec/fakes/run.lua <provider> [--port N] [--host H] [--idle-exit S]
--          [--api-key K] [--balance N] [--senders a,b,c] [--state JSON]
--          [--tls-cert FILE --tls-key FILE]
--          [--history-port N] [--history-tls on|off]          (cafe24)
--          [--oneshot-port N]                                  (oneshot)
--
-- provider: senders | messageme | ppurio | cafe24. --port 0 (the default)
-- takes a free port. With --tls-cert and --tls-key the port speaks HTTPS
-- (LuaSec). Cafe24 also listens on a second port, its history site
-- (sms_list.php), plain HTTP unless --history-tls on; both ports share one
-- state. Prints "LISTENING <port>" (cafe24: "LISTENING <port> HISTORY
-- <port>") on stdout once it accepts connections, then serves until POST
-- /_fake/shutdown or --idle-exit seconds (default 300) without a request.
-- Logs go to stderr.
-- oneshot serves the OneShot TCP protocol on a second port (--oneshot-port,
-- 0 by default) and prints "LISTENING <control port> ONESHOT <tcp port>";
-- the control API stays HTTP on the first port.

-- Modules are required as fakes.<name>, from the directory above this file.
local here = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = here .. "/../?.lua;" .. package.path

local app_mod = require "fakes.app"
local json = require "fakes.json"

local PROVIDERS = { senders = "fakes.senders", messageme = "fakes.messageme",
                    ppurio = "fakes.ppurio", cafe24 = "fakes.cafe24",
                    oneshot = "fakes.oneshot" }
local HAS_HISTORY = { cafe24 = true }

local function usage(msg)
  io.stderr:write("run.lua: ", msg, "\n",
    "usage: run.lua <senders|messageme|ppurio|cafe24|oneshot> [--port N] [--host H] [--idle-exit S]",
    " [--api-key K] [--balance N] [--senders a,b] [--state JSON]",
    " [--tls-cert FILE --tls-key FILE] [--history-port N] [--history-tls on|off]\n")
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
    elseif flag == "--tls-cert" then opts.tls_cert = value
    elseif flag == "--tls-key" then opts.tls_key = value
    elseif flag == "--history-port" then opts.history_port = tonumber(value) or usage("bad --history-port")
    elseif flag == "--history-tls" then
      if value ~= "on" and value ~= "off" then usage("--history-tls takes on or off") end
      opts.history_tls = value == "on"
    elseif flag == "--oneshot-port" and opts.provider == "oneshot" then
      opts.oneshot_port = tonumber(value) or usage("bad --oneshot-port")
    elseif flag == "--state" then
      local state, err = json.decode(value)
      if type(state) ~= "table" then usage("--state: " .. tostring(err or "not an object")) end
      for k, v in pairs(state) do opts.state[k] = v end
    else
      usage("unknown option " .. flag)
    end
    i = i + 2
  end
  if (opts.tls_cert == nil) ~= (opts.tls_key == nil) then usage("--tls-cert and --tls-key go together") end
  if (opts.history_port or opts.history_tls) and not HAS_HISTORY[opts.provider] then
    usage(opts.provider .. " has no history site")
  end
  if opts.history_tls and not opts.tls_cert then usage("--history-tls on needs --tls-cert and --tls-key") end
  return opts
end

local function fail(err)
  io.stderr:write("run.lua: ", tostring(err), "\n")
  os.exit(1)
end

local opts = parse_args(arg)
if opts.provider == "oneshot" then
  if opts.tls_cert then fail("oneshot has no TLS") end
  local oneshot, err = require("fakes.oneshot").new(opts)
  if not oneshot then fail(err) end
  io.stdout:write("LISTENING ", oneshot.server.port, " ONESHOT ", oneshot.oneshot_port, "\n")
  io.stdout:flush()
  local reason = oneshot:run()
  io.stderr:write("fake oneshot on port ", oneshot.server.port, " stopped: ", reason, "\n")
  os.exit(0)
end
local provider = require(PROVIDERS[opts.provider])
local app, err = app_mod.new(provider, opts)
if not app then fail(err) end
if provider.setup then provider.setup(app) end
local listening = "LISTENING " .. app.server.port
if opts.tls_cert or HAS_HISTORY[opts.provider] then
  local listen = require "fakes.listen"
  local ctx
  if opts.tls_cert then
    ctx, err = listen.context(opts.tls_cert, opts.tls_key)
    if not ctx then fail(err) end
    listen.secure(app.server, ctx)
  end
  if HAS_HISTORY[opts.provider] then
    local port
    port, err = listen.extra(app.server, { host = opts.host, port = opts.history_port or 0,
                                           site = "history", ctx = opts.history_tls and ctx or nil })
    if not port then fail("history port: " .. tostring(err)) end
    listening = listening .. " HISTORY " .. port
  end
end
io.stdout:write(listening, "\n")
io.stdout:flush()
local reason = app:run()
io.stderr:write("fake ", opts.provider, " on port ", app.server.port, " stopped: ", reason, "\n")
os.exit(0)
