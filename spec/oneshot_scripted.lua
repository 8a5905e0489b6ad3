-- A scripted OneShot server for the sans-I/O protocol specs: it builds the
-- server's frames with the codec (bodies encrypted with the core's AES),
-- reads what the client wrote, and drives a protocol to the bound state in
-- virtual time. Used by spec/oneshot_protocol_spec.lua and
-- spec/oneshot_hostile_spec.lua.
local core = require "ksms.core"
local cjson = require "cjson"
local codec = require "ksms.oneshot.codec"
local protocol = require "ksms.oneshot.protocol"

local _M = {}

_M.KEY, _M.IV = "0123456789abcdefEXTRA", "fedcba9876543210"
local KEY16, IV = _M.KEY:sub(1, 16), _M.IV

function _M.server(key)
  local S = { key = key or KEY16, dec = codec.decoder() }
  -- A frame of method; encrypt: the body's JSON AES+Base64 (as BindRes).
  function S.frame(method, body, encrypt)
    if body ~= nil and encrypt then
      body = core.b64encode(core.aes128cbc_encrypt(codec.body_json(method, body), S.key, IV))
    end
    return codec.frame(method, body)
  end
  -- every message in bytes, bodies decrypted when they are strings
  function S.read(bytes)
    local msgs = assert(S.dec:feed(bytes))
    for _, m in ipairs(msgs) do
      if type(m.Body) == "string" then
        m.encrypted = true
        m.Body = cjson.decode((assert(core.aes128cbc_decrypt(core.b64decode(m.Body), S.key, IV))))
      end
    end
    return msgs
  end
  return S
end

function _M.new(opts)
  local o = { id = "test001", password = "pw#$%", key = _M.KEY, iv = IV, id_prefix = "T" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return protocol.new(o)
end

function _M.of_type(events, t)
  local out = {}
  for _, e in ipairs(events) do if e.type == t then out[#out + 1] = e end end
  return out
end

-- A protocol bound at time 0 with the given Speed, and its server.
function _M.bound(speed, opts)
  local p, S = _M.new(opts), _M.server()
  local msgs = S.read(p:connected(0))
  assert(msgs[1].Header.Method == "BindReq")
  local ev = p:receive(S.frame("BindRes", { Result = 0, BindId = "test001", Speed = speed or 100,
    BeginTime = 0, EndTime = 24, EffectiveTime = 3 }, true), 0)
  assert(ev[1].type == "bound")
  return p, S
end

function _M.sms(i, extra)
  local m = { to = "010-1234-" .. string.format("%04d", i % 10000), from = "02-1234-5678", text = "hello " .. i }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- Polls until nothing more is written before `until_t`; returns sent bodies.
function _M.drain(p, S, t0, until_t)
  local sent, t = {}, t0
  while t <= until_t do
    local _, out = p:poll(t)
    for _, m in ipairs(S.read(out)) do
      if m.Header.Method == "MsgSendReq" then sent[#sent + 1] = m.Body end
    end
    if p:queued() == 0 then break end
    local d = p:next_deadline()
    if not d or d > until_t then break end
    t = math.max(t, d)
  end
  return sent, t
end

-- The server's MsgSendRes for a sent body, with the given Result.
function _M.answer(S, body, result)
  return S.frame("MsgSendRes", { UserMsgId = body.UserMsgId, UserMsgSubId = body.UserMsgSubId,
    PhoneNo = body.PhoneNo, MsgType = body.MsgType, Result = result, UserData = "" })
end

return _M
