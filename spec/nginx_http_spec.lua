-- ksms inside nginx: the C core loaded by nginx's LuaJIT, the cosocket
-- transport (ksms.transport.ngx) against the fake providers, transport
-- selection by phase, the MessageMe MO example, and proof that sending
-- does not block the worker. This spec runs outside nginx (either
-- interpreter) and drives a real nginx over HTTP; nginx loads lua/ and
-- build/luajit/ of this repository. ksms.transport.http1 (no I/O) is also
-- checked here directly.
local nginx_control = require "nginx_control"
local fake_control = require "fake_control"
local http1 = require "ksms.transport.http1"
local cjson = require "cjson"
local socket = require "socket"
local ksms = require "ksms"

local ROOT = nginx_control.repo_root()

-- ---- http1 without nginx --------------------------------------------------

-- A reader over fixed chunks; step = 1 hands out one byte at a time.
local function chunk_reader(data, step)
  local pos = 1
  return http1.reader(function(max)
    if pos > #data then return nil, "closed" end
    local n = math.min(max, step or #data)
    local s = data:sub(pos, pos + n - 1)
    pos = pos + n
    return s
  end)
end

local function parse(data, opts, step)
  return http1.read_response(chunk_reader(data, step), opts or {})
end

describe("ksms.transport.http1", function()
  local defaults = { timeout = 30, connect_timeout = 10, user_agent = "ksms/test" }

  it("writes the request libcurl writes: Host, User-Agent, Accept, headers, type, length", function()
    local p = http1.prepare({ url = "http://127.0.0.1:8080/APIV2/sms_send?x=1#frag",
      headers = { { "x-waple-authorization", "k" }, { "X-Empty", "" }, { "X-Num", 5 } },
      form = { { "msg", "안녕 a+b" }, { "n", 1 } } }, defaults)
    assert.equal("POST /APIV2/sms_send?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ksms/test\r\n"
      .. "Accept: */*\r\nx-waple-authorization: k\r\nX-Empty:\r\nX-Num: 5\r\n"
      .. "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 32\r\n\r\n", p.head)
    assert.equal(ksms.core.urlencode_form { { "msg", "안녕 a+b" }, { "n", 1 } }, p.body)
    assert.same({ "127.0.0.1", 8080, false }, { p.host, p.port, p.tls })
    local s = http1.prepare({ url = "HTTPS://Example.COM", method = "PUT" }, defaults)
    assert.equal("PUT / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ksms/test\r\nAccept: */*\r\n"
      .. "Content-Length: 0\r\n\r\n", s.head)
    assert.same({ "example.com", 443, true }, { s.host, s.port, s.tls })
    local raw = http1.prepare({ url = "http://h/p", body = "x", headers = { Connection = "close" } }, defaults)
    assert.is_nil(raw.head:lower():find("content-type", 1, true))
    assert.is_true(raw.close)
    local mp = http1.prepare({ url = "http://h/", multipart = { { name = "a", value = "1" } }, boundary = "B" }, defaults)
    assert.equal(ksms.core.multipart_body({ { name = "a", value = "1" } }, "B"), mp.body)
    assert.matches("Content%-Type: multipart/form%-data; boundary=B\r\n", mp.head)
    local missing = http1.prepare({ url = "http://h/", multipart = { { name = "f", file = "/nonexistent/x" } } }, defaults)
    assert.equal("file", missing.err.code)
    assert.is_false(missing.err.maybe_sent)
  end)

  it("raises for malformed requests before anything is sent, naming no value", function()
    local bad = {
      { url = "ftp://h/" }, { url = "http://h/ x" }, { url = 5 }, { url = "http://u:secret@h/" },
      { url = "http://h/", body = "a", form = {} }, { url = "http://h/", method = "post" },
      { url = "http://h/", headers = { ["Content-Length"] = "3" } },
      { url = "http://h/", headers = { X = "secret\r\nEvil: 1" } }, { url = "http://h/", nope = 1 },
      { url = "http://h/", boundary = "b" }, { url = "http://h/", method = "HEAD", body = "x" },
      { url = "http://h/", timeout = 0 },
      { url = "http://h/", multipart = { { name = "a", value = "1" } }, headers = { ["Content-Type"] = "x" } },
    }
    for i, req in ipairs(bad) do
      local ok, err = pcall(http1.prepare, req, defaults, i)
      assert.is_false(ok, i)
      assert.matches("^ksms.transport: bad request #" .. i .. ": ", err)
      assert.is_nil(err:find("secret", 1, true))
    end
  end)

  it("reads Content-Length, chunked (extensions, trailers) and close-delimited bodies, byte by byte", function()
    local cases = {
      { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello", "hello", true },
      { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\n",
        "hello world", true },
      { "HTTP/1.1 200 OK\r\n\r\nuntil close", "until close", false },
      { "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false },
      { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "ok", true },
      { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", false },
      { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", "", true },
      { "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", true },
    }
    for i, c in ipairs(cases) do
      for _, step in ipairs({ 1, 3, 1e9 }) do
        local res, keep = parse(c[1], { max_response = 100 }, step)
        assert.is_table(res, i .. ":" .. step .. ": " .. tostring(keep))
        assert.equal(c[2], res.body, i)
        assert.equal(c[3], keep, i)
      end
    end
    local res = parse(cases[1][1])
    assert.equal("1, 2", res.headers["x-a"])
    assert.equal("Content-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\n", res.raw_headers)
    assert.equal("a b", parse("HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 0\r\n\r\n").headers["x-f"])
    -- A HEAD answer has a length but no body.
    local head = parse("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", { head = true })
    assert.equal("", head.body)
  end)

  it("tells an empty reply, a cut body, garbage and an oversized answer apart", function()
    local none, code = parse("", {})
    local _
    assert.is_nil(none)
    assert.equal("empty", code)
    _, code = parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    assert.equal("recv", code)
    _, code = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    assert.equal("recv", code)
    _, code = parse("garbage\r\n\r\n")
    assert.equal("protocol", code)
    _, code = parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    assert.equal("protocol", code)
    _, code = parse("HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", { max_response = 100 })
    assert.equal("too_large", code)
    _, code = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" .. ("x"):rep(101) .. "\r\n0\r\n\r\n",
      { max_response = 100 })
    assert.equal("too_large", code)
    _, code = parse("HTTP/1.1 200 OK\r\n\r\n" .. ("x"):rep(101), { max_response = 100 })
    assert.equal("too_large", code)
    _, code = parse("HTTP/1.1 200 OK\r\nX: " .. ("v"):rep(300 * 1024) .. "\r\n\r\n")
    assert.equal("too_large", code)
  end)
end)

-- ---- http1 on hostile input: linear time, bounded work --------------------

-- CPU seconds fn takes (os.clock: this process only, so the machine's load
-- hardly counts), and fn's first two results.
local function cpu(fn)
  local t0 = os.clock()
  local a, b = fn()
  return os.clock() - t0, a, b
end

-- The CPU allowed for n bytes of input: 0.25 s per 64 KiB. The linear
-- parsers take a few ms per 64 KiB; the old trims took tens of seconds for
-- 64 KiB, the old joins and buffers seconds for a few hundred KiB.
local function bound(n)
  return 0.25 * math.max(n, 65536) / 65536
end

local function linear(what, n, fn)
  collectgarbage()
  local t, a, b = cpu(fn)
  assert.is_true(t < bound(n), ("%s: %.3f s of CPU for %d bytes (bound %.2f s)"):format(what, t, n, bound(n)))
  return a, b
end

describe("ksms.transport.http1 on hostile input", function()
  local K64 = 64 * 1024
  local blanks = (" \t"):rep(K64 / 2 - 64) -- one line of it stays under http1's 64 KiB line limit
  local quarter = blanks:sub(1, K64 / 4) -- a chunk-size line stays under 64 KiB of framing

  it("parses headers with long blank runs in linear time, keeping inner blanks", function()
    local h = linear("parse_headers", 4 * K64, function()
      return http1.parse_headers { "X-A: a" .. blanks .. "b" .. blanks, "X-B:" .. blanks .. "c" .. blanks .. "d",
        "X-C: e", " " .. blanks .. "f" .. blanks .. "g" .. blanks }
    end)
    assert.equal("a" .. blanks .. "b", h["x-a"])
    assert.equal("c" .. blanks .. "d", h["x-b"])
    assert.equal("e f" .. blanks .. "g", h["x-c"])
    assert.equal("", linear("parse_headers (blanks only)", K64, function()
      return http1.parse_headers { "X-E:" .. blanks }
    end)["x-e"])
    assert.equal("v", http1.trim(blanks .. "v" .. blanks, 1))
  end)

  it("joins thousands of repeats of a header (and of a folded line) in linear time", function()
    local lines, n, bytes = {}, 128 * 1024, 0
    for i = 1, 2 * n do
      lines[i] = i % 2 == 1 and "X:" or " " -- an empty X, then an empty continuation of it
      bytes = bytes + #lines[i]
    end
    local h = linear("parse_headers (repeats)", bytes, function() return http1.parse_headers(lines) end)
    assert.equal(3 * n - 2, #h.x) -- ", " between the repeats, " " for each continuation
  end)

  it("checks Content-Length, Transfer-Encoding and Keep-Alive values in linear time", function()
    local how, why = linear("framing (Content-Length)", K64, function()
      return http1.framing(200, { ["content-length"] = "1" .. blanks .. "2" })
    end)
    assert.is_nil(how)
    assert.equal("bad Content-Length", why)
    local list = ("7, "):rep(21845) .. "7"
    how, why = linear("framing (a long list)", K64, function()
      return http1.framing(200, { ["content-length"] = list })
    end)
    assert.same({ "length", 7 }, { how, why })
    assert.equal("chunked", linear("framing (Transfer-Encoding)", K64, function()
      return http1.framing(200, { ["transfer-encoding"] = ("gzip," .. blanks):rep(2) .. "chunked" .. blanks })
    end))
    assert.equal("close", http1.framing(200, { ["transfer-encoding"] = "xchunked" }))
    assert.equal(30, linear("keepalive_timeout", 2 * K64, function()
      return http1.keepalive_timeout { ["keep-alive"] = ("timeout" .. blanks):rep(2) .. "max=5, timeout =" .. blanks .. "30" }
    end))
    assert.is_false(linear("keep_alive", K64, function()
      return http1.keep_alive(1, { connection = blanks .. "Close" .. blanks })
    end))
  end)

  it("reads hostile status lines, headers, chunk sizes and trailers in linear time", function()
    local cases = {
      { "status line", "HTTP/1.1 200 " .. blanks .. "x\r\nContent-Length: 0\r\n\r\n", 200 },
      { "header blank runs", "HTTP/1.1 200 OK\r\n" .. ("X-Blank: a" .. blanks .. "b\r\n"):rep(3)
        .. " " .. blanks .. "c\r\nContent-Length: 2\r\n\r\nok", 200 },
      { "chunk size lines", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. quarter .. "2;" .. quarter .. "\r\nok\r\n0" .. blanks .. "\r\n\r\n", 200 },
      { "trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        .. ("T: a" .. blanks .. "b\r\n"):rep(3) .. "\r\n", 200 },
    }
    for _, c in ipairs(cases) do
      for _, step in ipairs({ 1e9, 1 }) do -- the whole answer at once, or a byte at a time
        local res, code = linear(c[1] .. " step " .. step, #c[2], function() return parse(c[2], {}, step) end)
        assert.is_table(res, c[1] .. ": " .. tostring(code))
        assert.equal(c[3], res.status)
      end
    end
    local res = parse(cases[2][2])
    assert.equal(("a" .. blanks .. "b, "):rep(3):sub(1, -3) .. " c", res.headers["x-blank"])
    assert.equal("ok", res.body)
  end)

  it("ends endless interim (1xx) answers and framing out of proportion as too_large, in bounded work", function()
    local endless = ("HTTP/1.1 102 Processing\r\n\r\n"):rep(40000) .. "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    local res, code = linear("1xx", #endless, function() return parse(endless) end)
    assert.is_nil(res)
    assert.equal("too_large", code)
    -- 32 interim answers are fine (102 Processing during a long task).
    assert.equal(200, parse(("HTTP/1.1 102 Processing\r\n\r\n"):rep(32)
      .. "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").status)
    -- Fewer, bigger 1xx answers: their headers count with the final one's.
    local big = ("HTTP/1.1 103 Early Hints\r\nLink: " .. ("l"):rep(60000) .. "\r\n\r\n"):rep(5)
      .. "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    res, code = parse(big)
    assert.is_nil(res)
    assert.equal("too_large", code)
    -- Two million one-byte chunks (12 MB): refused after about 13,000.
    local tiny = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. ("1\r\nx\r\n"):rep(2000000) .. "0\r\n\r\n"
    local detail
    res, code, detail = parse(tiny, { max_response = 4 * 1024 * 1024 }, 16384)
    assert.is_nil(res)
    assert.equal("too_large", code)
    assert.matches("chunked framing out of proportion", detail)
    local t = cpu(function() return parse(tiny, { max_response = 4 * 1024 * 1024 }, 16384) end)
    assert.is_true(t < 0.25, ("%.3f s of CPU"):format(t))
    -- Ordinary chunks stay fine: 1 MiB in 256-byte chunks.
    local chunk = ("c"):rep(256)
    local ok = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. ("100\r\n" .. chunk .. "\r\n"):rep(4096)
      .. "0\r\n\r\n", { max_response = 4 * 1024 * 1024 })
    assert.equal(1024 * 1024, #ok.body)
    -- Chunk extensions are framing too.
    res, code = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. ("1;" .. ("e"):rep(60000) .. "\r\nx\r\n"):rep(3) .. "0\r\n\r\n")
    assert.is_nil(res)
    assert.equal("too_large", code)
  end)

  it("refuses conflicting Content-Length values, in one header or in two", function()
    for _, head in ipairs({ "Content-Length: 2\r\nContent-Length: 3", "Content-Length: 2, 3", "Content-Length: 2,,2" }) do
      local res, code, detail = parse("HTTP/1.1 200 OK\r\n" .. head .. "\r\n\r\nokk")
      assert.is_nil(res)
      assert.equal("protocol", code)
      assert.matches("Content%-Length", detail)
    end
    for _, head in ipairs({ "Content-Length: 2\r\nContent-Length: 2", "Content-Length: 2, 2", "Content-Length:  02 " }) do
      assert.equal("ok", parse("HTTP/1.1 200 OK\r\n" .. head .. "\r\n\r\nok").body)
    end
  end)
end)

describe("ksms.transport selection outside nginx", function()
  it("picks libcurl; the cosocket transport raises, saying why", function()
    local transport = require "ksms.transport"
    assert.equal("curl", transport.default_kind())
    local t = transport.new { timeout = 5 }
    assert.matches("^ksms.core.http_client", tostring(t))
    t:close()
    local c = ksms.client("senders", { api_key = "k", transport = "curl" })
    assert.matches("^ksms.core.http_client", tostring(c.transport))
    c:close()
    assert.has_error(function() transport.new { kind = "ngx" } end,
      'ksms.transport.ngx: not running inside nginx (OpenResty / lua-nginx-module); '
      .. 'use the libcurl transport (transport = "curl")')
    assert.has_error(function() transport.new { kind = "libcurl" } end,
      'ksms.transport: kind must be "ngx" or "curl", got libcurl')
  end)
end)

-- ---- inside nginx -------------------------------------------------------

local available, why = nginx_control.available()
if not available then
  describe("ksms inside nginx", function() pending("skipped: " .. why) end)
  return
end

-- The codec and text results both sides compute (binary shown as hex).
local PROBE = [==[
local core = require "ksms.core"
local ksms = require "ksms"
local text = require "ksms.rules.text"
local phone = require "ksms.rules.phone"
local hex = core.hex
local function e(v, err)
  if v == nil and type(err) == "table" then return { err = err.category .. "/" .. tostring(err.code) } end
  return v
end
local lim = { sms = 90, lms = 2000, charset = "cp949" }
local ok, bad = ksms.charset_check("가됬나😀a", "euc-kr")
return {
  cp949 = { ksms.cp949_len("안녕 hi"), ksms.cp949_len("됬 뷁 ksms"), e(ksms.cp949_len("\255bad")) },
  euckr = { ok = ok or false, bad = bad },
  cp949_ok = ksms.charset_check("가됬나", "cp949") or false,
  b64 = { core.b64encode("ksms\0\255"), core.b64decode("a3Ntcw==") },
  hex = { core.hex("\0\1\254\255"), core.unhex("00ff") == "\0\255" },
  zlib = hex(core.deflate(("한글 "):rep(50))),
  inflate = core.inflate(core.deflate("왕복")),
  aes = hex(core.aes128cbc_encrypt("0123456789abcdef가나다", "0123456789abcdef", "fedcba9876543210")),
  form = core.urlencode_form { { "msg", "안녕 a+b&c=d*-._~" }, { "n", 42 } },
  multipart = hex(core.multipart_body({ { name = "a", value = "가" },
    { name = "f", data = "\255\216", filename = "x.jpg", content_type = "image/jpeg" } }, "B0und")),
  frame = hex(core.frame_encode('{"a":"가"}')),
  kind45 = { text.choose_kind(("가"):rep(45), "auto", false, lim) },
  kind46 = { text.choose_kind(("가"):rep(46), "auto", false, lim) },
  too_long = e(text.choose_kind(("가"):rep(1001), "auto", false, lim)),
  phone = { e(phone.normalize("+82 10-1234-5678")), e(phone.normalize("12", "to")) },
  chars = text.chars("가a😀"),
}
]==]

-- The handlers nginx runs, as a module in a temp directory.
local HANDLERS = [==[
local cjson = require "cjson.safe"
local ksms = require "ksms"
cjson.encode_sparse_array(true)
local H = {}

-- A JSON-able copy (functions and userdata left out).
local function plain(v, depth)
  local t = type(v)
  if t == "table" then
    if (depth or 0) > 8 then return "..." end
    local c = {}
    for k, x in pairs(v) do
      if type(k) == "string" or type(k) == "number" then c[k] = plain(x, (depth or 0) + 1) end
    end
    return c
  elseif t == "function" or t == "userdata" or t == "thread" then
    return nil
  end
  return v
end

local function reply(t)
  local body = assert(cjson.encode(plain(t)))
  ngx.header.content_type = "application/json"
  ngx.header.content_length = #body
  ngx.print(body)
end

local function body_json()
  ngx.req.read_body()
  return cjson.decode(ngx.req.get_body_data() or "{}")
end

-- MMS images travel as Base64 in the JSON.
local function unb64(args)
  if type(args) == "table" and type(args.image) == "table" then
    for _, im in ipairs(args.image) do
      if type(im) == "table" and im.data_b64 then im.data = ngx.decode_base64(im.data_b64); im.data_b64 = nil end
    end
  end
  return args
end

local function guarded(fn)
  return function()
    local ok, err = pcall(fn)
    if not ok then reply { raised = tostring(err) } end
  end
end

-- POST { provider, options, calls = { { method, args, opts }, ... } }
H.call = guarded(function()
  local q = body_json()
  local client = ksms.client(q.provider, q.options)
  local out = { transport = tostring(client.transport), results = {} }
  for i, c in ipairs(q.calls or {}) do
    local ok, res, err = pcall(client[c.method], client, unb64(c.args), c.opts)
    out.results[i] = ok and { res = res, err = err } or { raised = tostring(res) }
  end
  client:close()
  reply(out)
end)

-- POST { provider, options, msgs, concurrency, cancel }: send_many with
-- the streaming hooks; returns the order of the calls and the outcomes.
H.stream = guarded(function()
  local q = body_json()
  local client = ksms.client(q.provider, q.options)
  local log, live, peak, started = {}, 0, 0, {}
  local outs = client:send_many(q.msgs, { concurrency = q.concurrency,
    on_sending = function(i)
      live, started[i] = live + 1, true
      if live > peak then peak = live end
      log[#log + 1] = "s" .. i
      if i == q.cancel then return false end
    end,
    on_outcome = function(i, o) if started[i] then live = live - 1 end; log[#log + 1] = "o" .. i .. (o.ok and "" or ":" .. o.category) end })
  client:close()
  reply { log = log, outs = outs, peak = peak }
end)

-- POST { opts, reqs, many, concurrency }: the transport alone.
H.transport = guarded(function()
  local q = body_json()
  local t = require("ksms.transport").new(q.opts or {})
  local out = { transport = tostring(t) }
  local t0 = ngx.now()
  if q.many then
    out.results = t:request_many(q.reqs, q.concurrency and { concurrency = q.concurrency })
  else
    out.results = {}
    for i, r in ipairs(q.reqs) do
      local res, err = t:request(r)
      out.results[i] = res or err
    end
  end
  ngx.update_time()
  out.elapsed = ngx.now() - t0
  t:close()
  reply(out)
end)

H.codec = guarded(function()
  reply(require("ksms_spec_probe")) -- the PROBE source, run as a module
end)

local function attempts(dict, prefix)
  local ok, err = pcall(ksms.client, "senders", { api_key = "k", base_url = "http://127.0.0.1:1" })
  dict:set(prefix .. ".default", ok and tostring(err.transport) or tostring(err))
  ok, err = pcall(require("ksms.transport").new, { kind = "ngx" })
  dict:set(prefix .. ".ngx", ok and tostring(err) or tostring(err))
  ok, err = pcall(ksms.client, "senders", { api_key = "k", base_url = "http://127.0.0.1:1", transport = "curl" })
  dict:set(prefix .. ".curl", ok and tostring(err.transport) or tostring(err))
  if ok then err:close() end
end

function H.init_worker() attempts(ngx.shared.ksms_test, "init_worker") end

-- A transport made in the content phase, then used in the log phase.
function H.content_then_log()
  H.saved = require("ksms.transport").new()
  ngx.say("ok")
end

function H.log_phase()
  attempts(ngx.shared.ksms_test, "log")
  local ok, err = pcall(H.saved.request, H.saved, { url = "http://127.0.0.1:1/" })
  ngx.shared.ksms_test:set("log.use", ok and "sent" or tostring(err))
end

H.report = guarded(function()
  local dict, out = ngx.shared.ksms_test, {}
  for _, k in ipairs(dict:get_keys(0)) do out[k] = dict:get(k) end
  reply(out)
end)

-- POST { options, msg }: sends from a timer (ngx.timer.at), waits for it.
H.timer = guarded(function()
  local q = body_json()
  local dict = ngx.shared.ksms_test
  dict:delete("timer")
  assert(ngx.timer.at(0, function()
    local client = ksms.client("senders", q.options)
    local res, err = client:send(q.msg)
    dict:set("timer", cjson.encode(plain { phase = ngx.get_phase(), transport = tostring(client.transport),
      res = res, err = err }))
  end))
  for _ = 1, 500 do
    local v = dict:get("timer")
    if v then return reply(cjson.decode(v)) end
    ngx.sleep(0.01)
  end
  reply { raised = "the timer did not finish" }
end)

return H
]==]

local H = require "spec_helper"
local write = H.write_file

-- A directory nginx's workers can read (mode 755).
local function mkdtemp()
  local d = os.tmpname()
  os.remove(d)
  assert(H.exec_ok("mkdir -m 755 " .. d), "mkdir " .. d)
  return d
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- One HTTP exchange with nginx: the decoded JSON answer (which must not
-- be a raised error unless may_raise).
local function post(nginx, path, value, may_raise)
  local body = value and cjson.encode(value) or ""
  local res = assert(fake_control.http(nginx.port, value and "POST" or "GET", path, body,
    { ["Content-Type"] = "application/json" }, 20))
  assert.equal(200, res.status, res.body)
  local decoded = cjson.decode(res.body)
  if not may_raise then assert.is_nil(decoded.raised, decoded.raised) end
  return decoded
end

local function jpeg(n) -- the fake checks the FF D8 FF start
  return "\255\216\255\224" .. ("j"):rep(n - 4)
end

-- n POSTs to nginx at once over non-blocking LuaSocket; returns the
-- answers (status, body) in order and the elapsed seconds.
local function concurrent_posts(port, path, value, n, limit)
  local body = cjson.encode(value)
  local wire = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
    .. "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"):format(path, port, #body, body)
  local t0 = socket.gettime()
  local conns, by_sock = {}, {}
  for i = 1, n do
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect("127.0.0.1", port))
    assert(s:send(wire))
    s:settimeout(0)
    conns[i] = { sock = s, parts = {} }
    by_sock[s] = conns[i]
  end
  local open = n
  while open > 0 do
    assert(socket.gettime() - t0 < limit, "answers did not come within " .. limit .. " s")
    local want = {}
    for _, c in ipairs(conns) do if not c.done then want[#want + 1] = c.sock end end
    local ready = socket.select(want, nil, 0.5)
    for _, s in ipairs(ready) do
      local c = by_sock[s]
      local data, err, partial = s:receive(65536)
      local piece = data or partial
      if piece and #piece > 0 then c.parts[#c.parts + 1] = piece end
      if err == "closed" then
        c.done = true
        open = open - 1
        s:close()
      end
    end
  end
  local elapsed = socket.gettime() - t0
  local out = {}
  for i, c in ipairs(conns) do
    local raw = table.concat(c.parts)
    out[i] = { status = tonumber(raw:match("^HTTP/1%.%d (%d%d%d)")), body = raw:match("\r\n\r\n(.*)$") }
  end
  return out, elapsed
end

-- The fake's records of what a call sent, first through nginx, then
-- through libcurl in this process; both must be the same bytes.
local function same_as_curl(fake, nginx, provider, options, calls, curl_options)
  fake:reset()
  local via_ngx = post(nginx, "/call", { provider = provider, options = options, calls = calls })
  local ngx_reqs = fake:requests()
  fake:reset()
  local o = {}
  for k, v in pairs(options) do o[k] = v end
  for k, v in pairs(curl_options or {}) do o[k] = v end
  o.transport = "curl"
  local client = ksms.client(provider, o)
  local via_curl = {}
  for i, c in ipairs(calls) do
    local args = c.args
    if type(args) == "table" and type(args.image) == "table" then
      for _, im in ipairs(args.image) do
        if im.data_b64 then im.data = ksms.core.b64decode(im.data_b64); im.data_b64 = nil end
      end
    end
    local res, err = client[c.method](client, args, c.opts)
    via_curl[i] = { res = res, err = err }
  end
  client:close()
  local curl_reqs = fake:requests()
  assert.equal(#curl_reqs, #ngx_reqs)
  assert.is_true(#ngx_reqs > 0)
  for i, a in ipairs(ngx_reqs) do
    local b = curl_reqs[i]
    assert.equal(b.method, a.method)
    assert.equal(b.path, a.path)
    assert.same(b.query, a.query)
    -- A multipart boundary is random; the rest is byte for byte.
    local ba = (a.headers["content-type"] or ""):match("boundary=(.+)$")
    local bb = (b.headers["content-type"] or ""):match("boundary=(.+)$")
    local body, ha = a.body, {}
    for k, v in pairs(a.headers) do ha[k] = v end
    if ba and bb then
      body = body:gsub(ba:gsub("%p", "%%%0"), (bb:gsub("%%", "%%%%")))
      ha["content-type"] = ha["content-type"]:gsub(ba:gsub("%p", "%%%0"), (bb:gsub("%%", "%%%%")))
    end
    assert.equal(b.body, body)
    assert.same(b.headers, ha)
  end
  for i, r in ipairs(via_ngx.results) do
    local c = via_curl[i]
    assert.equal(c.res and c.res.ok, r.res and r.res.ok)
    assert.equal(c.res and c.res.kind, r.res and r.res.kind)
    assert.equal(c.res and c.res.code, r.res and r.res.code)
  end
  return via_ngx, ngx_reqs
end

describe("ksms inside nginx", function()
  local nginx, dir, cert, cert_b
  local senders, messageme, ppurio, cafe24, stranger
  local SENDERS = { api_key = "test-senders-key", timeout = 5 }

  local function opts(fake, extra)
    local o = { base_url = fake.base_url }
    for k, v in pairs(SENDERS) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end
  local SMS = { to = "010-1111-2222", from = "02-1234-5678", text = "안녕하세요 ksms" }

  setup(function()
    local so = ROOT .. "/build/luajit/ksms/core.so"
    if not read(so) then
      -- nginx's Lua is LuaJIT: it needs the LuaJIT build of the core.
      os.execute("cd " .. ROOT .. " && make -s LUA=luajit >/dev/null")
      assert(read(so), "nginx needs " .. so .. ": make LUA=luajit")
    end
    cert, cert_b = fake_control.make_cert(), fake_control.make_cert()
    senders = fake_control.start("senders")
    messageme = fake_control.start("messageme")
    ppurio = fake_control.start("ppurio")
    cafe24 = fake_control.start("cafe24", { tls = cert })
    stranger = fake_control.start("cafe24", { tls = cert_b }) -- a certificate nginx does not trust
    dir = mkdtemp()
    write(dir .. "/ksms_spec_handlers.lua", HANDLERS)
    write(dir .. "/ksms_spec_probe.lua", PROBE)
    -- The trusted certificate (public) where the workers can read it.
    write(dir .. "/trusted.pem", assert(read(cert.cert)))
    local function loc(path, fn)
      return ("location = %s { content_by_lua_block { require('ksms_spec_handlers').%s() } }\n"):format(path, fn)
    end
    nginx = nginx_control.start {
      ksms = true, workers = 1,
      lua_path = dir .. "/?.lua",
      http = ([[
  lua_shared_dict ksms_test 1m;
  lua_ssl_trusted_certificate %s;
  init_worker_by_lua_block { require("ksms_spec_handlers").init_worker() }
]]):format(dir .. "/trusted.pem"),
      locations = loc("/call", "call") .. loc("/stream", "stream") .. loc("/transport", "transport") .. loc("/codec", "codec")
        .. loc("/report", "report") .. loc("/timer", "timer") .. [[
    location = /logphase {
      content_by_lua_block { require("ksms_spec_handlers").content_then_log() }
      log_by_lua_block { require("ksms_spec_handlers").log_phase() }
    }
    location = /x/conn { content_by_lua_block {
      local b = ngx.var.connection; ngx.header.content_length = #b; ngx.print(b) } }
    location = /x/close { keepalive_timeout 0; content_by_lua_block {
      local b = ngx.var.connection; ngx.header.content_length = #b; ngx.print(b) } }
    location = /x/chunked { content_by_lua_block {
      for i = 1, 5 do ngx.print("chunk", i, "-"); ngx.flush(true) end } }
    location = /x/eof { chunked_transfer_encoding off; content_by_lua_block {
      ngx.print("until "); ngx.flush(true); ngx.print("close") } }
    location = /x/big { content_by_lua_block {
      local n = tonumber(ngx.var.arg_n)
      if ngx.var.arg_chunked then
        ngx.print(("x"):rep(n / 2)); ngx.flush(true); ngx.print(("x"):rep(n / 2))
      else
        ngx.header.content_length = n; ngx.print(("x"):rep(n))
      end } }
    location = /x/sleep { content_by_lua_block {
      ngx.sleep(tonumber(ngx.var.arg_ms) / 1000)
      local b = ngx.var.arg_id; ngx.header.content_length = #b; ngx.print(b) } }
    location = /x/echo { content_by_lua_block {
      ngx.req.read_body()
      local b = ngx.req.raw_header() .. (ngx.req.get_body_data() or "")
      ngx.header.content_length = #b; ngx.print(b) } }
]],
    }
    local res, err = fake_control.http(nginx.port, "GET", "/report", "", nil, 5)
    assert(res and res.status == 200, "nginx does not answer: " .. tostring(res and res.body or err)
      .. "\n" .. nginx:error_log())
  end)

  teardown(function()
    if nginx then nginx:stop() end
    for _, f in pairs({ senders, messageme, ppurio, cafe24, stranger }) do f:stop() end
    fake_control.remove_cert(cert)
    fake_control.remove_cert(cert_b)
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("loads the LuaJIT build of the C core; codecs and text rules answer as here", function()
    local here = cjson.decode(cjson.encode(assert((loadstring or load)(PROBE))()))
    local there = post(nginx, "/codec")
    assert.same(here, there)
    assert.equal(7, there.cp949[1])
    assert.equal("ksms", there.b64[2])
  end)

  it("picks the cosocket transport in a handler; libcurl only when asked; ca_file refused", function()
    local call = { provider = "senders", options = opts(senders), calls = { { method = "send", args = SMS } } }
    local r = post(nginx, "/call", call)
    assert.equal("ksms.transport.ngx (open)", r.transport)
    assert.is_true(r.results[1].res.ok)
    call.options = opts(senders, { transport = "curl" })
    local c = post(nginx, "/call", call)
    assert.matches("^ksms.core.http_client", c.transport)
    assert.is_true(c.results[1].res.ok)
    call.options = opts(senders, { ca_file = "/etc/ssl/certs/ca-certificates.crt" })
    local bad = post(nginx, "/call", call, true)
    assert.matches("ca_file cannot be set per transport inside nginx", bad.raised)
    assert.matches("lua_ssl_trusted_certificate", bad.raised)
    call.options = opts(senders, { transport = "libcurl" })
    assert.matches('kind must be "ngx" or "curl"', post(nginx, "/call", call, true).raised)
  end)

  it("refuses clearly in init_worker and log phases (making or using), where cosockets do not work", function()
    assert(fake_control.http(nginx.port, "GET", "/logphase", "", nil, 5))
    local rep
    for _ = 1, 50 do
      rep = post(nginx, "/report")
      if rep["log.default"] then break end
      socket.sleep(0.02)
    end
    for _, key in ipairs({ "init_worker.default", "init_worker.ngx" }) do
      assert.matches("cannot send from nginx's init_worker phase %(init_worker_by_lua%*%)", rep[key])
      assert.matches("ngx.timer.at(0, function() ... end)", rep[key], 1, true)
      assert.matches('transport = "curl" forces libcurl', rep[key], 1, true)
    end
    assert.matches("^ksms.core.http_client", rep["init_worker.curl"]) -- explicit: allowed
    assert.matches("cannot send from nginx's log phase %(log_by_lua%*%)", rep["log.default"])
    assert.matches("cannot send from nginx's log phase", rep["log.ngx"])
    assert.matches("cannot send from nginx's log phase", rep["log.use"]) -- made in content, used in log
  end)

  it("sends from a timer started in the handler", function()
    local r = post(nginx, "/timer", { options = opts(senders), msg = SMS })
    assert.equal("timer", r.phase)
    assert.equal("ksms.transport.ngx (open)", r.transport)
    assert.is_true(r.res.ok)
  end)

  it("sends to Senders exactly what libcurl sends", function()
    local r = same_as_curl(senders, nginx, "senders", opts(senders), {
      { method = "send", args = SMS },
      { method = "send", args = { to = { "010-1111-2222", "010-3333-4444" }, from = "02-1234-5678",
        subject = "공지", text = ("가나다라 "):rep(30) } },
      { method = "balance" },
    })
    assert.equal("sms", r.results[1].res.kind)
    assert.equal("lms", r.results[2].res.kind)
    assert.is_number(r.results[3].res.balance)
  end)

  it("sends MessageMe SMS and AlimTalk exactly as libcurl does", function()
    local o = opts(messageme, { api_key = "test-messageme-key" })
    local r = same_as_curl(messageme, nginx, "messageme", o, {
      { method = "send", args = SMS },
      { method = "alimtalk", args = { template = "ORDER_02", variables = { "홍길동", "A-1001" },
        to = "010-1111-2222", from = "02-1234-5678" } },
      { method = "balance" },
    })
    assert.equal("alimtalk", r.results[2].res.kind)
    assert.equal("100", r.results[2].res.code)
  end)

  it("sends ppurio SMS (its auth header) and MMS (multipart images) as libcurl does", function()
    local o = { client_id = "ksmstest", api_key = "test-ppurio-key", base_url = ppurio.base_url, timeout = 5 }
    local _, reqs = same_as_curl(ppurio, nginx, "ppurio", o, {
      { method = "send", args = SMS },
      { method = "send", args = { to = "010-1111-2222", from = "02-1234-5678", subject = "앨범", text = "사진",
        image = { { data_b64 = ksms.core.b64encode(jpeg(5000)), filename = "a.jpg" },
                  { data_b64 = ksms.core.b64encode(jpeg(3000)), filename = "b.jpg" } } } },
    })
    assert.equal("test-ppurio-key", reqs[1].headers["x-waple-authorization"])
    assert.matches("^multipart/form%-data; boundary=", reqs[2].headers["content-type"])
    assert.equal(jpeg(5000), reqs[2].multipart[#reqs[2].multipart - 1].data)
  end)

  it("sends to Cafe24 over TLS, the certificate verified against lua_ssl_trusted_certificate", function()
    local o = { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = cafe24.base_url,
      history_url = cafe24.history_url, timeout = 5 }
    local r = same_as_curl(cafe24, nginx, "cafe24", o, {
      { method = "send", args = SMS },
      { method = "balance" },
    }, { ca_file = cert.cert })
    assert.equal("success", r.results[1].res.code)
    assert.is_number(r.results[2].res.balance)
  end)

  it("refuses a certificate nginx does not trust (code tls, nothing sent); insecure skips the check", function()
    stranger:reset()
    local o = { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = stranger.base_url, timeout = 5 }
    local r = post(nginx, "/call", { provider = "cafe24", options = o, calls = { { method = "send", args = SMS } } })
    local err = r.results[1].err
    assert.equal("network", err.category)
    assert.equal("tls", err.code)
    assert.is_false(err.maybe_sent)
    assert.is_true(err.retryable)
    assert.equal(0, #stranger:requests())
    o.insecure = true
    r = post(nginx, "/call", { provider = "cafe24", options = o, calls = { { method = "send", args = SMS } } })
    assert.equal("success", r.results[1].res.code)
  end)

  it("keeps the connection alive across sends in one handler", function()
    senders:reset()
    local calls = {}
    for i = 1, 5 do calls[i] = { method = "send", args = SMS } end
    local r = post(nginx, "/call", { provider = "senders", options = opts(senders), calls = calls })
    for i = 1, 5 do assert.is_true(r.results[i].res.ok) end
    local st = senders:stats()
    assert.equal(5, st.requests)
    assert.equal(1, st.connections)
    local reqs = senders:requests()
    for i = 2, 5 do assert.equal(reqs[1].conn, reqs[i].conn) end
  end)

  it("reads chunked and close-delimited bodies; max_response, HEAD, keep-alive, Connection: close", function()
    local base = nginx.base_url
    local r = post(nginx, "/transport", { opts = { max_response = 1000 }, reqs = {
      { url = base .. "/x/conn" }, { url = base .. "/x/conn" },
      { url = base .. "/x/chunked" }, { url = base .. "/x/eof" },
      { url = base .. "/x/big?n=50", method = "HEAD" }, { url = base .. "/x/conn" },
      { url = base .. "/x/big?n=2000" }, { url = base .. "/x/big?n=2000&chunked=1" },
      { url = base .. "/x/echo", form = { { "a", "가 b" } }, headers = { { "X-K", "v" } } },
      { url = base .. "/x/close" }, { url = base .. "/x/conn" },
    } }).results
    assert.equal(r[1].body, r[2].body)              -- the same connection
    assert.equal("chunk1-chunk2-chunk3-chunk4-chunk5-", r[3].body)
    assert.equal("chunked", r[3].headers["transfer-encoding"])
    assert.equal("until close", r[4].body)
    assert.equal(200, r[5].status)
    assert.equal("", r[5].body)
    assert.equal("50", r[5].headers["content-length"])
    assert.equal(200, r[6].status)
    for i = 7, 8 do
      assert.equal("protocol", r[i].category)
      assert.equal("too_large", r[i].code)
      assert.is_true(r[i].maybe_sent)
    end
    assert.equal(("POST /x/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ksms/%s\r\nAccept: */*\r\n"
      .. "X-K: v\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\n"
      .. "a=%%EA%%B0%%80+b"):format(nginx.port, ksms.core._VERSION), r[9].body)
    -- "Connection: close": that connection is not pooled, the next is new.
    assert.equal("close", r[10].headers.connection)
    assert.equal(200, r[11].status)
    assert.are_not.equal(r[10].body, r[11].body)
  end)

  it("puts on the wire exactly http1.prepare's bytes, through cosockets and through libcurl", function()
    local base = nginx.base_url
    local reqs = {
      { url = base .. "/x/echo?via=form", headers = { { "x-waple-authorization", "k" }, { "X-Empty", "" } },
        form = { { "msg", "안녕 a+b&c" }, { "n", 1 } } },
      { method = "POST", url = base .. "/x/echo", headers = { ["Content-Type"] = "application/json" },
        body = cjson.encode { text = "가나다", to = "01012345678" } },
      { url = base .. "/x/echo", boundary = "ksms-fixed-B0undary",
        multipart = { { name = "text", value = "사진" }, { name = "file", data = "jpeg-ish bytes", filename = "a.jpg",
          content_type = "image/jpeg" } } },
      { url = base .. "/x/echo?a=1&b=%EA%B0%80&c=/../x", headers = { Accept = "application/json" } },
    }
    local defaults = { user_agent = "ksms/" .. ksms.core._VERSION }
    local via_ngx = post(nginx, "/transport", { reqs = reqs }).results
    local curl = ksms.core.http_client()
    for i, req in ipairs(reqs) do
      local p = http1.prepare(req, defaults)
      local want = p.head .. (p.body or "")
      assert.equal(want, via_ngx[i].body, "cosocket " .. i)
      assert.equal(want, assert(curl:request(req)).body, "libcurl " .. i)
    end
    curl:close()
  end)

  it("runs request_many on light threads: at most concurrency at once, results in request order", function()
    local base, reqs = nginx.base_url, {}
    for i = 1, 6 do reqs[i] = { url = ("%s/x/sleep?ms=%d&id=r%d"):format(base, 350 - i * 50, i) } end
    local r = post(nginx, "/transport", { opts = {}, reqs = reqs, many = true, concurrency = 3 })
    for i = 1, 6 do assert.equal("r" .. i, r.results[i].body) end
    assert.is_true(r.elapsed < 0.9, "elapsed " .. r.elapsed) -- serial would be 1.05 s
    -- Three at a time ends at 0.35 s exactly (r4..r6 each start as one ends);
    -- unbounded would end at 0.3 s. The margin absorbs ngx.now()'s millisecond
    -- clock: CI once measured 0.3499999.
    assert.is_true(r.elapsed >= 0.34, "elapsed " .. r.elapsed)
    -- Through the client: send_many against a slow provider.
    senders:reset()
    senders:script { path = "/APIV2/sms_send", latency_ms = 300 }
    local msgs = {}
    for i = 1, 8 do msgs[i] = { to = ("010-1111-%04d"):format(i), from = "02-1234-5678", text = "번호 " .. i } end
    local t0 = socket.gettime()
    local m = post(nginx, "/call", { provider = "senders", options = opts(senders),
      calls = { { method = "send_many", args = msgs, opts = { concurrency = 4 } } } })
    local elapsed = socket.gettime() - t0
    for i = 1, 8 do assert.is_true(m.results[1].res[i].ok) end
    assert.equal(4, senders:stats().max_in_flight)
    assert.is_true(elapsed < 1.5, "elapsed " .. elapsed) -- two rounds of 0.3 s
    senders:reset()
  end)

  it("streams send_many through cosockets: on_sending before each request, on_outcome as each ends", function()
    senders:reset()
    senders:script { path = "/APIV2/sms_send", latency_ms = 150 }
    local msgs = {}
    for i = 1, 7 do msgs[i] = { to = ("010-1111-%04d"):format(i), from = "02-1234-5678", text = "s" .. i } end
    msgs[2].to = "12"
    local r = post(nginx, "/stream", { provider = "senders", options = opts(senders), msgs = msgs,
      concurrency = 2, cancel = 5 })
    assert.equal("o2:recipient", r.log[1])
    assert.equal("cancelled", r.outs[5].category)
    for _, i in ipairs { 1, 3, 4, 6, 7 } do assert.is_true(r.outs[i].ok, i) end
    assert.equal(2, r.peak, table.concat(r.log, " "))
    local first_o, last_s = nil, nil
    for k, e in ipairs(r.log) do
      if k > 1 and e:sub(1, 1) == "o" and not first_o then first_o = k end
      if e:sub(1, 1) == "s" then last_s = k end
    end
    assert.is_true(first_o < last_s, table.concat(r.log, " "))
    assert.equal(5, #senders:requests("/APIV2/sms_send"))
    senders:reset()
  end)

  it("never resends: half an answer, a dropped connection, garbage, a hang, a refused connect", function()
    local function one(script, extra)
      senders:reset()
      if script then senders:script(script) end
      local t0 = socket.gettime()
      local r = post(nginx, "/call", { provider = "senders", options = opts(senders, extra),
        calls = { { method = "send", args = SMS } } })
      return r.results[1].err, #senders:requests(), socket.gettime() - t0
    end
    for _, fault in ipairs({ "half", "close" }) do
      local err, sent = one { path = "/APIV2/sms_send", fault = fault, times = 1, process = true }
      assert.equal("network", err.category)
      assert.equal("recv", err.code)
      assert.is_true(err.maybe_sent)
      assert.is_false(err.retryable)
      assert.equal("senders", err.provider)
      assert.equal(1, sent)                         -- not resent
      assert.is_nil(cjson.encode(err):find("test-senders-key", 1, true))
    end
    local err = one { path = "/APIV2/sms_send", fault = "garbage", times = 1 }
    assert.equal("protocol", err.category)
    assert.is_true(err.maybe_sent)
    local hung, sent, elapsed = one({ path = "/APIV2/sms_send", fault = "hang", times = 1 }, { timeout = 0.5 })
    assert.equal("timeout", hung.category)
    assert.equal("timeout", hung.code)
    assert.is_true(hung.maybe_sent)
    assert.equal(1, sent)
    assert.is_true(elapsed < 2, "elapsed " .. elapsed)
    local s = socket.bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close()
    local refused = one(nil, { base_url = "http://127.0.0.1:" .. port })
    assert.equal("connect", refused.code)
    assert.is_false(refused.maybe_sent)
    assert.is_true(refused.retryable)
    senders:reset()
  end)

  it("runs the MessageMe MO example (examples/nginx) and parses what the fake posts", function()
    local conf = assert(read(ROOT .. "/examples/nginx/nginx.conf"))
    local s = socket.bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close()
    -- The example runs with the checkout as its prefix ($prefix); here the
    -- prefix is nginx_control's temp directory, so the paths are moved.
    conf = conf:gsub("%$prefix/", function() return ROOT .. "/" end)
      :gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
      :gsub("worker_processes 2;", "worker_processes 1;")
      :gsub("build/nginx/error%.log", "logs/error.log"):gsub("build/nginx/nginx%.pid", "logs/nginx.pid")
      :gsub("build/nginx/tmp_", "tmp_")
    local example = nginx_control.start { conf = conf, port = port }
    local ok, failure = pcall(function()
      local target = "http://127.0.0.1:" .. port .. "/mo"
      local answer = assert(messageme:mo(target, {
        msg = "MO 테스트", phone = "01099998888", subject = "제목", fileloc1 = "/mo/a.jpg" }))
      assert.equal(200, answer.status)
      assert.equal("OK", answer.body)
      local line
      for _ = 1, 50 do
        line = example:error_log():match("messageme MO: (%b{})")
        if line then break end
        socket.sleep(0.02)
      end
      assert(line, "no MO line in the log: " .. example:error_log())
      local got = cjson.decode(line)
      assert.equal("01099998888", got.from)
      assert.equal("MO 테스트", got.text)
      assert.equal("제목", got.subject)
      assert.same({ "http://www.messageme.co.kr/mo/a.jpg" }, got.images)
      -- The longest MO (2000 CP949 bytes) is a 9 KB form, over nginx's
      -- default 8 KB body buffer: still read in memory and parsed.
      local long = assert(messageme:mo(target, { msg = ("가"):rep(1000), phone = "010-1234-5678" }))
      assert.equal(200, long.status)
      assert.equal("OK", long.body)
      local bad = assert(messageme:mo("http://127.0.0.1:" .. port .. "/mo", { { "msg", "x" }, { "phone", "nope" } }))
      assert.equal(400, bad.status)
    end)
    example:stop()
    assert(ok, failure)
  end)

  it("does not block the worker: 20 concurrent sends to a 2 s provider take about 2 s", function()
    senders:reset()
    senders:script { path = "/APIV2/sms_send", latency_ms = 2000 }
    local answers, elapsed = concurrent_posts(nginx.port, "/call", { provider = "senders",
      options = opts(senders), calls = { { method = "send", args = SMS } } }, 20, 30)
    for i, a in ipairs(answers) do
      assert.equal(200, a.status, i)
      local r = cjson.decode(a.body)
      assert.is_true(r.results[1].res.ok, a.body)
    end
    assert.is_true(elapsed >= 1.9, "elapsed " .. elapsed)
    assert.is_true(elapsed < 6, "elapsed " .. elapsed) -- one at a time would be 40 s
    local st = senders:stats()
    assert.equal(20, st.requests)
    assert.equal(20, st.max_in_flight)
    senders:reset()
  end)
end)

-- ---- the cosocket transport against hostile servers ----------------------

-- Runs a request n times in the worker and tells how each ended, with the
-- worker's elapsed time, CPU (os.clock) and Lua memory growth.
local HOSTILE_HANDLERS = [==[
local cjson = require "cjson.safe"
local H = {}

function H.run()
  ngx.req.read_body()
  local q = cjson.decode(ngx.req.get_body_data() or "{}")
  local t = require("ksms.transport").new(q.opts or {})
  collectgarbage()
  collectgarbage()
  local mem0 = collectgarbage("count")
  ngx.update_time()
  local t0, cpu0 = ngx.now(), os.clock()
  local out = { results = {}, raises = 0 }
  for i = 1, q.n or 1 do
    local ok, res, err = pcall(t.request, t, q.req)
    if not ok then
      out.raises = out.raises + 1
      out.results[i] = { raised = tostring(res) }
    elseif res then
      out.results[i] = { status = res.status, body_len = #res.body, headers = res.headers }
    else
      out.results[i] = { category = err.category, code = err.code, maybe_sent = err.maybe_sent,
        message = err.message }
    end
  end
  ngx.update_time()
  out.elapsed, out.cpu = ngx.now() - t0, os.clock() - cpu0
  t:close()
  collectgarbage()
  collectgarbage()
  out.mem_growth_kib = collectgarbage("count") - mem0
  local body = assert(cjson.encode(out))
  ngx.header.content_type = "application/json"
  ngx.header.content_length = #body
  ngx.print(body)
end

return H
]==]

-- A certificate that names 127.0.0.1 only as an IP address in
-- subjectAltName (its CN is a name), as a public CA issues one for an IP.
local function ip_only_cert()
  local dir = mkdtemp()
  local cert, key = dir .. "/ip.pem", dir .. "/ip.key"
  assert(H.exec_ok("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ksms-ip-only"
    .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"),
    "openssl could not make a certificate")
  return { cert = cert, key = key, dir = dir }
end

describe("the cosocket transport against hostile servers", function()
  local nginx, dir, hostile, untrusted, ip_cert, ip_fake

  setup(function()
    untrusted, ip_cert = fake_control.make_cert(), ip_only_cert()
    hostile = fake_control.start("senders")
    local tls = fake_control.start("senders", { tls = untrusted })
    ip_fake = fake_control.start("senders", { tls = ip_cert })
    untrusted.fake = tls
    dir = mkdtemp()
    write(dir .. "/ksms_hostile_handlers.lua", HOSTILE_HANDLERS)
    write(dir .. "/trusted.pem", assert(read(ip_cert.cert)))
    nginx = nginx_control.start {
      ksms = true, workers = 1, lua_path = dir .. "/?.lua",
      http = ("  lua_ssl_trusted_certificate %s;\n"):format(dir .. "/trusted.pem"),
      locations = "location = /run { content_by_lua_block { require('ksms_hostile_handlers').run() } }\n",
    }
  end)

  teardown(function()
    if nginx then nginx:stop() end
    for _, f in pairs({ hostile, untrusted and untrusted.fake, ip_fake }) do f:stop() end
    fake_control.remove_cert(untrusted)
    os.execute("rm -rf " .. ip_cert.dir .. " " .. (dir or ""))
  end)

  local function run(req, n, opts)
    return post(nginx, "/run", { req = req, n = n, opts = opts })
  end

  -- One request answered with a hostile kind (spec/fakes/hostile.lua).
  local function answered(kind, timeout)
    hostile:script { path = "/hostile", fault = kind, times = 1 }
    local out = run({ url = hostile.base_url .. "/hostile", timeout = timeout or 5 })
    assert.equal(0, out.raises, out.results[1].raised)
    assert.is_true(out.elapsed < (timeout or 5) * 0.5 + 1, kind .. ": " .. out.elapsed .. " s")
    assert.is_true(out.cpu < 1, kind .. ": " .. out.cpu .. " s of worker CPU")
    assert.is_true(out.mem_growth_kib < 4096, kind .. ": " .. out.mem_growth_kib .. " KiB")
    return out.results[1], out
  end

  local function refused(kind, category, code)
    local r = answered(kind)
    assert.equal(category, r.category, kind .. ": " .. tostring(r.message))
    assert.equal(code, r.code, kind)
    assert.is_true(r.maybe_sent, kind)
  end

  it("reads header values with 60,000-byte blank runs promptly, inner blanks kept", function()
    local r = answered("blank_headers")
    assert.equal(200, r.status)
    local blanks = (" \t"):rep(30000)
    assert.equal("a" .. blanks .. "b", r.headers["x-blank-1"])
    assert.equal("a" .. blanks .. "b " .. blanks:gsub("^[ \t]+", "") .. "c", r.headers["x-blank-3"])
    assert.equal(2, r.body_len)
    r = answered("many_headers")
    assert.equal(200, r.status)
    assert.equal(2 * 60000 - 2, #r.headers.x)
  end)

  it("ends endless 1xx answers and millions of one-byte chunks at once as protocol/too_large", function()
    refused("endless_1xx", "protocol", "too_large")
    refused("tiny_chunks", "protocol", "too_large")
    refused("long_header", "protocol", "too_large")
  end)

  it("refuses conflicting Content-Length values as the libcurl transport does", function()
    refused("conflicting_length", "protocol", "protocol")
    refused("conflicting_list", "protocol", "protocol")
  end)

  it("times out a server that drips its answer, at the request's timeout", function()
    hostile:script { path = "/hostile", fault = "drip", times = 1 }
    local out = run({ url = hostile.base_url .. "/hostile", timeout = 1 })
    local r = out.results[1]
    assert.equal("timeout", r.category)
    assert.is_true(r.maybe_sent)
    assert.is_true(out.elapsed >= 0.9 and out.elapsed < 2, out.elapsed .. " s")
  end)

  it("answers a failed certificate check with nil, err (network, tls) every time, never a raise", function()
    -- lua-resty-core raised in a few to half of the attempts, by timing.
    local n = 200
    local out = run({ url = untrusted.fake.base_url .. "/APIV2/balance", timeout = 5 }, n)
    local first
    for _, r in ipairs(out.results) do first = first or r.raised end
    assert.equal(0, out.raises, first)
    for i, r in ipairs(out.results) do
      assert.equal("network", r.category, i .. ": " .. tostring(r.raised or r.message))
      assert.equal("tls", r.code, i)
      assert.is_false(r.maybe_sent, i)
    end
    assert.equal(n, #out.results)
    assert.equal(0, #untrusted.fake:requests())
  end)

  it("says why an https:// URL with an IP address does not verify inside nginx (libcurl verifies it)", function()
    local url = ip_fake.base_url .. "/APIV2/balance"
    local out = run({ url = url, timeout = 5 }, 10)
    assert.equal(0, out.raises)
    for _, r in ipairs(out.results) do
      assert.equal("tls", r.code)
      assert.matches("never against IP addresses", r.message, 1, true)
    end
    local c = ksms.core.http_client { ca_file = ip_cert.cert, timeout = 5 }
    local res, err = c:request { url = url }
    c:close()
    assert.is_table(res, tostring(err))
  end)
end)
