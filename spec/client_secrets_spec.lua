-- A server that echoes the request back into its answer must not put the
-- caller's secret into the errors a client returns (err.message, err.code,
-- tostring(err)), in any encoding the secret travels in. Real fakes over
-- 127.0.0.1; the forms are computed here, not by the masker.
local ksms = require "ksms"
local fake_control = require "fake_control"

local KEY = "sk+/live?key=ab/cd~x" -- its Base64 has '+' and '/'

local H = require "spec_helper"
local forms = H.secret_encodings -- computed by the spec, not the masker

-- No run of 8 bytes of any form is left anywhere in text.
local function assert_masked(text)
  for _, p in ipairs(H.secret_pieces(KEY)) do
    assert.is_nil(text:find(p[1], 1, true), ("%q (of %q) in:\n%s"):format(p[1], p[2], text))
  end
end

local function strings_of(t, out, seen)
  out, seen = out or {}, seen or {}
  if seen[t] then return out end
  seen[t] = true
  for k, v in pairs(t) do
    if type(v) == "string" then out[#out + 1] = tostring(k) .. "=" .. v
    elseif type(v) == "table" then strings_of(v, out, seen) end
  end
  return out
end

describe("errors a client returns, when a server echoes the secret", function()
  local senders, cafe24
  setup(function()
    senders = fake_control.start("senders", { api_key = KEY })
    cafe24 = fake_control.start("cafe24", { history_port = 0 })
  end)
  teardown(function()
    if senders then senders:stop() end
    if cafe24 then cafe24:stop() end
  end)

  -- What a server echoes: each form as it travels, once. The JSON-escaped
  -- ones are left out here because the Senders fake JSON-encodes its answer
  -- itself (they reach err.raw that way); echoing them too would make a
  -- twice-escaped text that no server sends.
  local echoed = {}
  for _, form in ipairs(forms(KEY)) do
    if not form:find("\\", 1, true) then echoed[#echoed + 1] = form end
  end
  local echo = "ECHO " .. table.concat(echoed, " ")

  it("are masked for Senders (an undocumented result holding the key)", function()
    local c = ksms.client("senders", { api_key = KEY, base_url = senders.base_url, timeout = 5 })
    senders:script { path = "/APIV2/sms_send", result = echo, times = 1 }
    local res, err = c:send { to = "01011112222", from = "0212345678", text = "hi" }
    assert.is_nil(res)
    local text = tostring(err) .. "\n" .. table.concat(strings_of(err), "\n")
    assert_masked(text)
    assert.matches("ECHO ********", text, 1, true) -- the echo did arrive
    c:close()
  end)

  it("are masked for Cafe24 (an undocumented answer, all of it the code), in send_many too", function()
    local c = ksms.client("cafe24", { user_id = "ksmstest", secure_key = KEY, base_url = cafe24.base_url,
      timeout = 5 })
    cafe24:script { path = "/sms_sender.php", body = echo, times = 2 }
    local outs = c:send_many {
      { to = "01011112222", from = "0212345678", text = "a" },
      { to = "01011113333", from = "0212345678", text = "b" },
    }
    for _, err in ipairs(outs) do
      assert.is_not_true(err.ok)
      local text = tostring(err) .. "\n" .. table.concat(strings_of(err), "\n")
      assert_masked(text)
      assert.matches("********", text, 1, true)
    end
    c:close()
  end)
end)
