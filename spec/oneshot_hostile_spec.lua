-- ksms.oneshot.protocol fed what a hostile server can send: answers out of
-- order, of unknown methods, for ids never sent, with missing or mistyped
-- fields, garbage bind answers, huge frames; then a mutation loop over the
-- document's frames and the frames the protocol specs use. Nothing may
-- raise, and every submitted message ends in exactly one outcome.
local core = require "ksms.core"
local cjson = require("cjson").new()
local codec = require "ksms.oneshot.codec"
local errors = require "ksms.errors"
local protocol = require "ksms.oneshot.protocol"
local T = require "oneshot_scripted"
local H = require "spec_helper"

local server, new, of_type, bound, sms, drain, answer =
  T.server, T.new, T.of_type, T.bound, T.sms, T.drain, T.answer

-- A frame of any JSON message, as a hostile server writes it (the codec
-- only writes the schema's methods and fields).
local function raw_frame(msg) return core.frame_encode(cjson.encode(msg), 9) end

local function encrypted(S, text)
  return core.b64encode(core.aes128cbc_encrypt(text, S.key, T.IV))
end

local function is_error(e)
  return errors.is(e) and errors.categories[e.category] and type(e.message) == "string"
end

-- A bound protocol with an upload whose UploadFileNameReq has been written.
local function uploading()
  local p, S = bound(10)
  local h = assert(p:upload("\255\216\255" .. ("x"):rep(100) .. "\255\217", ".jpg"))
  local _, out = p:poll(1)
  assert.equal("UploadFileNameReq", S.read(out)[1].Header.Method)
  return p, S, h
end

describe("ksms.oneshot.protocol against a hostile server", function()
  describe("uploads", function()
    it("fails the upload, without raising, when UploadFileRes comes before UploadFileNameRes", function()
      local p, S, h = uploading()
      local ev, out = p:receive(S.frame("UploadFileRes", { Result = 0 }), 1)
      assert.equal("", out)
      local failed = of_type(ev, "upload_failed")
      assert.equal(1, #failed)
      assert.equal(h, failed[1].handle)
      assert.equal("protocol", failed[1].err.category)
      assert.equal("out_of_order", failed[1].err.code)
      assert.equal(0, #of_type(ev, "upload_done"))
      -- The late real answer belongs to no upload: reported, not applied.
      ev = p:receive(S.frame("UploadFileNameRes", { Result = 0, FileName = "late.jpg" }), 1)
      assert.equal("protocol_error", ev[1].type)
      assert.is_false(ev[1].fatal)
      assert.equal("bound", p.state)
    end)

    it("fails the upload on an early UploadFileFinishRes instead of finishing it without a name", function()
      local p, S, h = uploading()
      local ev = p:receive(S.frame("UploadFileFinishRes", { Result = 0 }), 1)
      assert.equal(0, #of_type(ev, "upload_done"))
      local failed = of_type(ev, "upload_failed")[1]
      assert.equal(h, failed.handle)
      assert.equal("protocol", failed.err.category)
      assert.equal("out_of_order", failed.err.code)
    end)

    it("fails the upload on a name answer without a usable FileName or Result", function()
      for _, body in ipairs {
        { Result = 0 }, { Result = 0, FileName = "" }, { Result = 0, FileName = { "a.jpg" } },
        { Result = "zero", FileName = "a.jpg" }, { Result = { 0 }, FileName = "a.jpg" }, {},
      } do
        local p, S, h = uploading()
        local ev, out = p:receive(raw_frame { Header = { Method = "UploadFileNameRes" }, Body = body }, 1)
        assert.equal("", out, cjson.encode(body))
        local failed = of_type(ev, "upload_failed")[1]
        assert.equal(h, failed.handle)
        assert.equal("protocol", failed.err.category, cjson.encode(body))
        assert.equal("bad_answer", failed.err.code)
      end
    end)
  end)

  describe("bind answers", function()
    local function bind_answer(body_of)
      local p, S = new(), server()
      p:connected(0)
      local ev = p:receive(raw_frame { Header = { Method = "BindRes" }, Body = body_of(S) }, 0.1)
      return p, ev
    end

    it("reports a BindRes it cannot read at once, as a protocol error (not as a bind timeout later)", function()
      local cases = {
        not_base64 = function() return "%%% not Base64 %%%" end,
        not_ciphertext = function() return core.b64encode(("\7"):rep(16)) end,
        not_json = function(S) return encrypted(S, "{not json") end,
        json_array = function(S) return encrypted(S, "[1, 2]") end,
        result_text = function(S) return encrypted(S, '{"Result":"OK","Speed":10}') end,
        result_table = function(S) return encrypted(S, '{"Result":{},"Speed":10}') end,
        no_result = function(S) return encrypted(S, '{"Speed":10}') end,
        a_number = function() return 42 end,
      }
      for name, body_of in pairs(cases) do
        local p, ev = bind_answer(body_of)
        assert.equal(1, #ev, name)
        assert.equal("bind_failed", ev[1].type, name)
        assert.equal("protocol", ev[1].err.category, name)
        assert.equal("bad_bind_answer", ev[1].err.code, name)
        assert.is_true(is_error(ev[1].err), name)
        assert.equal("failed", p.state, name)
        assert.is_nil(p:next_deadline(), name)     -- no bind timeout pending
        assert.is_nil(ev[1].retry_after, name)     -- not a refused login: the caller's delay
      end
    end)

    it("takes a grant with a mistyped or absurd Speed as the default speed, or caps it", function()
      for _, case in ipairs { { '"fast"', 1 }, { "{}", 1 }, { "-5", 1 }, { "1e999", 1 }, { "1e300", 10000 },
                              { "0.5", 1 }, { '"20"', 20 } } do
        local p, S = new(), server()
        p:connected(0)
        local ev = p:receive(raw_frame { Header = { Method = "BindRes" },
          Body = encrypted(S, '{"Result":0,"Speed":' .. case[1] .. ',"BeginTime":"x","EndTime":[]}') }, 0)
        assert.equal("bound", ev[1].type, case[1])
        assert.equal(case[2], ev[1].speed, case[1])
        for i = 1, 3 do assert(p:submit(sms(i))) end
        local sent = drain(p, S, 0, 5)
        assert.equal(3, #sent, case[1])
      end
    end)

    it("ignores a BindRes or PrivateKeyRes that comes when none is awaited", function()
      local p, S = bound(10)
      local ev = p:receive(S.frame("BindRes", { Result = 5 }, true) .. S.frame("PrivateKeyRes",
        { Result = 0, PrivateKey = "0123456789abcdef" }), 1)
      assert.equal(2, #of_type(ev, "protocol_error"))
      assert.equal(0, #of_type(ev, "bind_failed"))
      assert.equal("bound", p.state)
      assert(p:submit(sms(1)))
      assert.equal(1, #drain(p, S, 1, 2))
    end)
  end)

  describe("message answers", function()
    it("gives a protocol outcome, maybe sent, to a message whose answer has no usable Result", function()
      for _, result in ipairs { "zero", {}, true, 0.5, "1e2" } do
        local p, S = bound(10)
        assert(p:submit(sms(1, { id = "m1" })))
        local body = drain(p, S, 0, 1)[1]
        local ev = p:receive(raw_frame { Header = { Method = "MsgSendRes" },
          Body = { UserMsgId = body.UserMsgId, UserMsgSubId = "", Result = result, ResultMessage = { "x" } } }, 1)
        local r = of_type(ev, "result")
        assert.equal(1, #r, cjson.encode(result))
        assert.is_false(r[1].ok)
        assert.equal("protocol", r[1].outcome.category)
        assert.equal("bad_answer", r[1].outcome.code)
        assert.is_true(r[1].outcome.maybe_sent)
        assert.equal(0, p:in_flight())
        local res, err = protocol.outcome_of(r[1])
        assert.is_nil(res)
        assert.is_true(is_error(err))
      end
    end)

    it("takes a Result or id written as a whole number or digits", function()
      local p, S = bound(10)
      assert(p:submit(sms(1, { id = "80" })))
      assert(p:submit(sms(2, { id = "81" })))
      drain(p, S, 0, 1)
      local ev = p:receive(raw_frame { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = 80, Result = "0" } }
        .. raw_frame { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = "81", UserMsgSubId = cjson.null,
          Result = 33.0 } }, 1)
      local r = of_type(ev, "result")
      assert.equal(2, #r)
      assert.is_true(r[1].ok)
      assert.equal("80", r[1].user_msg_id)
      assert.equal("recipient", r[2].outcome.category)
      assert.equal(33, r[2].outcome.code)
    end)

    it("reports answers for ids never sent, or with mistyped ids, and leaves the message in flight", function()
      local p, S = bound(10)
      assert(p:submit(sms(1, { id = "mine" })))
      drain(p, S, 0, 1)
      local ev = p:receive(raw_frame { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = "never", Result = 0 } }
        .. raw_frame { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = { "mine" }, Result = 0 } }
        .. raw_frame { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = "mine", UserMsgSubId = true, Result = 0 } }
        .. raw_frame { Header = { Method = "MsgSendRes" }, Body = "not a body" }, 1)
      assert.equal(4, #ev)
      for _, e in ipairs(ev) do
        assert.equal("protocol_error", e.type)
        assert.is_false(e.fatal)
        assert.is_true(is_error(e.err))
        assert.is_nil(e.err.message:find("table: 0x", 1, true), e.err.message)
      end
      assert.equal(1, p:in_flight())
      local lost = p:disconnected(2)
      assert.equal(1, #lost)
      assert.is_true(lost[1].outcome.maybe_sent)
    end)

    it("ignores an UnBindRes it did not ask for, and an unknown method", function()
      local p, S = bound(10)
      local ev = p:receive(S.frame("UnBindRes", { Result = 0 }, true)
        .. raw_frame { Header = { Method = ("Bogus"):rep(100) }, Body = { Result = 0 } }, 1)
      assert.equal(2, #of_type(ev, "protocol_error"))
      assert.equal("unexpected_method", ev[2].err.code)
      assert.is_true(#ev[2].err.message < 200)
      assert.equal("bound", p.state)
      assert(p:submit(sms(1)))
      assert.equal(1, #drain(p, S, 1, 2))
    end)
  end)

  describe("pushes", function()
    it("reports pushes with mistyped fields instead of delivering or acknowledging them", function()
      local p = bound(10)
      local bad = {
        { "ReportReq", { UserMsgId = { 1 }, ServerMsgId = "1", Result = 0 } },
        { "ReportReq", { UserMsgId = "1", ServerMsgId = true, Result = 0 } },
        { "ReportReq", { UserMsgId = "1", ServerMsgId = "2", Result = "delivered" } },
        { "ReportReq", { UserMsgId = "1", ServerMsgId = "3", Result = 0, PhoneNo = { "010" } } },
        { "SpamReq", { SpamId = { "1" }, PhoneNo = "01000000000", DenyNo = "080" } },
        { "ChangePhoneReq", { ServerMsgId = "1", PhoneNo = "011", ChangePhoneNo = { a = 1 } } },
        -- ids are remembered for the dedup: a long one is refused, not kept
        { "ReportReq", { UserMsgId = "1", ServerMsgId = ("9"):rep(30000), Result = 0 } },
        { "SpamReq", { SpamId = "1", PhoneNo = ("0"):rep(65), DenyNo = "080" } },
      }
      for _, case in ipairs(bad) do
        local ev, out = p:receive(raw_frame { Header = { Method = case[1] }, Body = case[2] }, 1)
        assert.equal("", out)
        assert.equal(1, #ev, cjson.encode(case[2]))
        assert.equal("protocol_error", ev[1].type)
        assert.equal("bad_push", ev[1].err.code)
        assert.is_false(ev[1].fatal)
      end
      -- Whole numbers where text is meant are taken as their digits.
      local ev = p:receive(raw_frame { Header = { Method = "ReportReq" },
        Body = { UserMsgId = 80, UserMsgSubId = "", ServerMsgId = 781857, MsgType = "4", Result = 0 } }, 2)
      assert.equal("report", ev[1].type)
      assert.equal("781857", ev[1].server_msg_id)
      assert.equal("80", ev[1].user_msg_id)
    end)
  end)

  describe("text that is not UTF-8 (the frame writer refuses it)", function()
    it("refuses a push whose echoed ids are not UTF-8, without raising or writing", function()
      local p = bound(10)
      for _, case in ipairs {
        { "ReportReq", { UserMsgId = "1", UserMsgSubId = "", ServerMsgId = "9\255\254", Result = 0 } },
        { "SpamReq", { SpamId = "\192\128", PhoneNo = "01000000000", DenyNo = "080" } },
        { "ChangePhoneReq", { ServerMsgId = "1", PhoneNo = "011", ChangePhoneNo = "\237\160\128" } },
      } do
        local ev, out = p:receive(raw_frame { Header = { Method = case[1] }, Body = case[2] }, 1)
        assert.equal("", out)
        assert.equal(1, #ev)
        assert.equal("protocol_error", ev[1].type)
        assert.equal("bad_push", ev[1].err.code)
        assert.is_false(ev[1].fatal)
      end
    end)

    it("fails an upload whose server-given file name is not UTF-8 or is over-long", function()
      for _, name in ipairs { "a\255.jpg", ("n"):rep(65) .. ".jpg" } do
        local p, S, h = uploading()
        local ev, out = p:receive(S.frame("UploadFileNameRes", { Result = 0, FileName = "x" }), 1)
        assert.equal(0, #of_type(ev, "upload_failed"))  -- a good name goes on
        p, S, h = uploading()
        ev, out = p:receive(raw_frame { Header = { Method = "UploadFileNameRes" },
          Body = { Result = 0, FileName = name } }, 1)
        assert.equal("", out)
        local failed = of_type(ev, "upload_failed")[1]
        assert.equal(h, failed.handle)
        assert.equal("bad_answer", failed.err.code)
      end
    end)

    it("refuses at submit a message whose subject or KakaoTalk fields are not UTF-8", function()
      local p = bound(10)
      for _, extra in ipairs {
        { kind = "lms", subject = "\255title" },
        { kind = "alimtalk", kakao = { sender_key = "k\255", template_code = "T1" } },
        { user_data = "\200" },
      } do
        local rec, err = p:submit(sms(1, extra))
        assert.is_nil(rec)
        assert.equal("invalid_input", err.category)
        assert.equal("bad_utf8", err.code)
      end
      assert.equal(0, p:queued())
    end)
  end)

  it("refuses a frame that inflates past 64 KiB: a server's frames are a few hundred bytes", function()
    local p = bound(10)
    local big = raw_frame { Header = { Method = "AliveRes" }, Body = { Pad = ("x"):rep(100 * 1024) } }
    assert.is_true(#big < 64 * 1024)      -- compressed it is small
    local ev = p:receive(big, 1)
    assert.equal("protocol_error", ev[#ev].type)
    assert.is_true(ev[#ev].fatal)
    assert.equal("too_large", ev[#ev].err.code)
    p = bound(10)
    ev = p:receive("Content-Length:999999\r\n", 1)
    assert.is_true(ev[1].fatal)
    assert.equal("too_large", ev[1].err.code)
  end)

  describe("a mutation loop", function()
    -- Server frames to start from: the document's (spec/data), with their
    -- bodies as the server would send them, and those the protocol specs use.
    local doc = {}
    for _, f in ipairs(H.doc_frames()) do doc[#doc + 1] = cjson.decode(f.json) end

    local METHODS = { "PrivateKeyRes", "BindRes", "UnBindRes", "AliveReq", "AliveRes", "MsgSendRes",
      "ReportReq", "SpamReq", "ChangePhoneReq", "UploadFileNameRes", "UploadFileRes", "UploadFileFinishRes",
      "MsgSendReq", "Nope" }
    local RESULTS = { 0, 0, 0, 903, 11, 320, 33, 5, 911, 4242, -1 }

    local function pick(rng, list) return list[rng(#list)] end

    local function hostile_value(rng)
      local k = rng(12)
      if k == 1 then return cjson.null
      elseif k == 2 then return {} elseif k == 3 then return { "a", { b = 1 } }
      elseif k == 4 then return rng(2) == 1
      elseif k == 5 then return -rng(1000) elseif k == 6 then return 1e300
      elseif k == 7 then return rng(1000) + 0.5 elseif k == 8 then return ("9"):rep(rng(40))
      elseif k == 9 then return ("가"):rep(rng(300)) elseif k == 10 then return ""
      elseif k == 11 then return "\0\255" end
      return rng(100000)
    end

    local deep_copy = H.deep_copy

    -- Mutates a message { Header = { Method }, Body } in place.
    local function mutate(rng, S, msg)
      for _ = 1, rng(3) do
        local k = rng(10)
        local body = msg.Body
        if k == 1 then msg.Header = { Method = pick(rng, METHODS) }
        elseif k == 2 and type(body) == "table" then
          local keys = {}
          for key in pairs(body) do keys[#keys + 1] = key end
          table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
          if #keys > 0 then body[pick(rng, keys)] = nil end
        elseif k == 3 and type(body) == "table" then
          local keys = { "Result", "UserMsgId", "UserMsgSubId", "ServerMsgId", "FileName", "Speed", "PrivateKey",
            "SpamId", "PhoneNo", "ResultMessage", "MsgType", "BeginTime" }
          body[pick(rng, keys)] = hostile_value(rng)
        elseif k == 4 then msg.Body = hostile_value(rng)
        elseif k == 5 then msg.Body = encrypted(S, pick(rng, { "{", "[]", "null", "{\"Result\":\"0\"}", "\255" }))
        elseif k == 6 then msg.Body = "%%%" .. tostring(rng(1000))
        elseif k == 7 then msg.Header = pick(rng, { {}, { Method = 7 }, { Method = {} }, "x" })
        elseif k == 8 and type(body) == "table" then msg.Body = encrypted(S, cjson.encode(body))
        end
      end
      return msg
    end

    -- A server message in answer to what the client wrote (sent bodies).
    local UPLOAD_ANSWER = { UploadFileNameReq = "UploadFileNameRes", UploadFileReq = "UploadFileRes",
      UploadFileFinishReq = "UploadFileFinishRes" }

    local function server_msg(rng, sent, expected)
      local k = rng(14)
      if expected[1] and rng(2) == 1 then      -- the answer the client waits for
        return { Header = { Method = table.remove(expected, 1) }, Body = { Result = 0, FileName = "up.jpg" } }
      end
      local b = sent[#sent > 0 and rng(#sent) or 1]
      local id = b and b.UserMsgId or ("x" .. rng(100))
      if k <= 4 then
        return { Header = { Method = "MsgSendRes" }, Body = { UserMsgId = id, UserMsgSubId = "",
          PhoneNo = "01012345678", MsgType = 4, Result = pick(rng, RESULTS), UserData = "" } }
      elseif k == 5 then
        return { Header = { Method = "ReportReq" }, Body = { UserMsgId = id, UserMsgSubId = "",
          ServerMsgId = tostring(rng(50)), MsgType = 4, PhoneNo = "01012345678", Result = pick(rng, RESULTS),
          Telecom = "KTF", DeliveryTime = "2017-07-11 13:43:12.000", UserData = "" } }
      elseif k == 6 then
        return { Header = { Method = "SpamReq" }, Body = { SpamId = tostring(rng(20)), PhoneNo = "01000000000",
          DenyNo = "0800000000" } }
      elseif k == 7 then
        return { Header = { Method = "UploadFileNameRes" }, Body = { Result = pick(rng, RESULTS),
          FileName = "f" .. rng(9) .. ".jpg" } }
      elseif k == 8 then
        return { Header = { Method = pick(rng, { "UploadFileRes", "UploadFileFinishRes" }) },
          Body = { Result = pick(rng, RESULTS) } }
      elseif k == 9 then return { Header = { Method = pick(rng, { "AliveReq", "AliveRes" }) } }
      elseif k == 10 then return { Header = { Method = "UnBindRes" }, Body = { Result = 0 } }
      elseif k == 11 then return { Header = { Method = "BindRes" }, Body = { Result = pick(rng, RESULTS), Speed = 5 } }
      end
      return deep_copy(pick(rng, doc))
    end

    local function wire(rng, S, msg)
      local ok, text = pcall(cjson.encode, msg)
      if not ok then text = '{"Header":{"Method":"AliveRes"}}' end
      local bytes = core.frame_encode(text, 9)
      if rng(25) == 1 then                  -- a damaged frame
        local pos = rng(#bytes)
        bytes = bytes:sub(1, pos - 1) .. string.char(rng(256) - 1) .. bytes:sub(pos + 1)
      elseif rng(40) == 1 then
        bytes = bytes:sub(1, rng(#bytes))
      end
      return bytes
    end

    it("never raises and ends every submitted message in exactly one outcome", function()
      local iterations = tonumber(os.getenv("KSMS_FUZZ_ITERATIONS")) or 1500
      local seed = tonumber(os.getenv("KSMS_FUZZ_SEED")) or 20240611
      math.randomseed(seed)
      local rng = math.random
      local totals = { frames = 0, results = 0, messages = 0, uploads = 0, reconnects = 0 }
      local kinds = {}      -- event type -> count
      for iter = 1, iterations do
        local where = "iteration " .. iter .. " (seed " .. seed .. ")"
        local p = new { encrypted = rng(8) == 1, max_retries = 2, retry_backoff = 0.01 }
        local outcomes, upload_ends, recs, handles = {}, {}, {}, {}
        local t, connected = 0, false

        local function check_error(e, what)
          assert(is_error(e), where .. ": " .. what .. " is not a ksms error")
          local ok, s = pcall(tostring, e)
          assert(ok and type(s) == "string", where .. ": tostring of " .. what)
        end

        local function take(events)
          for _, e in ipairs(events) do
            kinds[e.type] = (kinds[e.type] or 0) + 1
            if e.type == "result" then
              outcomes[e.rec] = (outcomes[e.rec] or 0) + 1
              totals.results = totals.results + 1
              if not e.ok then check_error(e.outcome, "an outcome") end
              assert(pcall(protocol.outcome_of, e), where .. ": outcome_of raised")
            elseif e.type == "upload_done" or e.type == "upload_failed" then
              upload_ends[e.handle] = (upload_ends[e.handle] or 0) + 1
              if e.err then check_error(e.err, "an upload error") end
            elseif e.type == "report" or e.type == "spam" or e.type == "change_phone" then
              if rng(2) == 1 then
                local ok, out = pcall(p.ack, p, e, t)
                assert(ok and type(out) == "string", where .. ": ack raised: " .. tostring(out))
              end
            elseif e.type == "protocol_error" or e.type == "bind_failed" then
              check_error(e.err, e.type)
            end
            if (e.type == "protocol_error" and e.fatal) or e.type == "bind_failed" or e.type == "dead" then
              connected = false
            end
          end
        end

        local function call(what, fn, ...)
          local ok, a, b = pcall(fn, p, ...)
          assert(ok, where .. ": " .. what .. " raised: " .. tostring(a))
          return a, b
        end

        for _ = 1, rng(3) do
          local S = server()
          local out = call("connected", p.connected, t)
          connected = true
          local sent, expected = {}, {}
          local function written(bytes)
            local ok, msgs = pcall(S.read, bytes)
            if not ok then return end
            for _, m in ipairs(msgs) do
              local method = m.Header.Method
              if method == "MsgSendReq" then sent[#sent + 1] = m.Body end
              if UPLOAD_ANSWER[method] then expected[#expected + 1] = UPLOAD_ANSWER[method] end
            end
          end
          written(out)
          -- The key exchange and the bind: mostly right, sometimes hostile.
          if p.state == "key_wait" then
            local key = { Header = { Method = "PrivateKeyRes" }, Body = { Result = 0, PrivateKey = "PRIVATEKEY123456" } }
            if rng(4) == 1 then mutate(rng, S, key) end
            local ev, o = call("receive", p.receive, wire(rng, S, key), t)
            take(ev)
            if p.state == "bind_wait" then S.key = "PRIVATEKEY123456" end
            written(o)
          end
          local bind = { Header = { Method = "BindRes" }, Body = encrypted(S, cjson.encode {
            Result = 0, BindId = "test001", Speed = rng(50), BeginTime = 0, EndTime = 24 }) }
          if rng(5) == 1 then mutate(rng, S, bind) end
          take((call("receive", p.receive, wire(rng, S, bind), t)))
          for _ = 1, rng(30) do
            if not connected then break end
            local k = rng(10)
            if k <= 2 then
              for i = 1, rng(4) do
                local rec = call("submit", p.submit, sms(i, { id = "m" .. iter .. "-" .. #recs }))
                if rec then recs[#recs + 1] = rec end
              end
            elseif k == 3 and rng(3) == 1 then
              local h = call("upload", p.upload, "\255\216\255" .. ("u"):rep(rng(3000)) .. "\255\217", ".jpg")
              if h then handles[#handles + 1] = h end
            elseif k == 4 and rng(10) == 1 then
              local o = call("close", p.close, t)
              written(o)
            elseif k <= 5 then
              t = t + (rng(6) == 1 and rng(40) or rng(100) / 1000)
              local ev, o = call("poll", p.poll, t)
              take(ev)
              written(o)
            else
              local bytes = {}
              for j = 1, rng(4) do
                local m = server_msg(rng, sent, expected)
                if rng(3) == 1 then mutate(rng, S, m) end
                bytes[j] = wire(rng, S, m)
                totals.frames = totals.frames + 1
              end
              bytes = table.concat(bytes)
              -- in pieces, as a socket may give them
              local pos = 1
              while connected and pos <= #bytes do
                local n = rng(4) == 1 and rng(8) or #bytes
                local ev, o = call("receive", p.receive, bytes:sub(pos, pos + n - 1), t)
                take(ev)
                written(o)
                pos = pos + n
              end
            end
          end
          take((call("disconnected", p.disconnected, t)))
          totals.reconnects = totals.reconnects + 1
          t = t + 1
        end
        local gone = errors.new { category = "network", code = "closed", provider = "oneshot", message = "end" }
        take((call("drop_queued", p.drop_queued, gone)))
        take((call("drop_uploads", p.drop_uploads, gone)))
        assert.equal(0, p:queued(), where)
        assert.equal(0, p:in_flight(), where)
        for i, rec in ipairs(recs) do
          assert.equal(1, outcomes[rec], where .. ": message " .. i .. " outcomes")
        end
        for i, h in ipairs(handles) do
          assert.equal(1, upload_ends[h], where .. ": upload " .. i .. " endings")
        end
        totals.messages = totals.messages + #recs
        totals.uploads = totals.uploads + #handles
      end
      -- The loop did reach the paths it is meant to (the report prints it).
      assert.is_true(totals.frames > iterations * 5, "frames " .. totals.frames)
      assert.is_true(totals.messages > iterations, "messages " .. totals.messages)
      assert.is_true(totals.uploads > 0)
      local seen = {}
      for _, k in ipairs { "bound", "bind_failed", "result", "requeued", "report", "spam", "upload_step",
                           "upload_done", "upload_failed", "protocol_error", "dead", "unbound", "alive_res" } do
        assert.is_true((kinds[k] or 0) > 0, "no " .. k .. " event")
        seen[#seen + 1] = k .. " " .. kinds[k]
      end
      print(("\n  mutation loop: %d iterations, %d frames, %d messages, %d uploads, %d connections; %s"):format(
        iterations, totals.frames, totals.messages, totals.uploads, totals.reconnects, table.concat(seen, ", ")))
    end)
  end)
end)
