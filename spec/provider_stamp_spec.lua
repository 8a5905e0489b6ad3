-- Every outcome a client returns names its provider: the refusals before
-- sending (from the shared rules, which know no provider), the answers,
-- the transport failures, in send, send_many and every other call, for the
-- HTTP providers and OneShot. ksms.client stamps it in one place.
local ksms = require "ksms"
local fake_control = require "fake_control"

local FROM = "02-1234-5678"

-- Data each provider refuses before sending (nil, err), by rule.
local REFUSED = {
  bad_to = { to = "010-abc", from = FROM, text = "x" },
  bad_from = { to = "01011112222", from = "12", text = "x" },
  charset = { to = "01011112222", from = FROM, text = "😀" },
  too_long = { to = "01011112222", from = FROM, text = string.rep("가", 2000) },
  past = { to = "01011112222", from = FROM, text = "x", at = 1000 },
}

describe("the provider of every outcome", function()
  local fakes, clients = {}, {}

  setup(function()
    for _, name in ipairs { "senders", "messageme", "ppurio", "cafe24", "oneshot" } do
      fakes[name] = fake_control.start(name)
    end
    clients.senders = ksms.client("senders", { api_key = "test-senders-key", base_url = fakes.senders.base_url,
      timeout = 5 })
    clients.messageme = ksms.client("messageme", { api_key = "test-messageme-key",
      base_url = fakes.messageme.base_url, timeout = 5 })
    clients.ppurio = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key",
      base_url = fakes.ppurio.base_url, timeout = 5 })
    clients.cafe24 = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key",
      base_url = fakes.cafe24.base_url, timeout = 5 })
  end)
  teardown(function()
    for _, c in pairs(clients) do c:close() end
    fake_control.stop_all()
  end)

  it("is stamped on refusals before sending, in send and send_many", function()
    for name, c in pairs(clients) do
      local list = {}
      for rule, msg in pairs(REFUSED) do
        local res, err = c:send(msg)
        assert.is_nil(res, name .. " " .. rule)
        assert.equal(name, err.provider, name .. " " .. rule .. ": " .. tostring(err))
        list[#list + 1] = msg
      end
      for i, out in ipairs(c:send_many(list)) do
        assert.is_false(out.ok == true, name .. " " .. i)
        assert.equal(name, out.provider, name .. " " .. i .. ": " .. tostring(out))
      end
    end
  end)

  it("is stamped on the other calls' refusals and on results", function()
    local p, c, m = clients.ppurio, clients.cafe24, clients.messageme
    local _, err = p:register_sender("02-12", "office")
    assert.equal("ppurio", err.provider, tostring(err))
    _, err = p:register_sender("02-abc", "office")
    assert.equal("ppurio", err.provider, tostring(err))
    _, err = p:sender_numbers("02-abc")
    assert.equal("ppurio", err.provider, tostring(err))
    _, err = c:sender_numbers("02-abc")
    assert.equal("cafe24", err.provider, tostring(err))
    _, err = c:history { to = "010-abc" }
    assert.equal("cafe24", err.provider, tostring(err))
    _, err = c:history { date = { year = 2024, month = 2, day = 30 } }
    assert.equal("cafe24", err.provider, tostring(err))
    _, err = c:send { names = { { "010-abc", "홍길동" } }, from = FROM, text = "x" }
    assert.equal("cafe24", err.provider, tostring(err))
    _, err = c:send { names = { { "01011112222", "😀" } }, from = FROM, text = "x" }
    assert.equal("cafe24", err.provider, tostring(err))
    _, err = p:send { to = "01011112222", from = FROM, text = "x", from_name = "😀" }
    assert.equal("ppurio", err.provider, tostring(err))
    local at = { template = "T1", to = "01011112222", from = FROM }
    _, err = m:alimtalk { template = "T1", to = "010-abc", from = FROM }
    assert.equal("messageme", err.provider, tostring(err))
    _, err = m:alimtalk { template = "T1", to = "01011112222", from = FROM, at = 1000 }
    assert.equal("messageme", err.provider, tostring(err))
    at.fallback, at.variables = true, { "😀" }
    _, err = m:alimtalk(at)
    assert.equal("messageme", err.provider, tostring(err))
    local ft = { channel = "@shop", text = "😀", to = "01011112222", from = FROM, fallback = true }
    _, err = m:friendtalk(ft)
    assert.equal("messageme", err.provider, tostring(err))
    _, err = m:friendtalk { channel = "@shop", text = "x", to = "01011112222", from = FROM,
      button = { name = "go", url = "nope" } }
    assert.equal("messageme", err.provider, tostring(err))
    _, err = m:friendtalk { channel = "@shop", text = "x", to = "01011112222", from = FROM, image = "nope" }
    assert.equal("messageme", err.provider, tostring(err))
    _, err = m:friendtalk { channel = "@shop", text = "x", to = "01011112222", from = FROM,
      image = "http://x/a.jpg", image_link = "nope" }
    assert.equal("messageme", err.provider, tostring(err))
    for name, cl in pairs(clients) do
      local res, rerr = cl:send { to = "01011112222", from = FROM, text = "ksms" }
      assert.is_truthy(res, name .. ": " .. tostring(rerr))
      assert.equal(name, res.provider)
    end
  end)

  it("is stamped on transport failures", function()
    local c = ksms.client("senders", { api_key = "k", base_url = "http://127.0.0.1:1", timeout = 2 })
    local _, err = c:send { to = "01011112222", from = FROM, text = "x" }
    assert.equal("senders", err.provider, tostring(err))
    c:close()
  end)

  it("is stamped on OneShot refusals", function()
    local c = ksms.client("oneshot", fakes.oneshot:session_options { reconnect_delay = 0.2 })
    for rule, msg in pairs(REFUSED) do
      if rule ~= "past" then -- OneShot has no reservations (raises)
        local res, err = c:send(msg)
        assert.is_nil(res, rule)
        assert.equal("oneshot", err.provider, rule .. ": " .. tostring(err))
        local out = c:send_many({ msg })[1]
        assert.equal("oneshot", out.provider, rule .. ": " .. tostring(out))
      end
    end
    local res, err = c:send { to = "01011112222", from = "15666639", text = "ksms" }
    assert.is_truthy(res, tostring(err))
    assert.equal("oneshot", res.provider)
    c:close()
  end)
end)
