-- require_tls = true: a client refuses plain http:// URLs before anything
-- is sent (the constructor raises: the URLs are the caller's
-- configuration), and works as before over https. The `ksms` command's
-- --require-tls is in spec/cli_spec.lua.
local ksms = require "ksms"
local fake_control = require "fake_control"

-- Each provider's credentials, with the documented default endpoints.
local CREDENTIALS = {
  senders = { api_key = "k" }, messageme = { api_key = "k" },
  ppurio = { client_id = "id", api_key = "k" }, cafe24 = { user_id = "u", secure_key = "k" },
}

local function with(t, extra)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

describe("require_tls", function()
  local senders, cafe24, cert
  setup(function()
    senders = fake_control.start("senders")
    cert = fake_control.make_cert()
    cafe24 = fake_control.start("cafe24", { tls = cert, history_port = 0, history_tls = true })
  end)
  teardown(function()
    fake_control.stop_all()
    fake_control.remove_cert(cert)
  end)
  before_each(function()
    senders:reset()
    cafe24:reset()
  end)

  it("refuses the plain-HTTP endpoints the providers publish, naming them", function()
    local published = {
      senders = "base_url = http://221.139.14.138", messageme = "base_url = http://221.139.14.136",
      ppurio = "base_url = http://api.apistore.co.kr", cafe24 = "history_url = http://smsapi.cafe24.com",
    }
    for name, creds in pairs(CREDENTIALS) do
      local ok, err = pcall(ksms.client, name, with(creds, { require_tls = true }))
      assert.is_false(ok, name)
      assert.matches("require_tls refuses plain HTTP (" .. published[name], err, 1, true)
      assert.matches("the API key, the message text and the phone numbers would travel in clear", err, 1, true)
      -- Without it, as before.
      ksms.client(name, creds):close()
    end
    -- Cafe24's HTTPS base with a plain history host: only the history host named.
    local ok, err = pcall(ksms.client, "cafe24", with(CREDENTIALS.cafe24, { require_tls = true,
      base_url = cafe24.base_url, history_url = "http://history.example" }))
    assert.is_false(ok)
    assert.matches("(history_url = http://history.example)", err, 1, true)
  end)

  it("raises at the caller's line, and nothing reaches the server", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local c = ksms.client("senders", { api_key = "k", base_url = senders.base_url, require_tls = true }); return c end)
    assert.is_false(ok)
    assert.matches("require_tls_spec.lua:" .. line .. ": ", err, 1, true)
    assert.same({}, senders:requests())
  end)

  it("sends over https as before", function()
    local c = ksms.client("cafe24", with(CREDENTIALS.cafe24, { user_id = "ksmstest", secure_key = "test-cafe24-key",
      base_url = cafe24.base_url, history_url = cafe24.history_url, ca_file = cert.cert, timeout = 5,
      require_tls = true }))
    local res, err = c:balance()
    assert.is_truthy(res, tostring(err))
    local hist, herr = c:history { days = 1 }
    assert.is_truthy(hist, tostring(herr))
    c:close()
    assert.equal(2, #cafe24:requests()) -- the history site is a view of the same fake
  end)

  it("takes only a boolean, and refuses OneShot, which has no TLS", function()
    assert.has_error(function()
      ksms.client("senders", { api_key = "k", base_url = "https://x.example", require_tls = "yes" })
    end, "ksms.client: require_tls must be true or false")
    local os_opts = { host = "127.0.0.1", port = 9, id = "id", password = "pw", key = ("k"):rep(16), iv = ("v"):rep(16) }
    local ok, err = pcall(ksms.client, "oneshot", with(os_opts, { require_tls = true }))
    assert.is_false(ok)
    assert.matches("require_tls cannot be met: OneShot is a TCP protocol without TLS", err, 1, true)
    -- false is accepted (and not passed to the session, which knows no such option)
    local c = ksms.client("oneshot", with(os_opts, { require_tls = false }))
    assert.is_false(c.session.bound)
  end)
end)
