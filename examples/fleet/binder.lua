-- examples/fleet/binder.lua: one member of a OneShot fleet, as a process.
-- Every machine (or process) runs it for the account; one holds the bound
-- connection and sends the account's outbox, the others stand by.
--
--   lua5.4 examples/fleet/binder.lua CONFIG.json [NAME]
--
-- CONFIG.json holds ksms.oneshot.fleet.run's options (redis, account, host,
-- port, id, key, iv, lock_ttl, ...). The password comes from the
-- environment (KSMS_ONESHOT_PASSWORD), never from the file or the command
-- line, where `ps` would show it. One line per event on stdout
-- ("<name> hold", "<name> leave: lost", ...) and a summary line when
-- SIGINT or SIGTERM stops it: "<name> done sent=N failed=N maybe_sent=N
-- expired=N holds=N lost=N".
local cjson = require "cjson"
local fleet = require "ksms.oneshot.fleet"

local path, name = arg[1], arg[2] or ("binder-" .. tostring(require("ksms.core").getpid()))
if not path then
  io.stderr:write("usage: binder.lua CONFIG.json [NAME]\n")
  os.exit(2)
end
local f = assert(io.open(path, "rb"))
local opts = cjson.decode(f:read("*a"))
f:close()
opts.password = opts.password or os.getenv("KSMS_ONESHOT_PASSWORD")

io.stdout:setvbuf("line")
opts.logger = function(level, message, fields)
  local ev = fields and fields.event
  if ev == "hold" or ev == "leave" or level ~= "info" then
    io.stdout:write(name, " ", ev or level, ": ", message, "\n")
  end
end

local summary, stats = fleet.run(opts)
if not summary then
  io.stderr:write(name, ": ", tostring(stats), "\n")
  os.exit(1)
end
io.stdout:write(("%s done sent=%d failed=%d maybe_sent=%d expired=%d holds=%d lost=%d binds=%d reports=%d\n"):format(
  name, summary.sent, summary.failed, summary.maybe_sent, summary.expired, stats.holds, stats.lost, stats.binds,
  stats.reports))
