-- bench/codec.lua: OneShot frames per second, encode (Lua table -> wire
-- bytes) and decode (wire bytes -> Lua table), beside two baselines measured
-- in this same run:
--   * a C loop with reused zlib streams (bench/bin/zlib_loop): the floor
--   * lua-zlib + lua-cjson, what a Lua user would write today (not byte-exact)
-- Goals (issue 2): encode >= 0.8 of the C deflate rate, decode >= 0.5 of the
-- C inflate rate, both faster than lua-zlib + lua-cjson.
--
-- Run with `make bench` (builds the baseline first).

local codec = require "ksms.oneshot.codec"
local cjson = require "cjson"
local clock = os.clock

local ITER = tonumber(os.getenv("BENCH_ITER") or "") or 100000

-- The document's MsgSendReq example (shared/vectors, 3.3.6).
local frames = cjson.decode(assert(io.open("spec/data/oneshot_doc_frames.json")):read("*a")).frames
local doc
for _, f in ipairs(frames) do
  if f.json:find('"MsgSendReq"', 1, true) then doc = f end
end
local msg = cjson.decode(doc.json)
local body = msg.Body
local wire = codec.frame("MsgSendReq", body)
assert(wire == ("Content-Length:%d\r\n"):format(doc.content_length) .. require("ksms.core").unhex(doc.zlib_hex))

-- CPU time per call, best of ROUNDS: each round measures every contender
-- once, in turn, so a noisy moment on the machine hurts all of them alike
-- and the best round of each is compared.
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 5
local per_round = math.max(1, math.floor(ITER / ROUNDS))

local function rate(fn, n)
  fn() -- warm up
  local t0 = clock()
  for _ = 1, n do fn() end
  return n / (clock() - t0)
end

-- Baseline 1: the C loop, run as its own process on the same JSON.
local tmp = os.tmpname()
local f = assert(io.open(tmp, "wb")); f:write(doc.json); f:close()
local function c_loop()
  local p = assert(io.popen("bench/bin/zlib_loop " .. tmp .. " " .. per_round))
  local out = p:read("*a"); p:close()
  local d = assert(tonumber(out:match("deflate_ns ([%d.]+)")), "zlib_loop failed: " .. out)
  return 1e9 / d, 1e9 / tonumber(out:match("inflate_ns ([%d.]+)"))
end

local frame = codec.frame
local dec = codec.decoder()
local function ksms_encode() return frame("MsgSendReq", body) end
local function ksms_decode() return dec:feed(wire)[1].Body.Message end

-- Baseline 2: lua-zlib + lua-cjson, what a Lua user would write today.
local ok_zlib, zlib = pcall(require, "zlib")
local lz_encode_fn, lz_decode_fn
if ok_zlib then
  local encode, decode = cjson.encode, cjson.decode
  lz_encode_fn = function()
    local z = zlib.deflate(9)(encode(msg), "finish")
    return "Content-Length:" .. #z .. "\r\n" .. z
  end
  lz_decode_fn = function()
    local n, rest = wire:match("^Content%-Length:(%d+)\r\n()")
    local payload = zlib.inflate()(wire:sub(rest, rest + n - 1))
    return decode(payload).Body.Message
  end
end

local best = { c_deflate = 0, c_inflate = 0, encode = 0, decode = 0, lz_encode = 0, lz_decode = 0 }
local function keep(name, r) if r > best[name] then best[name] = r end end
for _ = 1, ROUNDS do
  local cd, ci = c_loop()
  keep("c_deflate", cd); keep("c_inflate", ci)
  keep("encode", rate(ksms_encode, per_round))
  keep("decode", rate(ksms_decode, per_round))
  if ok_zlib then
    keep("lz_encode", rate(lz_encode_fn, per_round))
    keep("lz_decode", rate(lz_decode_fn, per_round))
  end
end
os.remove(tmp)
local c_deflate, c_inflate, encode_rate, decode_rate = best.c_deflate, best.c_inflate, best.encode, best.decode
local lz_encode = ok_zlib and best.lz_encode or nil
local lz_decode = ok_zlib and best.lz_decode or nil

local function line(name, r, base, goal)
  local s = string.format("%-34s %10.0f frames/s", name, r)
  if base then s = s .. string.format("   %.2fx of %s", r / base.rate, base.name) end
  if goal then s = s .. string.format(" (goal >= %.2f: %s)", goal, r / base.rate >= goal and "met" or "MISSED") end
  print(s)
end

print(string.format("OneShot MsgSendReq: %d bytes of JSON, %d on the wire, %s, best of %d rounds of %d",
  #doc.json, #wire, _VERSION .. (jit and (" " .. jit.version) or ""), ROUNDS, per_round))
print("encode (Lua table -> wire bytes)")
line("  C deflate loop (reused stream)", c_deflate)
line("  ksms codec.frame", encode_rate, { name = "C loop", rate = c_deflate }, 0.8)
if lz_encode then
  line("  lua-zlib + lua-cjson", lz_encode, { name = "C loop", rate = c_deflate })
  print(string.format("  ksms vs lua-zlib + lua-cjson: %.2fx", encode_rate / lz_encode))
end
print("decode (wire bytes -> Lua table)")
line("  C inflate loop (reused stream)", c_inflate)
line("  ksms codec.decoder:feed", decode_rate, { name = "C loop", rate = c_inflate }, 0.5)
if lz_decode then
  line("  lua-zlib + lua-cjson", lz_decode, { name = "C loop", rate = c_inflate })
  print(string.format("  ksms vs lua-zlib + lua-cjson: %.2fx", decode_rate / lz_decode))
else
  print("  (lua-zlib not installed: apt-get install lua-zlib for that baseline)")
end
