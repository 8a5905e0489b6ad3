-- HTTP stress for valgrind (make valgrind): the libcurl transport and the
-- client through success, provider refusals, faults, timeouts, many at once
-- and close, against the fake Senders server; then a full collect and
-- lua_close. The fake runs outside valgrind (no --trace-children).
package.path = "spec/?.lua;" .. package.path
local ksms = require "ksms"
local fake_control = require "fake_control"

local ROUNDS = tonumber(os.getenv("STRESS_ROUNDS") or "") or 20
local fake = fake_control.start("senders")
local ok, err = pcall(function()
  for round = 1, ROUNDS do
    local client = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url, timeout = 2 })
    assert(client:send { to = "010-1111-2222", from = "0212345678", text = "stress " .. round })
    assert(client:balance())
    fake:script { path = "/APIV2/sms_send", result = "315", times = 1 }
    assert(not client:send { to = "01011112222", from = "0212345678", text = "x" })
    for _, fault in ipairs({ "half", "close", "garbage" }) do
      fake:script { path = "/APIV2/sms_send", fault = fault, times = 1 }
      local res, e = client:send { to = "01011112222", from = "0212345678", text = "x" }
      assert(not res and e.maybe_sent, fault)
    end
    if round % 5 == 0 then
      fake:script { path = "/APIV2/sms_send", latency_ms = 3000, times = 1 }
      local slow = ksms.client("senders", { api_key = "test-senders-key", base_url = fake.base_url, timeout = 0.3 })
      local res, e = slow:send { to = "01011112222", from = "0212345678", text = "x" }
      assert(not res and e.category == "timeout")
      slow:close()
    end
    local msgs = {}
    for i = 1, 30 do msgs[i] = { to = ("010%08d"):format(round * 100 + i), from = "0212345678", text = "m" .. i } end
    local outs = client:send_many(msgs, { concurrency = 8 })
    assert(#outs == 30 and outs[30].ok)
    local res = assert(client.transport:request { url = fake.base_url .. "/APIV2/remainCoin", method = "POST",
      multipart = { { name = "api_key", value = "test-senders-key" }, { name = "f", data = ("x"):rep(1000), filename = "a.jpg" } } })
    assert(res.headers and res.status)
    if round % 2 == 0 then client:close() end -- the rest are left to __gc
  end
end)
fake:stop()
if not ok then error(err, 0) end
collectgarbage()
collectgarbage()
print("http stress: " .. ROUNDS .. " rounds ok")
