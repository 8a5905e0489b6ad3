-- The OneShot frame codec: core.frame_encode / core.frame_decoder, against
-- the document's example frames and against hostile input.
local core = require "ksms.core"
local H = require "spec_helper"

local function wire_of(v)
  return ("Content-Length:%d\r\n"):format(v.content_length) .. assert(core.unhex(v.zlib_hex))
end

local function all_wire()
  local parts = {}
  for i, v in ipairs(H.doc_frames()) do parts[i] = wire_of(v) end
  return table.concat(parts)
end

local function feed_in_pieces(dec, wire, sizes)
  local out, pos, k = {}, 1, 1
  while pos <= #wire do
    local n = sizes[(k - 1) % #sizes + 1]
    local payloads = assert(dec:feed(wire:sub(pos, pos + n - 1)))
    for _, p in ipairs(payloads) do out[#out + 1] = p end
    pos, k = pos + n, k + 1
  end
  return out
end

describe("frame_encode", function()
  it("reproduces every document frame byte for byte", function()
    local frames = H.doc_frames()
    assert.is_true(#frames >= 10)
    for _, v in ipairs(frames) do
      assert.equal(wire_of(v), core.frame_encode(v.json), v.name)
    end
  end)

  it("writes the compressed length in the header", function()
    local s = string.rep("가나다라", 500)
    local wire = core.frame_encode(s)
    local n, body = wire:match("^Content%-Length:(%d+)\r\n(.*)$")
    assert.equal(tonumber(n), #body)
    assert.equal(s, core.inflate(body))
  end)

  it("rejects a bad level as a programmer error", function()
    assert.has_error(function() core.frame_encode("x", 10) end)
  end)
end)

describe("frame_decoder", function()
  it("decodes every document frame to its JSON", function()
    for _, v in ipairs(H.doc_frames()) do
      local dec = core.frame_decoder()
      local payloads = assert(dec:feed(wire_of(v)))
      assert.same({ v.json }, payloads)
      assert.equal(0, dec:buffered())
    end
  end)

  it("gives the same payloads fed one byte at a time as fed all at once", function()
    local wire = all_wire()
    local whole = assert(core.frame_decoder():feed(wire))
    local dec = core.frame_decoder()
    local bytewise = feed_in_pieces(dec, wire, { 1 })
    assert.equal(#H.doc_frames(), #whole)
    assert.same(whole, bytewise)
    assert.equal(0, dec:buffered())
  end)

  it("handles chunks that cut headers and bodies anywhere", function()
    local wire = all_wire() .. all_wire()
    local expect = assert(core.frame_decoder():feed(wire))
    for _, sizes in ipairs({ { 2 }, { 3, 7 }, { 17 }, { 64, 1, 5 }, { 135 }, { 1000 } }) do
      assert.same(expect, feed_in_pieces(core.frame_decoder(), wire, sizes))
    end
  end)

  it("returns an empty list and waits while a frame is incomplete", function()
    local wire = wire_of(H.doc_frames()[4])
    local dec = core.frame_decoder()
    for _, cut in ipairs({ 5, 20 }) do
      local d = core.frame_decoder()
      assert.same({}, d:feed(wire:sub(1, cut)))
      assert.equal(cut, d:buffered())
    end
    assert.same({}, dec:feed(wire:sub(1, #wire - 1)))
    assert.equal(#wire - 1, dec:buffered())
    local done = assert(dec:feed(wire:sub(-1)))
    assert.equal(1, #done)
  end)

  it("accepts any case of the header name and blanks around the number", function()
    local z = core.deflate('{"Header":{"Method":"AliveReq"}}')
    for _, head in ipairs({ "content-length:", "CONTENT-LENGTH: ", "Content-Length:\t" }) do
      local payloads = assert(core.frame_decoder():feed(head .. #z .. " \r\n" .. z))
      assert.equal('{"Header":{"Method":"AliveReq"}}', payloads[1])
    end
  end)

  local malformed = {
    { "misspelt name", "Content-Lenght:5\r\nxxxxx" },
    { "garbage first byte", "\0Content-Length:5\r\n" },
    { "no digits", "Content-Length:\r\n" },
    { "letters in the number", "Content-Length:12a\r\n" },
    { "bare LF", "Content-Length:40\n" },
    { "CR without LF", "Content-Length:40\rX" },
    { "too many digits", "Content-Length:12345678901\r\n" },
    { "zero length", "Content-Length:0\r\n" },
    { "endless blanks", "Content-Length:" .. string.rep(" ", 80) },
  }
  for _, case in ipairs(malformed) do
    it("rejects a malformed header (" .. case[1] .. ") and stays failed", function()
      local dec = core.frame_decoder()
      local payloads, err = dec:feed(case[2])
      assert.is_nil(payloads)
      assert.equal("protocol", err.category)
      assert.equal("bad_header", err.code)
      assert.matches("malformed frame header", tostring(err))
      -- A good frame afterwards does not revive it.
      local again, err2 = dec:feed(wire_of(H.doc_frames()[2]))
      assert.is_nil(again)
      assert.equal("bad_header", err2.code)
      assert.equal("bad_header", dec:failed().code)
    end)
  end

  it("hands back the good frames that came before a bad one, with the error", function()
    local good = wire_of(H.doc_frames()[2]) .. wire_of(H.doc_frames()[3])
    local dec = core.frame_decoder()
    local payloads, err = dec:feed(good .. "Content-Lenght:1\r\n")
    assert.equal(2, #payloads)
    assert.equal(H.doc_frames()[3].json, payloads[2])
    assert.equal("bad_header", err.code)
    assert.is_nil(dec:feed(good))
  end)

  it("rejects a length over max_frame before reading the body", function()
    local dec = core.frame_decoder { max_frame = 100 }
    local ok = assert(dec:feed(wire_of(H.doc_frames()[2]))) -- 40 bytes: fine
    assert.equal(1, #ok)
    local payloads, err = dec:feed("Content-Length:101\r\n")
    assert.is_nil(payloads)
    assert.equal("too_large", err.code)
    assert.is_nil(dec:feed("x"))
  end)

  it("rejects corrupt zlib data", function()
    local wire = wire_of(H.doc_frames()[4])
    local header = wire:match("^[^\n]*\n")
    local body = wire:sub(#header + 1)
    local bad = body:sub(1, 40) .. string.char((body:byte(41) + 1) % 256) .. body:sub(42)
    local payloads, err = core.frame_decoder():feed(header .. bad)
    assert.is_nil(payloads)
    assert.equal("protocol", err.category)
    assert.is_truthy(err.code == "corrupt" or err.code == "truncated")
  end)

  it("rejects a frame whose zlib stream ends early or has trailing bytes", function()
    local z = core.deflate("hello")
    local _, e1 = core.frame_decoder():feed("Content-Length:" .. (#z - 2) .. "\r\n" .. z:sub(1, -3))
    assert.equal("truncated", e1.code)
    local _, e2 = core.frame_decoder():feed("Content-Length:" .. (#z + 3) .. "\r\n" .. z .. "abc")
    assert.equal("trailing_data", e2.code)
  end)

  it("stops a compression bomb at max_payload", function()
    local bomb = core.deflate(string.rep("\0", 8 * 1024 * 1024))
    assert.is_true(#bomb < 16 * 1024)
    local dec = core.frame_decoder { max_payload = 1024 * 1024 }
    local payloads, err = dec:feed("Content-Length:" .. #bomb .. "\r\n" .. bomb)
    assert.is_nil(payloads)
    assert.equal("too_large", err.code)
    -- Exactly at the limit is fine.
    local exact = core.deflate(string.rep("a", 4096))
    local ok = assert(core.frame_decoder { max_payload = 4096 }:feed("Content-Length:" .. #exact .. "\r\n" .. exact))
    assert.equal(4096, #ok[1])
    local _, over = core.frame_decoder { max_payload = 4095 }:feed("Content-Length:" .. #exact .. "\r\n" .. exact)
    assert.equal("too_large", over.code)
  end)

  it("keeps memory bounded: nothing is held once frames complete", function()
    local dec = core.frame_decoder()
    local wire = all_wire()
    for _ = 1, 200 do assert(dec:feed(wire)) end
    assert.equal(0, dec:buffered())
    dec:close()
    dec:close() -- idempotent
  end)

  it("validates its options", function()
    assert.has_error(function() core.frame_decoder { max_frame = 0 } end)
    assert.has_error(function() core.frame_decoder { max_payload = "big" } end)
    assert.has_error(function() core.frame_decoder():feed(nil) end)
  end)
end)
