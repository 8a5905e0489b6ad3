-- ksms.oneshot.codec: the ordered JSON encoder and message decoder.
local codec = require "ksms.oneshot.codec"
local core = require "ksms.core"
local cjson = require "cjson"
local H = require "spec_helper"

local function wire_of(v)
  return ("Content-Length:%d\r\n"):format(v.content_length) .. assert(core.unhex(v.zlib_hex))
end

describe("oneshot codec", function()
  it("reproduces every document message from its field values", function()
    for _, v in ipairs(H.doc_frames()) do
      local msg = cjson.decode(v.json)
      local method, body = msg.Header.Method, msg.Body
      assert.equal(v.json, codec.encode(method, body), v.name)
      assert.equal(wire_of(v), codec.frame(method, body), v.name)
    end
  end)

  it("writes Body fields in the document's order whatever order they were set", function()
    local body = {}
    body.UserData = ""; body.PhoneNo = "01012345678"; body.MsgType = 4; body.UserMsgId = "7"
    assert.equal('{"Header":{"Method":"MsgSendReq"},"Body":{"UserMsgId":"7","MsgType":4,'
      .. '"PhoneNo":"01012345678","UserData":""}}', codec.encode("MsgSendReq", body))
  end)

  it("keeps UTF-8 and '/' as they are and escapes only what JSON requires", function()
    local s = codec.encode("MsgSendReq", { Message = 'a/b "q" \\ 한글\n\t\1' })
    assert.equal('{"Header":{"Method":"MsgSendReq"},"Body":{"Message":"a/b \\"q\\" \\\\ 한글\\n\\t\\u0001"}}', s)
    assert.equal('a/b "q" \\ 한글\n\t\1', cjson.decode(s).Body.Message)
  end)

  it("writes a string body as a JSON string and no body at all for nil", function()
    assert.equal('{"Header":{"Method":"AliveReq"}}', codec.encode("AliveReq"))
    assert.equal('{"Header":{"Method":"BindReq"},"Body":"QUJD+/=="}', codec.encode("BindReq", "QUJD+/=="))
  end)

  it("encodes a plaintext bind body in the document's order", function()
    assert.equal('{"BindId":"test001","BindPwd":"test001#$$%","Version":1}',
      codec.body_json("BindReq", { Version = 1, BindPwd = "test001#$$%", BindId = "test001" }))
  end)

  it("raises on a field the method does not have, or an unknown method", function()
    assert.has_error(function() codec.encode("MsgSendReq", { Mesage = "typo" }) end,
      nil)
    local ok, e = pcall(codec.encode, "MsgSendReq", { Mesage = "typo" })
    assert.is_false(ok)
    assert.matches("unknown field 'Mesage'", e)
    assert.has_error(function() codec.encode("NoSuchReq", {}) end)
    assert.has_error(function() codec.encode("MsgSendReq", { Message = {} }) end)
    assert.has_error(function() codec.encode("MsgSendReq", { MsgType = 0 / 0 }) end)
  end)

  it("decodes frames into message tables, however the bytes arrive", function()
    local wire = {}
    for i, v in ipairs(H.doc_frames()) do wire[i] = wire_of(v) end
    wire = table.concat(wire)
    local dec = codec.decoder()
    local got = {}
    for i = 1, #wire, 3 do
      for _, m in ipairs(assert(dec:feed(wire:sub(i, i + 2)))) do got[#got + 1] = m end
    end
    local frames = H.doc_frames()
    assert.equal(#frames, #got)
    for i, v in ipairs(frames) do
      assert.same(cjson.decode(v.json), got[i])
    end
    assert.equal("MsgSendReq", got[4].Header.Method)
    assert.equal("SMS 테스트 메시지 ", got[4].Body.Message)
  end)

  it("fails a frame that is not JSON or not a OneShot message, and stays failed", function()
    local dec = codec.decoder()
    local msgs, err = dec:feed(core.frame_encode("{not json"))
    assert.is_nil(msgs)
    assert.equal("bad_json", err.code)
    assert.equal("oneshot", err.provider)
    assert.is_nil(dec:feed(codec.frame("AliveReq")))
    local _, err2 = codec.decoder():feed(core.frame_encode('{"Body":{}}'))
    assert.equal("bad_message", err2.code)
  end)

  it("returns the messages before a bad frame together with the error", function()
    local dec = codec.decoder()
    local wire = codec.frame("AliveReq") .. codec.frame("AliveRes") .. core.frame_encode("[1]")
    local msgs, err = dec:feed(wire)
    assert.equal(2, #msgs)
    assert.equal("AliveRes", msgs[2].Header.Method)
    assert.equal("bad_message", err.code)
    assert.is_nil(dec:feed(codec.frame("AliveReq")))
    local msgs2, err2 = codec.decoder():feed(codec.frame("AliveReq") .. "garbage")
    assert.equal(1, #msgs2)
    assert.equal("bad_header", err2.code)
  end)
end)

describe("core.json_schema / json_object", function()
  local core = require "ksms.core"
  it("writes keys in schema order, leaving out absent ones", function()
    local sc = core.json_schema({ "b", "a", "c\"q" })
    assert.equal('{"b":2,"a":1}', core.json_object({ a = 1, b = 2 }, sc))
    assert.equal('{"c\\"q":true}', core.json_object({ ["c\"q"] = true }, sc))
    assert.equal('{}', core.json_object({}, sc))
    assert.equal('{"a":-9007199254740991}', core.json_object({ a = -9007199254740991 }, sc))
    assert.equal('{"a":4}', core.json_object({ a = 4.0 }, sc))
    assert.equal('{"a":0.5}', core.json_object({ a = 0.5 }, sc))
    assert.equal('{"a":null}', core.json_object({ a = require("cjson").null }, sc))
  end)

  it("names the field and the reason when it raises", function()
    local sc = core.json_schema({ "a" })
    local ok, e = pcall(core.json_object, { a = {} }, sc)
    assert.is_false(ok)
    assert.matches("field 'a'", e)
    ok, e = pcall(core.json_object, { [1] = "x" }, sc)
    assert.is_false(ok)
    assert.matches("unknown field", e)
    assert.has_error(function() core.json_schema({ "a", "a" }) end)
    assert.has_error(function() core.json_schema({ 1 }) end)
    assert.has_error(function() core.json_object({}, { "a" }) end)
  end)
end)
