-- One shape for every result-code table (ksms.codes) and one policy for a
-- code no table lists, on a send: category "unknown", maybe_sent = true,
-- retryable = false, for every HTTP adapter and for OneShot alike (each
-- against its fake answering an arbitrary code).
local ksms = require "ksms"
local codes = require "ksms.codes"
local fake_control = require "fake_control"

local FROM = "02-1234-5678"
local MSG = { to = "01011112222", from = FROM, text = "ksms" }

local function undocumented(err, what)
  assert.is_table(err, what)
  assert.equal("unknown", err.category, what .. ": " .. tostring(err))
  assert.is_true(err.maybe_sent, what .. ": " .. tostring(err))
  assert.is_false(err.retryable, what)
end

describe("result-code tables", function()
  it("have one shape: category, en, ko, retryable (ok entries: category ok)", function()
    local cats = require("ksms.errors").categories
    local tables = {
      ppurio_result = require("ksms.providers.ppurio_codes").result,
      ppurio_register = require("ksms.providers.ppurio_codes").register,
      ppurio_report = require("ksms.providers.ppurio_codes").report,
      cafe24_sms = require("ksms.providers.cafe24_codes").sms,
      cafe24_lms = require("ksms.providers.cafe24_codes").lms,
      senders = require("ksms.providers.senders").codes,
      messageme = require("ksms.providers.messageme").codes,
      oneshot_login = require("ksms.oneshot.codes").login,
      oneshot_send = require("ksms.oneshot.codes").send,
    }
    for name, t in pairs(tables) do
      local n, oks = 0, 0
      for code, e in pairs(t) do
        local what = name .. " " .. tostring(code)
        n = n + 1
        assert.is_string(e.en, what); assert.is_string(e.ko, what)
        if e.ok then
          oks = oks + 1
          assert.equal("ok", e.category, what)
        else
          assert.is_true(cats[e.category] == true, what)
          assert.is_boolean(e.retryable, what)
        end
        for k in pairs(e) do
          assert.is_true(k == "ok" or k == "category" or k == "en" or k == "ko" or k == "retryable", what .. " " .. k)
        end
      end
      assert.is_true(n > 0 and oks > 0, name)
    end
  end)

  it("are read by one lookup, whatever form the code came in", function()
    local t = { ["200"] = codes.ok("OK"), [7] = codes.fail("recipient", "x", "y") }
    assert.equal(t["200"], (codes.lookup(t, "200")))
    assert.equal(t["200"], (codes.lookup(t, 200.0)))
    assert.equal(t[7], (codes.lookup(t, "7")))
    assert.equal(t[7], (codes.lookup(t, 7.0)))
    assert.is_nil((codes.lookup(t, "007")))
    assert.is_nil((codes.lookup(t, 7.5)))
    assert.is_nil((codes.lookup(t, {})))
    assert.has_error(function() codes.fail("nope", "x", "y") end)
  end)

  it("give a documented failure maybe_sent = false and nil for success", function()
    local oc = require "ksms.oneshot.codes"
    assert.is_nil(oc.error(oc.send, 0))
    local err = oc.error(oc.send, 320, { user_msg_id = "u1" })
    assert.equal("duplicate", err.category)
    assert.is_false(err.maybe_sent)
    assert.equal("u1", err.user_msg_id)
    assert.equal("oneshot", err.provider)
    assert.matches("duplicate send (중복발송 에러)", err.message, 1, true)
    assert.equal("unknown", oc.describe(oc.send, 4242).category)
    assert.equal("duplicate", oc.describe(oc.send, "320").category)
    -- A bind answer is not a send: nothing may have been accepted.
    assert.is_false(oc.error(oc.login, 4242).maybe_sent)
    undocumented(oc.error(oc.send, 4242), "oneshot send table")
  end)
end)

describe("an undocumented result code on a send", function()
  local fakes = {}
  setup(function()
    for _, name in ipairs { "senders", "messageme", "ppurio", "cafe24", "oneshot" } do
      fakes[name] = fake_control.start(name)
    end
  end)
  teardown(function() fake_control.stop_all() end)

  local function client(name)
    local f = fakes[name]
    if name == "senders" then return ksms.client(name, { api_key = "test-senders-key", base_url = f.base_url, timeout = 5 }) end
    if name == "messageme" then
      return ksms.client(name, { api_key = "test-messageme-key", base_url = f.base_url, timeout = 5 })
    end
    if name == "ppurio" then
      return ksms.client(name, { client_id = "ksmstest", api_key = "test-ppurio-key", base_url = f.base_url, timeout = 5 })
    end
    return ksms.client(name, { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = f.base_url, timeout = 5 })
  end

  for _, name in ipairs { "senders", "messageme", "ppurio", "cafe24" } do
    it("is unknown and maybe sent: " .. name .. " send and send_many", function()
      local c = client(name)
      fakes[name]:reset()
      fakes[name]:script { result = "4242" }
      local res, err = c:send(MSG)
      assert.is_nil(res)
      undocumented(err, name .. " send")
      assert.equal(name, err.provider)
      assert.equal("4242", err.code)
      local outs = c:send_many { MSG, MSG }
      undocumented(outs[1], name .. " send_many 1")
      undocumented(outs[2], name .. " send_many 2")
      fakes[name]:reset()
      c:close()
    end)
  end

  it("is unknown and maybe sent: messageme alimtalk and friendtalk", function()
    local c = client("messageme")
    fakes.messageme:reset()
    fakes.messageme:script { result = "4242" }
    local _, err = c:alimtalk { template = "WELCOME_01", variables = { "홍길동" }, to = "01011112222", from = FROM }
    undocumented(err, "alimtalk")
    _, err = c:friendtalk { channel = "@ksms", text = "hi", to = "01011112222", from = FROM }
    undocumented(err, "friendtalk")
    fakes.messageme:reset()
    c:close()
  end)

  it("is unknown and maybe sent: OneShot MsgSendRes", function()
    local c = ksms.client("oneshot", fakes.oneshot:session_options { reconnect_delay = 0.2 })
    fakes.oneshot:script { method = "MsgSendReq", result = 4242, times = 2 }
    local res, err = c:send { to = "01011112222", from = "15666639", text = "ksms" }
    assert.is_nil(res)
    undocumented(err, "oneshot send")
    assert.equal(4242, err.code)
    assert.equal("oneshot", err.provider)
    local out = c:send_many({ { to = "01011112222", from = "15666639", text = "ksms" } })[1]
    undocumented(out, "oneshot send_many")
    c:close()
  end)
end)
