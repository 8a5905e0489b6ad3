-- examples/send_senders.lua: send one SMS for real through Senders.
--
--   KSMS_SENDERS_API_KEY=... lua5.4 examples/send_senders.lua FROM TO [TEXT]
--
-- FROM must be a caller number registered with Senders. Without the
-- environment variable it only explains itself. KSMS_SENDERS_BASE_URL
-- points it elsewhere (a fake, a proxy).
local ksms = require "ksms"

local api_key = os.getenv("KSMS_SENDERS_API_KEY")
local from, to, text = arg[1], arg[2], arg[3] or "ksms 테스트 메시지입니다."
if not api_key or not from or not to then
  io.stderr:write("usage: KSMS_SENDERS_API_KEY=... lua5.4 examples/send_senders.lua FROM TO [TEXT]\n")
  os.exit(2)
end

local client = ksms.client("senders", {
  api_key = api_key,
  base_url = os.getenv("KSMS_SENDERS_BASE_URL"),
  timeout = 15,
})
local res, err = client:send { from = from, to = to, text = text }
if not res then
  io.stderr:write(tostring(err), "\n")
  if err.maybe_sent then io.stderr:write("the message may have been sent: check Senders' history before sending again\n") end
  os.exit(1)
end
print(("sent as %s (%d bytes), Senders answered %s: %s"):format(res.kind:upper(), res.bytes, res.code, res.description))
local bal = client:balance()
if bal then print(("remaining coins: %d"):format(bal.balance)) end
client:close()
