-- Strict options: an option no one reads raises where it is given, naming
-- it, the closest known name and every option that exists, for every HTTP
-- provider, the OneShot session, ksms.client("oneshot") and the nginx
-- binder; the CLI turns one into a usage error (exit 2). A typo must never
-- fall back to a default: `baseurl` used to send to the real provider.
local ksms = require "ksms"
local fake_control = require "fake_control"
local nginx_control = require "nginx_control"
local socket = require "socket"
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local BUILD = os.getenv("KSMS_TEST_BUILD") or ("build/" .. LUA)

local CREDENTIALS = {
  senders = { api_key = "test-senders-key" },
  messageme = { api_key = "test-messageme-key" },
  ppurio = { client_id = "ksmstest", api_key = "test-ppurio-key" },
  cafe24 = { user_id = "ksmstest", secure_key = "test-cafe24-key" },
}

-- Options each provider's own configure reads, beside the client's.
local OWN = {
  senders = { "api_key", "base_url", "recipient_separator", "variable_separator", "reserve_format" },
  messageme = { "api_key", "base_url", "recipient_separator", "variable_separator", "reserve_format" },
  ppurio = { "client_id", "api_key", "base_url" },
  cafe24 = { "user_id", "secure_key", "base_url", "history_url", "test", "nointeractive" },
}
local COMMON = { "timeout", "connect_timeout", "transport", "concurrency", "now", "insecure", "ca_file",
  "require_tls", "max_recipients_per_request" }

local function with(t, extra)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The option list of a message ("...; the options are: a, b, c").
local function listed(msg)
  local list = assert(msg:match("the options are: ([%w_, ]+)$"), msg)
  local set = {}
  for name in list:gmatch("[%w_]+") do set[name] = true end
  return set
end

describe("unknown client options", function()
  local senders

  setup(function() senders = fake_control.start("senders") end)
  teardown(function() senders:stop() end)

  it("raise for every HTTP provider, naming the option, a close name and the options that exist", function()
    for name, creds in pairs(CREDENTIALS) do
      local ok, err = pcall(ksms.client, name, with(creds, { baseurl = "http://127.0.0.1:1" }))
      assert.is_false(ok, name)
      assert.matches(("ksms.client(%q): unknown option 'baseurl' (did you mean base_url?)"):format(name), err, 1, true)
      local names = listed(err)
      for _, k in ipairs(OWN[name]) do assert.is_true(names[k], name .. " lists " .. k) end
      for _, k in ipairs(COMMON) do assert.is_true(names[k], name .. " lists " .. k) end
      -- Only what the provider takes: another provider's credential is not offered.
      assert.is_nil(names[name == "cafe24" and "api_key" or "secure_key"], name)
      -- Every option listed is accepted.
      local all = with(creds)
      for k in pairs(names) do
        if all[k] == nil then
          local given = { transport = "curl", now = os.time, ad = { name = "ksms", opt_out = "0801234567" }, on_event = function() end, logger = function() end, require_tls = false, insecure = false, test = false,
            nointeractive = true, ca_file = "/etc/ssl/certs/ca-certificates.crt", reserve_format = "YYYY|MM|DD|hh|mm|ss" }
          if given[k] ~= nil then all[k] = given[k]
          else all[k] = (k:find("url$") and "http://127.0.0.1:1") or (k:find("separator$") and "|") or 5 end
        end
      end
      ksms.client(name, all):close()
    end
  end)

  it("raise at the caller's line, and nothing is sent", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local c = ksms.client("senders", { api_key = "k", baseurl = senders.base_url }); return c end)
    assert.is_false(ok)
    assert.matches("options_spec.lua:" .. line .. ": ", err, 1, true)
    ok, err = pcall(function() local c = require("ksms.client").new("senders", { api_key = "k", Base_Url = "x" }); return c end)
    assert.is_false(ok)
    assert.matches("options_spec.lua:" .. (line + 3) .. ": .*did you mean base_url%?", err)
    assert.same({}, senders:requests())
  end)

  it("name no close option when there is none", function()
    local ok, err = pcall(ksms.client, "ppurio", with(CREDENTIALS.ppurio, { zzzzzzzz = 1 }))
    assert.is_false(ok)
    assert.matches("unknown option 'zzzzzzzz'; the options are: ", err, 1, true)
  end)
end)

describe("unknown OneShot options", function()
  local base = { host = "127.0.0.1", port = 1, id = "test001", password = "pw", key = "ksms-oneshot-key",
    iv = "ksms-oneshot-iv!" }

  it("raise in ksms.oneshot.session.new and ksms.client(\"oneshot\") with every option listed", function()
    local session = require "ksms.oneshot.session"
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local s = session.new(with(base, { writetimeout = 3 })); return s end)
    assert.is_false(ok)
    assert.matches("options_spec.lua:" .. line .. ": ", err, 1, true)
    assert.matches("ksms.oneshot.session: unknown option 'writetimeout' (did you mean write_timeout?)", err, 1, true)
    local names = listed(err)
    -- the session's own and the protocol's
    for _, k in ipairs { "host", "port", "reconnect_delay", "write_timeout", "auto_reconnect", "on_report",
      "id", "password", "key", "iv", "keepalive_interval", "queue_limit", "resend_unanswered" } do
      assert.is_true(names[k], k)
    end
    ok, err = pcall(ksms.client, "oneshot", with(base, { reconect_delay = 1 }))
    assert.is_false(ok)
    assert.matches("unknown option 'reconect_delay' (did you mean reconnect_delay?)", err, 1, true)
    -- What the session knows still works, and nothing connects before use.
    local c = ksms.client("oneshot", with(base, { reconnect_delay = 1, write_timeout = 2, queue_limit = 5 }))
    c:close()
  end)
end)

describe("unknown options in the CLI", function()
  local function run(args)
    local cmd = ("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s bin/ksms %s 2>&1; echo \"::$?\"")
      :format(BUILD, LUA, args)
    local p = assert(io.popen(cmd))
    local all = p:read("*a")
    p:close()
    local out, code = all:match("^(.*)::(%d+)%s*$")
    return out, tonumber(code)
  end

  it("are a usage error (exit 2), not a traceback", function()
    for _, args in ipairs {
      "balance --provider senders --opt api_key=k --opt baseurl=http://127.0.0.1:1",
      "send --provider oneshot --opt host=127.0.0.1 --opt port=1 --opt writetimeout=3 --to 01011112222 --from 0212345678 --text hi",
    } do
      local out, code = run(args)
      assert.equal(2, code, out)
      assert.matches("takes no option", out, 1, true)
      assert.is_nil(out:find("traceback", 1, true), out)
    end
  end)
end)

describe("unknown options of the nginx binder", function()
  local ok_nginx, why = nginx_control.available()

  it("raise in ksms.ngx.oneshot.start, naming the option and what exists", function()
    if not ok_nginx then pending(why); return end
    local nginx = nginx_control.start { ksms = true, workers = 1, http = "lua_shared_dict ksms_oneshot 1m;",
      locations = [[
    location = /start {
      content_by_lua_block {
        local ok, err = pcall(require("ksms.ngx.oneshot").start, { dict = "ksms_oneshot", host = "127.0.0.1",
          port = 1, id = "x", password = "p", key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!",
          lockttl = 10 })
        ngx.print(ok and "started" or tostring(err))
      }
    }
]] }
    local port = nginx.port
    local c = assert(socket.tcp())
    c:settimeout(10)
    assert(c:connect("127.0.0.1", port))
    assert(c:send("GET /start HTTP/1.0\r\nHost: x\r\n\r\n"))
    local data, _, partial = c:receive("*a")
    c:close()
    nginx:stop()
    local body = assert((data or partial):match("\r\n\r\n(.*)$"))
    assert.matches("ksms.ngx.oneshot.start: unknown option 'lockttl' (did you mean lock_ttl?)", body, 1, true)
    local names = listed(body)
    for _, k in ipairs { "dict", "lock_ttl", "drain_timeout", "host", "write_timeout", "read_timeout",
      "outside_window", "keepalive_interval", "queue_limit" } do
      assert.is_true(names[k], k)
    end
    -- set by the binder itself, not the caller's
    assert.is_nil(names.on_sending)
  end)
end)
