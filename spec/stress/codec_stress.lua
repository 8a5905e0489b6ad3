-- Codec stress for valgrind (make valgrind): every binding of ksms.core on
-- valid and hostile input, many times, then a full collect and lua_close.
-- valgrind reports any leak or invalid access; the script itself asserts the
-- results so a silent wrong answer fails too.
local core = require "ksms.core"
local codec = require "ksms.oneshot.codec"
local errors = require "ksms.errors"
local cjson = require "cjson"

local ROUNDS = tonumber(os.getenv("STRESS_ROUNDS") or "") or 300
local key, iv = ("k"):rep(16), ("i"):rep(16)
local rnd = 12345
local function rand(n) rnd = (rnd * 1103515245 + 12345) % 2147483648; return rnd % n end
local function bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(rand(256)) end
  return table.concat(t)
end

local schema = core.json_schema({ "a", "b" })

local body = {
  UserMsgId = "80", UserMsgSubId = "", MsgType = 4, PhoneNo = "01091874302",
  CallbackNo = "15666639", Message = "SMS 테스트 메시지 ", FileCount = 0,
}

for round = 1, ROUNDS do
  local data = bytes(rand(600))
  assert(core.b64decode(core.b64encode(data)) == data)
  assert(core.unhex(core.hex(data)) == data)
  assert(core.b64decode(data .. "!") == nil)
  assert(core.inflate(core.deflate(data, rand(10))) == data)
  assert(core.inflate(data) == nil or true)
  local c = core.aes128cbc_encrypt(data, key, iv)
  assert(core.aes128cbc_decrypt(c, key, iv) == data)
  assert(select("#", core.aes128cbc_decrypt(bytes(32), key, iv)) >= 1)
  assert(core.cp949_len("가나다 abc " .. round) > 0)
  assert(core.charset_check("됬 😀", "euc-kr") == nil)
  core.cp949_len(data)
  core.charset_check(data, "cp949")

  local wire = codec.frame("MsgSendReq", body) .. core.frame_encode(data)
  local dec = codec.decoder()
  local got = {}
  local pos = 1
  while pos <= #wire and not dec.failed_err do
    local step = 1 + rand(40)
    local msgs = dec:feed(wire:sub(pos, pos + step - 1))
    if msgs then for _, m in ipairs(msgs) do got[#got + 1] = m end end
    pos = pos + step
  end
  assert(got[1] and got[1].Body.Message == body.Message)
  -- Hostile frames: garbage, a cut header, a bomb, a corrupt body.
  local raw = core.frame_decoder { max_payload = 4096 }
  raw:feed("Content-Length:" .. #data .. "\r\n" .. data)
  core.frame_decoder():feed(data)
  local bomb = core.deflate(("\0"):rep(20000))
  assert(core.frame_decoder { max_payload = 4096 }:feed("Content-Length:" .. #bomb .. "\r\n" .. bomb) == nil)
  local half = core.frame_decoder()
  half:feed(wire:sub(1, rand(#wire)))
  if round % 2 == 0 then half:close() end

  -- The error boundary and the JSON writer on hostile text: long fields
  -- through tostring, random bytes written or refused, and a failed inflate
  -- leaves nothing in the scratch for the next call.
  local long = data:rep(1 + rand(8))
  local e = setmetatable({ provider = "p", category = "server", code = long, message = long }, errors.mt)
  assert(tostring(e) == "ksms[p] server (" .. long .. "): " .. long)
  local bounded = errors.new { category = "server", code = long, message = long }
  assert(#bounded.message <= errors.MESSAGE_MAX and #bounded.code <= errors.CODE_MAX)
  local v = rand(1000000) / (1 + rand(97))
  local j = core.json_object({ a = data, b = v }, schema)
  assert((j ~= nil) == (core.cp949_len(data) ~= nil))
  if j then
    local back = cjson.decode(j)
    assert(back.a == data and back.b == v)
  end
  assert(core.frame_decoder():feed("Content-Length:" .. #bomb .. "\r\n" .. bomb:sub(1, -2) .. "x") == nil)
  assert(core.b64decode(core.b64encode(data)) == data)
  -- the RESP codec: a command read back, then hostile bytes (failed
  -- readers, a tree over max_bytes, a reader left to __gc half way)
  local r = core.resp_reader(4096)
  assert(r:feed(core.resp_encode { "SET", data, round }))
  local cmd = r:next()
  assert(cmd.n == 3 and cmd[2] == data and cmd[3] == tostring(round))
  r:feed("*99999\r\n" .. (":1\r\n"):rep(900))
  assert(r:next() == nil)
  r:feed(data .. "\r\n")
  r:next()
  if round % 2 == 0 then r:close() end
end

collectgarbage()
collectgarbage()
print("codec stress: " .. ROUNDS .. " rounds ok")
