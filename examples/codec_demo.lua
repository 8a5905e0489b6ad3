-- examples/codec_demo.lua: what ksms does with a Korean message before
-- any provider sees it. Offline: no server, no credentials.
--   * counts its bytes the way the providers do (CP949: Hangul 2, ASCII 1)
--   * names the characters a provider's charset cannot carry
--   * builds the OneShot wire frame of the document's example message and
--     decodes it back, byte for byte
local ksms = require "ksms"
local codec = require "ksms.oneshot.codec"
local core = ksms.core

local texts = {
  "SMS 테스트 메시지 ",
  "됬다! 이모지도 😀 보낼까요?",
  ("가"):rep(46),
}
for _, text in ipairs(texts) do
  local bytes = ksms.cp949_len(text)
  print(("%q\n  %d UTF-8 bytes, %d CP949 bytes -> %s"):format(text, #text, bytes,
    bytes <= 90 and "SMS" or "LMS"))
  for _, charset in ipairs({ "cp949", "euc-kr" }) do
    local ok, bad = ksms.charset_check(text, charset)
    if ok then
      print(("  %-6s ok"):format(charset))
    else
      local names = {}
      for _, b in ipairs(bad) do names[#names + 1] = ("%s at %d"):format(b.char, b.pos) end
      print(("  %-6s cannot carry %s"):format(charset, table.concat(names, ", ")))
    end
  end
end

local body = {
  UserMsgId = "80", UserMsgSubId = "", MsgType = 4, PhoneNo = "01091874302",
  CallbackNo = "15666639", TranId = "", Subject = "", Message = texts[1],
  KakaoAdFlag = "", KakaoNationCode = "", KakaoSenderKey = "", KakaoTemplateCode = "",
  KakaoTimeout = 0, KakaoButton = "", FileCount = 0, FileType1 = "", FileName1 = "",
  FileType2 = "", FileName2 = "", FileType3 = "", FileName3 = "", UserData = "",
}
local wire = codec.frame("MsgSendReq", body)
print(("\nOneShot MsgSendReq frame: %d bytes on the wire"):format(#wire))
print("  " .. wire:match("^[^\r]*") .. "\\r\\n" .. core.hex(wire:match("\n(.*)$"), true):sub(1, 48) .. "...")
local msg = assert(codec.decoder():feed(wire))[1]
print(("  decoded back: Method=%s PhoneNo=%s Message=%q"):format(msg.Header.Method, msg.Body.PhoneNo, msg.Body.Message))
