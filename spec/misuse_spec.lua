-- Misuse raises at the caller's line: an error for a bad argument names
-- this file and the line of the call, not a line inside lua/ksms/, however
-- deep the check sits (message.lua, an adapter, the OneShot protocol).
-- Each case is one call on the line of its own function literal (never a
-- tail call, which would drop this file's frame).
local ksms = require "ksms"
local fake_control = require "fake_control"

-- Calls fn, which must raise; the message must contain `want` and name this
-- file at the line where fn is written.
local function raises_here(fn, want)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert.is_false(ok, "did not raise: " .. want)
  err = tostring(err)
  assert.matches(want, err, 1, true)
  assert.matches("^[^:]*misuse_spec%.lua:" .. line .. ": ", err)
  return err
end

local FROM = "02-1234-5678"

describe("misuse on an HTTP client", function()
  local senders, messageme, ppurio, cafe24
  local s, m, p, c

  setup(function()
    senders, messageme = fake_control.start("senders"), fake_control.start("messageme")
    ppurio, cafe24 = fake_control.start("ppurio"), fake_control.start("cafe24")
    s = ksms.client("senders", { api_key = "test-senders-key", base_url = senders.base_url, timeout = 5 })
    m = ksms.client("messageme", { api_key = "test-messageme-key", base_url = messageme.base_url, timeout = 5 })
    p = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key", base_url = ppurio.base_url,
      timeout = 5 })
    c = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = cafe24.base_url,
      timeout = 5 })
  end)
  teardown(function()
    for _, x in ipairs { s, m, p, c } do x:close() end
    fake_control.stop_all()
  end)

  it("send: names the caller's line for every check", function()
    for _, cl in ipairs { s, m, p, c } do
      raises_here(function() local _ = cl:send("hi") end, "send needs a message table")
      raises_here(function() local _ = cl:send { to = "01011112222", from = FROM, text = "x", bogus = 1 } end,
        "unknown field 'bogus' in send")
      raises_here(function() local _ = cl:send { to = "01011112222", from = FROM } end, "send needs 'text'")
      raises_here(function() local _ = cl:send { from = FROM, text = "x" } end, "send needs 'to'")
      raises_here(function() local _ = cl:send { to = {}, from = FROM, text = "x" } end, "send needs 'to'")
      raises_here(function() local _ = cl:send { to = "01011112222", text = "x" } end, "send needs 'from'")
      raises_here(function() local _ = cl:send { to = "01011112222", from = FROM, text = "x", subject = 1 } end,
        "'subject' must be a string")
    end
    -- provider checks reached through the shared message checks
    raises_here(function() local _ = s:send { to = "01011112222", from = FROM, text = "x", image = 1 } end,
      "'image' is the URL of a JPEG")
    raises_here(function() local _ = p:send { to = "01011112222", from = FROM, text = "x", image = 1 } end,
      "ppurio 'image' is a file path")
    raises_here(function() local _ = p:send { to = "01011112222", from = FROM, text = "x", from_name = 1 } end,
      "'from_name' must be a string")
    raises_here(function() local _ = c:send { from = FROM, text = "x", names = { { "01011112222", 2 } } } end,
      "cafe24 'names' entries are { number, name }")
    raises_here(function() local _ = c:send { to = "01011112222", from = FROM, text = "x", image = "a.jpg" } end,
      "does not send images")
    assert.same({}, senders:requests())
  end)

  it("send_many: names the caller's line, and nothing is sent", function()
    local good = { to = "01011112222", from = FROM, text = "x" }
    raises_here(function() local _ = s:send_many("x") end, "send_many needs a list of messages")
    raises_here(function() local _ = s:send_many({ good }, { concurrency = 0 }) end, "concurrency must be")
    raises_here(function() local _ = s:send_many { good, { to = "01011112222", from = FROM } } end, "send needs 'text'")
    raises_here(function() local _ = s:send_many { good, { from = FROM, text = "x" } } end, "send needs 'to'")
    raises_here(function() local _ = s:send_many { good, { to = "01011112222", text = "x" } } end, "send needs 'from'")
    raises_here(function() local _ = m:send_many { good, { to = "01011112222", from = FROM, text = "x", image = true } } end,
      "'image' is the URL of a JPEG")
    assert.same({}, senders:requests())
    assert.same({}, messageme:requests())
  end)

  it("a number as 'to' says that a number loses the leading 0", function()
    for _, cl in ipairs { s, m, p, c } do
      raises_here(function() local _ = cl:send { to = 01011112222, from = FROM, text = "x" } end,
        "phone numbers must be strings (a number loses the leading 0)")
      raises_here(function() local _ = cl:send { to = { 01011112222 }, from = FROM, text = "x" } end,
        "phone numbers must be strings (a number loses the leading 0)")
    end
    raises_here(function() local _ = m:alimtalk { template = "T1", to = 01011112222, from = FROM } end,
      "phone numbers must be strings (a number loses the leading 0)")
    raises_here(function() local _ = s:send { to = true, from = FROM, text = "x" } end, "send needs 'to'")
  end)

  it("alimtalk and friendtalk: name the caller's line", function()
    local at = { template = "T1", to = "01011112222", from = FROM }
    local function with(t, extra)
      local o = {}
      for k, v in pairs(t) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      return o
    end
    raises_here(function() local _ = m:alimtalk("x") end, "alimtalk needs a message table")
    raises_here(function() local _ = m:alimtalk { to = "01011112222", from = FROM } end, "alimtalk needs 'template'")
    raises_here(function() local _ = m:alimtalk(with(at, { bogus = 1 })) end, "unknown field 'bogus' in alimtalk")
    raises_here(function() local _ = m:alimtalk { template = "T1", from = FROM } end, "alimtalk needs 'to'")
    raises_here(function() local _ = m:alimtalk { template = "T1", to = "01011112222" } end, "alimtalk needs 'from'")
    raises_here(function() local _ = m:alimtalk(with(at, { fallback = "yes" })) end, "'fallback' must be a boolean")
    raises_here(function() local _ = m:alimtalk(with(at, { variables = "x" })) end, "'variables' must be a list")
    raises_here(function() local _ = m:alimtalk(with(at, { variables = { {} } })) end, "variable 1 must be a string")
    local ft = { channel = "@shop", text = "hi", to = "01011112222", from = FROM }
    raises_here(function() local _ = m:friendtalk("x") end, "friendtalk needs a message table")
    raises_here(function() local _ = m:friendtalk { text = "hi", to = "01011112222", from = FROM } end,
      "friendtalk needs 'channel'")
    raises_here(function() local _ = m:friendtalk { channel = "@shop", to = "01011112222", from = FROM } end,
      "friendtalk needs 'text'")
    raises_here(function() local _ = m:friendtalk { channel = "@shop", text = "hi", from = FROM } end,
      "friendtalk needs 'to'")
    raises_here(function() local _ = m:friendtalk(with(ft, { button = "x" })) end, "'button' must be")
    raises_here(function() local _ = m:friendtalk(with(ft, { image = 1 })) end, "'image' is the URL of a JPEG")
    raises_here(function() local _ = m:friendtalk(with(ft, { image = "http://x/a.jpg", image_link = 1 })) end,
      "'image_link_url' must be a string URL")
    -- a provider without it
    raises_here(function() local _ = s:alimtalk(at) end, "senders does not support alimtalk")
    raises_here(function() local _ = s:friendtalk(ft) end, "senders does not support friendtalk")
    assert.same({}, messageme:requests())
  end)
end)

describe("misuse on the OneShot client", function()
  local fake, client

  setup(function()
    fake = fake_control.start("oneshot")
    client = ksms.client("oneshot", fake:session_options { reconnect_delay = 0.2 })
  end)
  teardown(function()
    client:close()
    fake:stop()
  end)

  it("send and send_many name the caller's line", function()
    local good = { to = "01011112222", from = "15666639", text = "x" }
    raises_here(function() local _ = client:send("x") end, "send needs a message table")
    raises_here(function() local _ = client:send { to = "01011112222", from = "15666639", text = "x", at = 1 } end,
      "OneShot has no reservations")
    raises_here(function() local _ = client:send { to = "01011112222", from = "15666639", text = "x", bogus = 1 } end,
      "unknown field 'bogus'")
    raises_here(function() local _ = client:send { to = "01011112222", from = "15666639" } end, "needs 'text'")
    raises_here(function() local _ = client:send { to = { "01011112222" }, from = "15666639" } end, "needs 'text'")
    raises_here(function() local _ = client:send { to = "01011112222", from = "15666639", text = "x", kind = "fax" } end,
      "unknown kind 'fax'")
    raises_here(function() local _ = client:alimtalk { to = "01011112222", from = "15666639", text = "x", kakao = 1 } end,
      "'kakao' must be a table")
    raises_here(function() local _ = client:send_many("x") end, "send_many needs a list of messages")
    raises_here(function() local _ = client:send_many { { to = "01011112222", text = "x" } } end, "needs 'from'")
    -- A good message still goes.
    local res, err = client:send(good)
    assert.is_truthy(res, tostring(err))
  end)
end)
