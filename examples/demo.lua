-- examples/demo.lua (make demo): the main job against the bundled local
-- provider. Starts the fake Senders server (spec/fakes, a real HTTP server
-- on 127.0.0.1), sends an SMS and a long message that becomes an LMS
-- through ksms, prints what the provider answered and the balance, then
-- stops the server. No credentials needed.
package.path = "spec/?.lua;" .. package.path
local ksms = require "ksms"
local fake_control = require "fake_control"

local fake = fake_control.start("senders")
print(("fake Senders listening on %s"):format(fake.base_url))

local client = ksms.client("senders", {
  api_key = "test-senders-key", -- the fake's key
  base_url = fake.base_url,
  timeout = 5,
})

local function show(label, res, err)
  if res then
    print(("%-5s sent as %s, %d CP949 bytes, to %d recipient(s): provider code %s (%s / %s)")
      :format(label, res.kind:upper(), res.bytes, res.recipients, res.code, res.description, res.description_ko))
  else
    print(("%-5s refused: %s"):format(label, tostring(err)))
  end
end

show("short", client:send {
  from = "02-1234-5678", to = "010-1111-2222",
  text = "[ksms] 주문하신 상품이 발송되었습니다.",
})

show("long", client:send {
  from = "02-1234-5678", to = { "010-1111-2222", "010-3333-4444" },
  subject = "배송 안내",
  text = "[ksms] 안녕하세요. 주문하신 상품이 오늘 발송되었습니다. 배송 조회는 "
    .. "홈페이지의 주문 내역에서 하실 수 있습니다. 문의는 고객센터로 연락 주세요. 감사합니다.",
})

-- Refused before anything is sent: an emoji has no CP949 form.
show("emoji", client:send { from = "02-1234-5678", to = "010-1111-2222", text = "감사합니다 🙏" })

local balance, err = client:balance()
print(balance and ("balance: %d coins left"):format(balance.balance) or ("balance failed: " .. tostring(err)))
print(("the provider received %d requests"):format(#fake:requests()))

client:close()
fake:stop()
