-- logger_spec.lua - the `logger` option (ksms.events.logger) of the HTTP
-- clients and the OneShot session, against the fakes: ksms's log lines go
-- to logger(level, message, fields), with secrets masked, and a logger
-- that raises never breaks a send.
local ksms = require "ksms"
local session = require "ksms.oneshot.session"
local fake_control = require "fake_control"
local H = require "spec_helper"

local KEY = "test-senders-key"
local TO, FROM = "01011112222", "0212345678"

local function collector()
  local lines = {}
  return lines, function(level, message, fields) lines[#lines + 1] = { level, message, fields } end
end

local function find(lines, event)
  for _, l in ipairs(lines) do if l[3].event == event then return l end end
end

describe("logger, HTTP providers", function()
  local fake
  setup(function() fake = fake_control.start("senders") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("is declared, and anything but a function raises", function()
    assert.equal("function", require("ksms.client").info("senders").options.logger)
    assert.has_error(function() ksms.client("senders", { api_key = KEY, logger = "stderr" }) end,
      "ksms.client(\"senders\"): logger must be a function")
  end)

  it("gets a raising hook's line, the secret masked, and a raising logger stops nothing", function()
    local lines, logger = collector()
    local c = ksms.client("senders", { api_key = KEY, base_url = fake.base_url, timeout = 5, logger = logger,
      on_event = function() error("hook saw " .. KEY) end })
    assert(c:send { to = TO, from = FROM, text = "logged" })
    c:close()
    local l = assert(find(lines, "hook_error"), "no hook_error line")
    assert.equal("error", l[1])
    assert.matches("on_event raised", l[2], 1, true)
    assert.equal("senders", l[3].provider)
    for _, form in ipairs(H.secret_encodings(KEY)) do assert.is_nil(l[2]:find(form, 1, true)) end

    local broken = ksms.client("senders", { api_key = KEY, base_url = fake.base_url, timeout = 5,
      logger = function() error("logger broke") end, on_event = function() error("hook broke") end })
    assert(broken:send { to = TO, from = FROM, text = "sent all the same" })
    broken:close()
    assert.equal(2, #fake:requests("/APIV2/sms_send"))
  end)
end)

describe("logger, OneShot session", function()
  local fake
  setup(function() fake = fake_control.start("oneshot") end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("gets callback errors and a lost connection with its reconnect", function()
    local lines, logger = collector()
    local s = session.new(fake:session_options { reconnect_delay = 0.2, logger = logger })
    assert(s:connect())
    assert(s:submit({ to = "01012345678", from = "15666639", text = "a" }, function() error("on_result broke") end))
    assert(s:flush(5))
    local l = assert(find(lines, "callback_error"), "no callback_error line")
    assert.equal("error", l[1])
    assert.matches("on_result raised", l[2], 1, true)
    assert.equal("oneshot", l[3].provider)

    fake:script { method = "MsgSendReq", fault = "close", times = 1 }
    local _, err = s:send { to = "01012345678", from = "15666639", text = "lost" }
    assert.is_true(err.maybe_sent)
    l = assert(find(lines, "disconnect"), "no disconnect line")
    assert.equal("warn", l[1])
    assert.matches("reconnecting in", l[2], 1, true)
    s:close()
  end)

  it("gets a failed connect, and a logger that raises is ignored", function()
    local lines, logger = collector()
    local opts = fake:session_options { logger = logger, connect_timeout = 1 }
    opts.port = H.free_port and H.free_port() or 1
    local s = session.new(opts)
    assert.is_nil(s:connect())
    s:close()
    local l = assert(find(lines, "connect_failed"), "no connect_failed line")
    assert.equal("warn", l[1])

    local quiet = session.new(fake:session_options { logger = function() error("logger broke") end })
    assert(quiet:connect())
    assert(quiet:submit({ to = "01012345678", from = "15666639", text = "b" }, function() error("cb") end))
    assert(quiet:flush(5))
    assert.equal("callback", quiet.last_error.code)
    quiet:close()
  end)

  it("refuses a logger that is not a function", function()
    assert.has_error(function() session.new(fake:session_options { logger = true }) end)
  end)
end)
