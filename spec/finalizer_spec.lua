-- A __gc finalizer may call into ksms.core while another ksms.core call is
-- making its result string (Lua 5.1/LuaJIT run GC steps, and finalizers,
-- inside lua_pushlstring). Every result must still be right.
local core = require "ksms.core"
local codec = require "ksms.oneshot.codec"

local function with_gc(fn)
  if newproxy then -- LuaJIT / 5.1: only userdata have __gc
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

describe("finalizers calling into the core", function()
  it("never corrupt the result of the call they interrupt", function()
    local key, iv = ("k"):rep(16), ("v"):rep(16)
    local noise = ("N"):rep(3000)
    local finalized = 0
    local function churn()
      finalized = finalized + 1
      -- Each of these reuses the state's scratch buffers.
      core.b64encode(noise); core.hex(noise); core.deflate(noise)
      core.inflate(core.deflate(noise)); core.aes128cbc_encrypt(noise, key, iv)
      codec.frame("MsgSendReq", { Message = noise })
      codec.encode("MsgSendReq", { Message = noise })
    end
    local data = {}
    for i = 1, 64 do data[i] = string.char((i * 37) % 256):rep(i * 31) end
    local body = { UserMsgId = "1", Message = ("가"):rep(200) }
    local expect_frame = codec.frame("MsgSendReq", body)
    for round = 1, 400 do
      for _ = 1, 20 do with_gc(churn) end -- garbage with finalizers
      local s = data[round % 64 + 1]
      assert.equal(s, core.b64decode(core.b64encode(s)))
      assert.equal(s, core.unhex(core.hex(s)))
      assert.equal(s, core.inflate(core.deflate(s)))
      assert.equal(s, core.aes128cbc_decrypt(core.aes128cbc_encrypt(s, key, iv), key, iv))
      assert.equal(expect_frame, codec.frame("MsgSendReq", body))
      local msgs = assert(codec.decoder():feed(expect_frame .. expect_frame))
      assert.equal(body.Message, msgs[2].Body.Message)
    end
    collectgarbage()
    assert.is_true(finalized > 1000)
  end)
end)
