-- ksms.oneshot.session under the fake OneShot server's faults: answers cut
-- into single bytes or packed several to a packet, connections dropped in
-- the middle of a pipeline, half frames, silence, garbage, a zlib bomb, a
-- duplicate bind; and the frames the session writes compared with the
-- document's bytes. Everything goes through the session, never a raw socket.
local session = require "ksms.oneshot.session"
local core = require "ksms.core"
local zlib = require "zlib"
local cjson = require("cjson").new()
local fake_control = require "fake_control"
local H = require "spec_helper"

local monotonic = core.monotonic

-- The fake's account, with a short reconnect delay for the specs.
local opts = require("spec_helper").oneshot_options

local msg = require("spec_helper").oneshot_msg

-- Runs the session's I/O in small slices until pred() holds or seconds pass.
local function poll_until(s, seconds, pred)
  local deadline = monotonic() + seconds
  while not pred() do
    if monotonic() > deadline then return false end
    s:poll(0.05)
  end
  return true
end

-- What the fake received: UserMsgId -> how many times, and -> the connection.
local function received(fake)
  local count, conn = {}, {}
  for _, r in ipairs(fake:requests("MsgSendReq")) do
    local id = r.body.UserMsgId
    count[id] = (count[id] or 0) + 1
    conn[id] = r.conn
  end
  return count, conn
end

-- The test process's peak resident memory in KiB (Linux), reset on request
-- so that a spec measures its own peak, C allocations included (zlib's
-- buffers are not in collectgarbage("count")).
local function peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function reset_peak_rss()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  return f:close() and ok ~= nil
end

local function hex(s) return core.hex(s):upper() end

-- A frame as the document builds them: zlib level 9 of the JSON text.
local function frame9(text)
  local z = zlib.deflate(9)(text, "finish")
  return "Content-Length:" .. #z .. "\r\n" .. z
end

local function doc_frame(prefix)
  for _, f in ipairs(H.doc_frames()) do
    if f.name:find(prefix, 1, true) == 1 then
      return f, ("Content-Length:%d\r\n"):format(f.content_length) .. core.unhex(f.zlib_hex)
    end
  end
  error("no document frame " .. prefix)
end

-- The fake's record of the first frame of a method, which must exist.
local function first_record(fake, method)
  local rec = fake:requests(method)[1]
  assert(rec, "the fake received no " .. method)
  return rec
end

describe("oneshot session under faults", function()
  local fake
  setup(function()
    fake = fake_control.start("oneshot", { state = { speed = 100, report_delay_ms = 20 } })
  end)
  teardown(function() fake:stop() end)
  before_each(function() fake:reset() end)

  it("binds and sends when every answer arrives one byte at a time", function()
    fake:state { write_mode = "bytes" }
    local s = session.new(opts(fake))
    assert(s:connect(5))
    for i = 1, 3 do
      local id = "bytes-" .. i
      local r, err = s:send(msg(id), 5)
      assert(r, tostring(err))
      assert.is_true(r.ok)
      assert.equal(0, r.code)
      assert.equal(id, r.id)
      assert.equal(id, r.raw.UserMsgId)      -- the answer read is this message's
    end
    s:close()
    local st = fake:stats()
    assert.equal(3, st.accepted)
    assert.equal(1, st.connections)
    -- One write per byte: the smallest frame the fake sends is 40 bytes.
    assert.is_true(st.writes >= 40 * st.frames_out, st.writes .. " writes for " .. st.frames_out .. " frames")
  end)

  it("matches each of 20 pipelined messages to its own answer when answers share packets", function()
    fake:state { write_mode = "coalesce", reports = false }
    local s = session.new(opts(fake))
    assert(s:connect(5))
    local outcomes, calls = {}, {}
    for i = 1, 20 do
      assert(s:submit(msg("co-" .. i), function(r, e)
        outcomes[i] = r or e
        calls[i] = (calls[i] or 0) + 1
      end))
    end
    assert(s:flush(10))
    s:close()
    for i = 1, 20 do
      assert.equal(1, calls[i])
      assert.is_true(outcomes[i].ok, tostring(outcomes[i].message))
      assert.equal("co-" .. i, outcomes[i].id)
      assert.equal("co-" .. i, outcomes[i].raw.UserMsgId)
    end
    local st = fake:stats()
    assert.equal(20, st.accepted)
    -- Answers went out several to a write (50 ms batches at 100 a second).
    assert.is_true(st.writes * 2 <= st.frames_out, st.writes .. " writes for " .. st.frames_out .. " frames")
  end)

  it("gives every pipelined message one outcome when connections drop mid-stream, sending none twice", function()
    -- Every connection closes on its 6th frame (BindReq + 5 MsgSendReq). On
    -- the first, answers are held back 300 ms so that all 5 are in flight
    -- when it drops; later connections answer 4 at once and lose the 5th.
    fake:state { drop_after_received = 6, reports = false }
    fake:script { method = "MsgSendReq", latency_ms = 300, times = 4 }
    local s = session.new(opts(fake))
    assert(s:connect(5))
    local n = 20
    local outcomes, calls = {}, {}
    for i = 1, n do
      assert(s:submit(msg("dr-" .. i), function(r, e)
        outcomes[i] = r or e
        calls[i] = (calls[i] or 0) + 1
      end))
    end
    assert(s:flush(15))
    s:close()
    local count, conn = received(fake)
    local first_conn = conn["dr-1"]
    local ok, maybe, ok_later, total = 0, 0, 0, 0
    for i = 1, n do
      local id, o = "dr-" .. i, outcomes[i]
      assert.equal(1, calls[i], id .. " outcomes")
      total = total + calls[i]
      if o.ok then
        ok = ok + 1
        assert.equal(id, o.id)
        assert.equal(1, count[id], id .. " answered but not received once")
        if conn[id] ~= first_conn then ok_later = ok_later + 1 end
      else
        assert.equal("unknown", o.category, id .. ": " .. tostring(o.message))
        assert.equal("connection_lost", o.code)
        assert.is_true(o.maybe_sent)
        maybe = maybe + 1
      end
    end
    assert.equal(n, total)
    assert.equal(n, ok + maybe)
    -- Nothing reached the fake twice, maybe-sent messages included.
    for id, c in pairs(count) do assert.equal(1, c, id .. " received " .. c .. " times") end
    -- The first connection took 5 messages and answered none of them.
    for i = 1, 5 do
      assert.equal(first_conn, conn["dr-" .. i])
      assert.is_true(outcomes[i].maybe_sent)
    end
    assert.is_true(maybe >= 5, "maybe-sent " .. maybe)
    -- Messages not written before a drop went out on a later connection.
    assert.is_true(ok_later >= 4, "sent after a reconnect " .. ok_later)
    local st = fake:stats()
    assert.is_true(st.dropped >= 2, "dropped " .. st.dropped)
    assert.is_true(st.binds >= 3, "binds " .. st.binds)
    assert.is_true(ok <= st.accepted)
  end)

  it("gives a maybe-sent outcome when an answer is cut mid-frame, then reconnects and sends", function()
    local s = session.new(opts(fake))
    assert(s:connect(5))
    fake:script { method = "MsgSendReq", fault = "half", times = 1 }
    local r, err = s:send(msg("half-1"), 5)
    assert.is_nil(r)
    assert.equal("unknown", err.category)
    assert.is_true(err.maybe_sent)
    local r2 = assert(s:send(msg("half-2"), 5))
    assert.is_true(r2.ok)
    assert.equal("half-2", r2.id)
    s:close()
    local count, conn = received(fake)
    assert.same({ ["half-1"] = 1, ["half-2"] = 1 }, count)
    assert.are_not.equal(conn["half-1"], conn["half-2"])
    local st = fake:stats()
    assert.equal(2, st.connections)
    assert.equal(2, st.binds)
  end)

  it("declares a connection dead when AliveReq goes unanswered, reconnects and sends", function()
    local s = session.new(opts(fake, { keepalive_interval = 0.3, alive_timeout = 0.3 }))
    assert(s:connect(5))
    fake:script { method = "AliveReq", fault = "silent", times = 1 }
    local t0 = monotonic()
    assert.is_true(poll_until(s, 4, function() return fake:stats().binds >= 2 end), "no second bind")
    -- 0.3 s idle before the AliveReq, 0.3 s waiting for its answer.
    assert.is_true(monotonic() - t0 >= 0.55, "dead after " .. (monotonic() - t0) .. " s")
    local st = fake:stats()
    assert.equal(2, st.connections)
    -- The fake keeps a silent connection for 30 s: the session closed it.
    assert.equal(1, st.open)
    local first_conn = fake:requests("AliveReq")[1].conn
    -- Answered keepalives keep the new connection up.
    s:poll(1.0)
    assert.equal(2, fake:stats().connections)
    local on_first, on_second = 0, 0
    for _, r in ipairs(fake:requests("AliveReq")) do
      if r.conn == first_conn then on_first = on_first + 1 else on_second = on_second + 1 end
    end
    assert.equal(1, on_first)
    assert.is_true(on_second >= 2, "keepalives on the new connection: " .. on_second)
    assert.is_true(fake:stats().alive >= 2)
    local r = assert(s:send(msg("alive-1"), 5))
    assert.is_true(r.ok)
    s:close()
  end)

  -- The fake writes the bad answer and keeps the connection open: only the
  -- session can be the one that drops it.
  local function bad_answer_then_recover(fault)
    local s = session.new(opts(fake))
    assert(s:connect(5))
    fake:script { method = "MsgSendReq", fault = fault, times = 1 }
    local r, err = s:send(msg(fault .. "-1"), 5)
    assert.is_nil(r)
    assert.equal("unknown", err.category)
    assert.is_true(err.maybe_sent)
    local r2 = assert(s:send(msg(fault .. "-2"), 5))
    assert.is_true(r2.ok)
    assert.equal(fault .. "-2", r2.id)
    local st = fake:stats()
    assert.equal(2, st.connections)
    assert.equal(1, st.open)
    assert.equal(2, st.binds)
    s:close()
    local count = received(fake)
    assert.same({ [fault .. "-1"] = 1, [fault .. "-2"] = 1 }, count)
  end

  it("drops the connection on a garbage answer, gives a maybe-sent outcome, and recovers", function()
    bad_answer_then_recover("garbage")
  end)

  it("refuses a zlib bomb answer without inflating it, and recovers", function()
    collectgarbage("collect")
    local heap0 = collectgarbage("count")
    local peak_measured = reset_peak_rss()
    local rss0 = peak_rss_kb()
    bad_answer_then_recover("bomb")        -- 64 MiB of zeros once inflated
    -- The heap as the bomb left it, garbage included: no 64 MiB string.
    local heap_growth = collectgarbage("count") - heap0
    assert.is_true(heap_growth < 20 * 1024, ("Lua heap grew %.0f KiB"):format(heap_growth))
    if peak_measured and rss0 then
      local rss_growth = peak_rss_kb() - rss0
      assert.is_true(rss_growth < 20 * 1024, ("peak RSS grew %d KiB"):format(rss_growth))
    end
  end)

  it("reports a second bind of the bound account as a duplicate, and the first keeps working", function()
    local first = session.new(opts(fake))
    assert(first:connect(5))
    local second = session.new(opts(fake))
    local ok, err = second:connect(3)
    assert.is_nil(ok)
    assert.equal("2", tostring(err.code))
    assert.equal("duplicate", err.category)
    assert.equal("oneshot", err.provider)
    assert.matches("duplicate", err.message)
    assert.matches("already", tostring(err))
    second:close()
    local r = assert(first:send(msg("dup-1"), 5))
    assert.is_true(r.ok)
    first:close()
    local st = fake:stats()
    assert.equal(1, st.duplicate_binds)
    assert.equal(1, st.binds)
    assert.equal(1, st.unbinds)     -- the refused session never unbinds
    assert.equal(2, st.connections)
  end)

  describe("the document's frames, written by the session", function()
    it("writes AliveReq byte for byte", function()
      local s = session.new(opts(fake, { keepalive_interval = 0.2 }))
      assert(s:connect(5))
      assert.is_true(poll_until(s, 2, function() return #fake:requests("AliveReq") >= 1 end))
      s:close()
      local _, bytes = doc_frame("AliveReq")
      assert.equal(hex(bytes), first_record(fake, "AliveReq").raw_hex)
    end)

    it("writes the document's MsgSendReq (UserMsgId 80) and its ReportRes", function()
      local s = session.new(opts(fake, { on_report = function() end }))
      assert(s:connect(5))
      local r = assert(s:send({ to = "01091874302", from = "15666639", text = "SMS 테스트 메시지 ",
        user_msg_id = "80" }, 5))
      assert.is_true(r.ok)
      assert.is_true(poll_until(s, 2, function() return fake:stats().reports_acked >= 1 end))
      s:close()

      local doc, bytes = doc_frame("MsgSendReq")
      local rec = first_record(fake, "MsgSendReq")
      if rec.json == doc.json then
        assert.equal(hex(bytes), rec.raw_hex)
      else
        -- The session always writes ResellerCode (the last field of the
        -- document's table), "" when there is none; the document's example
        -- leaves it out. That must be the only difference: every other
        -- field, its order and the compression are the document's.
        local want = doc.json:sub(1, -3) .. ',"ResellerCode":""}}'
        assert.equal(want, rec.json)
        assert.equal(hex(frame9(want)), rec.raw_hex)
      end
      local sent, expected = cjson.decode(rec.json).Body, cjson.decode(doc.json).Body
      for k, v in pairs(expected) do assert.equal(v, sent[k], k) end

      -- ReportRes echoes the ServerMsgId the server made up (780001 here,
      -- 781857 in the document): the same frame with the fake's id.
      local rdoc = doc_frame("ReportRes")
      local ack = first_record(fake, "ReportRes")
      local server_id = cjson.decode(ack.json).Body.ServerMsgId
      assert.matches("^%d+$", server_id)
      local want = rdoc.json:gsub('"ServerMsgId":"781857"', '"ServerMsgId":"' .. server_id .. '"')
      assert.equal(want, ack.json)
      assert.equal(hex(frame9(want)), ack.raw_hex)
    end)

    it("writes the document's SpamRes byte for byte", function()
      local spam
      local s = session.new(opts(fake, { on_spam = function(ev) spam = ev end }))
      assert(s:connect(5))
      assert(fake:push("SpamReq", { SpamId = "1", PhoneNo = "01000000000", DenyNo = "0800000000" }))
      assert.is_true(poll_until(s, 2, function() return fake:stats().spam_acked >= 1 end))
      s:close()
      assert.equal("1", spam.spam_id)
      local _, bytes = doc_frame("SpamRes")
      assert.equal(hex(bytes), first_record(fake, "SpamRes").raw_hex)
    end)

    it("writes the document's upload frames (the file name is the server's)", function()
      local s = session.new(opts(fake))
      assert(s:connect(5))
      local jpeg = "\255\216\255\224" .. ("j"):rep(1092 - 6) .. "\255\217"   -- FileSize 1092
      local name = assert(s:upload(jpeg, ".jpg", 5))
      s:close()
      local _, bytes = doc_frame("UploadFileNameReq")
      assert.equal(hex(bytes), first_record(fake, "UploadFileNameReq").raw_hex)
      -- The name is random, made by the server: the document's frame with it.
      local fdoc = doc_frame("UploadFileFinishReq")
      local want = fdoc.json:gsub("7d61d7e6790c41aa894d577902b67cae%.jpg", name)
      assert.are_not.equal(fdoc.json, want)
      local finish = first_record(fake, "UploadFileFinishReq")
      assert.equal(want, finish.json)
      assert.equal(hex(frame9(want)), finish.raw_hex)
    end)

    it("writes BindReq as the document does, under the fake's key", function()
      -- The document's BindReq body is encrypted with a key it does not
      -- publish, so its bytes cannot be reproduced. What can: the message
      -- around the body, a ciphertext of the same length (the plaintext is
      -- as long as test001's), the plaintext's fields in the table's order,
      -- and level-9 zlib framing.
      local s = session.new(opts(fake))
      assert(s:connect(5))
      s:close()
      local doc = doc_frame("BindReq")
      local rec = first_record(fake, "BindReq")
      assert.is_true(rec.encrypted)
      local prefix = '{"Header":{"Method":"BindReq"},"Body":"'
      assert.equal(prefix, doc.json:sub(1, #prefix))
      local body = rec.json:match('^' .. prefix:gsub("%p", "%%%0") .. '([%w+/=]+)"}$')
      assert(body, "not the document's shape: " .. rec.json)
      local doc_body = cjson.decode(doc.json).Body
      assert.equal(#doc_body, #body)
      local plain = assert(core.aes128cbc_decrypt(assert(core.b64decode(body)), "ksms-oneshot-key", "ksms-oneshot-iv!"))
      assert.equal('{"BindId":"test001","BindPwd":"test001#$$%","Version":1}', plain)
      assert.equal(hex(frame9(rec.json)), rec.raw_hex)
    end)
  end)
end)
