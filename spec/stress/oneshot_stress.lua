-- OneShot stress for valgrind (make valgrind): the TCP client, AES, frames
-- and the session through binds, sends, pushed reports, a dropped
-- connection and reconnects, against the fake OneShot server (which runs
-- outside valgrind).
package.path = "spec/?.lua;" .. package.path
local session = require "ksms.oneshot.session"
local fake_control = require "fake_control"

local ROUNDS = tonumber(os.getenv("STRESS_ROUNDS") or "") or 5
local fake = fake_control.start("oneshot", { state = { speed = 200, report_delay_ms = 5 } })
local ok, err = pcall(function()
  for round = 1, ROUNDS do
    local reports = 0
    local s = session.new { host = "127.0.0.1", port = fake.oneshot_port, id = "test001",
      password = "test001#$$%", key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!",
      reconnect_delay = 0.05, on_report = function() reports = reports + 1 end }
    assert(s:connect())
    if round % 2 == 0 then fake:script { method = "MsgSendReq", fault = "close", times = 1 } end
    local outcomes = 0
    for i = 1, 40 do
      assert(s:submit({ to = "01012345678", from = "15666639", text = ("라운드 %d 메시지 %d"):format(round, i) },
        function() outcomes = outcomes + 1 end))
    end
    assert(s:flush(20))
    assert(outcomes == 40, "outcomes " .. outcomes)
    s:poll(0.1)
    s:close()
  end
  local bad = session.new { host = "127.0.0.1", port = fake.oneshot_port, id = "test001", password = "no",
    key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!" }
  assert(not bad:connect(2))
  bad:close()
end)
fake:stop()
if not ok then error(err, 0) end
collectgarbage()
collectgarbage()
print("oneshot stress: " .. ROUNDS .. " rounds ok")
