-- The HTTP transport (core.http_client, ksms.transport) against a real
-- HTTP/1.1 server process on 127.0.0.1 (spec/fakes/echo_server.lua) and,
-- for TLS, `openssl s_server` with a certificate made for the run.
local core = require "ksms.core"
local errors = require "ksms.errors"
local transport = require "ksms.transport"
local socket = require "socket"
local cjson = require("cjson").new()
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local now = socket.gettime

-- Starts a command whose stdout we read; "echo $$; exec" makes the first
-- line the command's own pid, so it can be killed and then reaped by
-- pclose. The sanitizer runtime preloaded by `make asan-run` is not for it.
local function spawn(cmd)
  local p = assert(io.popen("echo $$; exec env -u LD_PRELOAD " .. cmd))
  local pid = tonumber(p:read("*l"))
  assert(pid, "could not start: " .. cmd)
  return { pipe = p, pid = pid }
end

local function alive(pid)
  local _, ok = H.run("kill -0 " .. pid .. " 2>/dev/null")
  return ok
end

local function stop(proc)
  if not proc then return end
  os.execute("kill " .. proc.pid .. " 2>/dev/null")
  proc.pipe:close() -- waits for it
  assert(not alive(proc.pid), "process " .. proc.pid .. " is still running")
end

local free_port = require("spec_helper").free_port

local S, ctl -- the echo server; a client for its control paths

local function url(path) return ("http://127.0.0.1:%d%s"):format(S.port, path) end

local function stats()
  local r = assert(ctl:request { url = url("/stats") })
  return cjson.decode(r.body)
end

-- Requests the server saw whose target contains tag.
local function seen(tag)
  local out = {}
  for _, r in ipairs(stats().requests) do
    if r.target:find(tag, 1, true) then out[#out + 1] = r end
  end
  return out
end

local tags = 0
local function tag()
  tags = tags + 1
  return "tag" .. tags .. "_"
end

local function echo(res, err)
  assert(res, tostring(err))
  assert.equal(200, res.status)
  return cjson.decode(res.body)
end

-- Every value the server received for a header (case-insensitive), in order.
local function hvals(e, name)
  local out = {}
  for _, h in ipairs(e.headers) do
    if h[1]:lower() == name:lower() then out[#out + 1] = h[2] end
  end
  return out
end
local function hval(e, name) return hvals(e, name)[1] end

local function is_error(err, category, code, maybe_sent)
  assert.is_true(errors.is(err), "not an error object: " .. tostring(err))
  assert.equal(category, err.category, tostring(err))
  assert.equal(code, err.code, tostring(err))
  assert.equal(maybe_sent, err.maybe_sent, tostring(err))
  assert.equal("ksms", err.provider)
  local transient = category == "network" or category == "timeout"
  assert.equal(transient and not maybe_sent, err.retryable, tostring(err))
  assert.is_string(err.message)
  assert.matches("^ksms%[ksms%] " .. category .. " %(" .. code .. "%): ", tostring(err))
end

describe("http transport", function()
  setup(function()
    S = spawn(LUA .. " spec/fakes/echo_server.lua")
    local line = S.pipe:read("*l")
    S.port = tonumber(line and line:match("^LISTENING (%d+)$"))
    assert(S.port, "echo server did not start: " .. tostring(line))
    assert.equal("PID " .. S.pid, S.pipe:read("*l"))
    ctl = core.http_client()
  end)

  teardown(function()
    if ctl then ctl:close() end
    stop(S)
  end)

  describe("requests", function()
    it("GETs with the default User-Agent and no body headers", function()
      local c = core.http_client()
      local e = echo(c:request { url = url("/echo?x=1") })
      assert.equal("GET", e.method)
      assert.equal("/echo?x=1", e.target)
      assert.equal("", e.body)
      assert.equal("ksms/" .. core._VERSION, hval(e, "User-Agent"))
      assert.is_nil(hval(e, "Content-Length"))
      assert.is_nil(hval(e, "Content-Type"))
      assert.is_nil(hval(e, "Expect"))
      c:close()
    end)

    it("POSTs a body as is, with Content-Length and without Expect or chunking", function()
      local c = core.http_client { user_agent = "ksms-spec/1" }
      local body = "raw \0 bytes \255"
      local e = echo(c:request { method = "POST", url = url("/echo"), body = body,
        headers = { ["X-Api-Key"] = "k1", ["X-Num"] = 42, ["Content-Type"] = "text/plain" } })
      assert.equal("POST", e.method)
      assert.equal(body, e.body)
      assert.equal(tostring(#body), hval(e, "Content-Length"))
      assert.equal("text/plain", hval(e, "Content-Type"))
      assert.equal("k1", hval(e, "X-Api-Key"))
      assert.equal("42", hval(e, "X-Num"))
      assert.equal("ksms-spec/1", hval(e, "User-Agent"))
      assert.is_nil(hval(e, "Expect"))
      assert.is_nil(hval(e, "Transfer-Encoding"))
      -- No Content-Type given: none sent (not libcurl's form default).
      e = echo(c:request { url = url("/echo"), body = "x" })
      assert.equal("POST", e.method)
      assert.is_nil(hval(e, "Content-Type"))
      c:close()
    end)

    it("sends a large body whole", function()
      local c = core.http_client()
      local big = ("0123456789abcdef"):rep(65536 + 3)
      local e = echo(c:request { method = "PUT", url = url("/echo"), body = big })
      assert.equal("PUT", e.method)
      assert.equal(#big, #e.body)
      assert.is_true(big == e.body)
      c:close()
    end)

    it("takes headers as a list, keeping order, repeats and empty values", function()
      local c = core.http_client()
      local e = echo(c:request { method = "PATCH", url = url("/echo"), body = "b",
        headers = { { "X-Dup", "a" }, { "X-Other", 1 }, { "X-Dup", "b" }, { "X-Empty", "" } } })
      assert.equal("PATCH", e.method)
      assert.same({ "a", "b" }, hvals(e, "X-Dup"))
      assert.equal("1", hval(e, "X-Other"))
      assert.same({ "" }, hvals(e, "X-Empty"))
      local names = {}
      for _, h in ipairs(e.headers) do
        if h[1]:match("^X%-") then names[#names + 1] = h[1] end
      end
      assert.same({ "X-Dup", "X-Other", "X-Dup", "X-Empty" }, names)
      c:close()
    end)

    it("sends bodyless POST with Content-Length 0, DELETE without, and HEAD", function()
      local c = core.http_client()
      local e = echo(c:request { method = "POST", url = url("/echo") })
      assert.equal("POST", e.method)
      assert.equal("0", hval(e, "Content-Length"))
      assert.is_nil(hval(e, "Content-Type"))
      e = echo(c:request { method = "DELETE", url = url("/echo?d") })
      assert.equal("DELETE", e.method)
      assert.is_nil(hval(e, "Content-Length"))
      local r = assert(c:request { method = "HEAD", url = url("/echo") })
      assert.equal(200, r.status)
      assert.equal("", r.body)
      assert.equal("application/json", r.headers["content-type"])
      c:close()
    end)

    it("ignores proxy environment variables", function()
      local code = ("local c = require('ksms.core').http_client(); "
        .. "local r, e = c:request{ url = %q }; assert(r and r.status == 200, tostring(e)); print('OK')")
        :format(url("/echo?proxyenv"))
      local out, ok = H.run(("http_proxy=http://127.0.0.1:1 HTTP_PROXY=http://127.0.0.1:1 "
        .. "ALL_PROXY=http://127.0.0.1:1 %s -e %q 2>&1"):format(LUA, code))
      assert.is_true(ok, out)
      assert.matches("OK", out)
    end)
  end)

  describe("form and multipart bodies", function()
    local form = {
      { "name", "홍길동" }, { "msg", "a b&c=d+e*f-g.h_i~j!\n" }, { "n", 42 }, { "empty", "" },
      { "키", "값 / 100%" },
    }
    -- WHATWG application/x-www-form-urlencoded, worked out by hand.
    local expected = "name=%ED%99%8D%EA%B8%B8%EB%8F%99&msg=a+b%26c%3Dd%2Be*f-g.h_i%7Ej%21%0A"
      .. "&n=42&empty=&%ED%82%A4=%EA%B0%92+%2F+100%25"

    it("encodes a form byte for byte, in order", function()
      assert.equal(expected, core.urlencode_form(form))
      local c = core.http_client()
      local e = echo(c:request { url = url("/echo"), form = form })
      assert.equal("POST", e.method)
      assert.equal(expected, e.body)
      assert.equal("application/x-www-form-urlencoded", hval(e, "Content-Type"))
      assert.equal(tostring(#expected), hval(e, "Content-Length"))
      -- Order is the caller's.
      e = echo(c:request { url = url("/echo"), form = { { "b", "2" }, { "a", "1" } } })
      assert.equal("b=2&a=1", e.body)
      -- The caller's Content-Type wins for a form.
      e = echo(c:request { url = url("/echo"), form = { { "a", "1" } },
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8" } })
      assert.same({ "application/x-www-form-urlencoded; charset=UTF-8" }, hvals(e, "Content-Type"))
      c:close()
    end)

    it("encodes every byte value the WHATWG way", function()
      local all = {}
      for b = 0, 255 do all[#all + 1] = string.char(b) end
      all = table.concat(all)
      local want = all:gsub("[^%w%*%-%._ ]", function(ch) return ("%%%02X"):format(ch:byte()) end)
        :gsub(" ", "+")
      assert.equal("k=" .. want, core.urlencode_form { { "k", all } })
      assert.equal("", core.urlencode_form {})
    end)

    it("builds multipart byte for byte and sends it", function()
      local path = H.tmpname()
      H.write_file(path, "file\0content\r\n--not-it\r\n")
      local base = path:match("[^/]+$")
      local parts = {
        { name = "text", value = "안녕 world" },
        { name = "n", value = 7 },
        { name = "blob", data = "\0\1\2\r\n", filename = "b.bin", content_type = "image/jpeg" },
        { name = "json", data = "{}", content_type = 'application/json; charset="utf-8"' },
        { name = "doc", file = path },
        { name = "doc2", file = path, filename = "보고서.txt", content_type = "text/plain" },
      }
      local want = table.concat {
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="text"\r\n', "\r\n", "안녕 world\r\n",
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="n"\r\n', "\r\n", "7\r\n",
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="blob"; filename="b.bin"\r\n',
        "Content-Type: image/jpeg\r\n", "\r\n", "\0\1\2\r\n\r\n",
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="json"\r\n',
        'Content-Type: application/json; charset="utf-8"\r\n', "\r\n", "{}\r\n",
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="doc"; filename="' .. base .. '"\r\n',
        "Content-Type: application/octet-stream\r\n", "\r\n", "file\0content\r\n--not-it\r\n\r\n",
        "--XyZ-1\r\n", 'Content-Disposition: form-data; name="doc2"; filename="보고서.txt"\r\n',
        "Content-Type: text/plain\r\n", "\r\n", "file\0content\r\n--not-it\r\n\r\n",
        "--XyZ-1--\r\n",
      }
      local body, ctype = core.multipart_body(parts, "XyZ-1")
      assert.equal(want, body)
      assert.equal("multipart/form-data; boundary=XyZ-1", ctype)
      local c = core.http_client()
      local e = echo(c:request { url = url("/echo"), multipart = parts, boundary = "XyZ-1" })
      os.remove(path)
      assert.equal("POST", e.method)
      assert.equal(want, e.body)
      assert.same({ "multipart/form-data; boundary=XyZ-1" }, hvals(e, "Content-Type"))
      assert.equal(tostring(#want), hval(e, "Content-Length"))
      c:close()
    end)

    it("picks a fresh random boundary of 24+ alphanumerics", function()
      local parts = { { name = "a", value = "1" } }
      local b1, t1 = core.multipart_body(parts)
      local b2, t2 = core.multipart_body(parts)
      local k1, k2 = t1:match("boundary=(.+)$"), t2:match("boundary=(.+)$")
      assert.not_equal(k1, k2)
      assert.is_true(#k1:gsub("[^%w]", "") >= 24, k1)
      assert.equal("--" .. k1 .. '\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--' .. k1 .. "--\r\n", b1)
      assert.equal(#b1, #b2)
      local c = core.http_client()
      local e = echo(c:request { url = url("/echo"), multipart = parts })
      local k = hval(e, "Content-Type"):match("^multipart/form%-data; boundary=(.+)$")
      assert.is_string(k)
      assert.equal("--" .. k .. '\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--' .. k .. "--\r\n", e.body)
      c:close()
    end)

    it("returns nil, err for a file it cannot read, and sends nothing", function()
      local c = core.http_client()
      local t = tag()
      local res, err = c:request { url = url("/echo?" .. t), multipart = { { name = "f", file = "/nonexistent/ksms.jpg" } } }
      assert.is_nil(res)
      is_error(err, "invalid_input", "file", false)
      assert.matches("/nonexistent/ksms.jpg", err.message, 1, true)
      res, err = c:request { url = url("/echo?" .. t), multipart = { { name = "f", file = "/tmp" } } }
      assert.is_nil(res)
      is_error(err, "invalid_input", "file", false)
      local b, e2 = core.multipart_body { { name = "f", file = "/nonexistent/x" } }
      assert.is_nil(b)
      is_error(e2, "invalid_input", "file", false)
      -- In a batch, only that entry fails.
      local out = c:request_many {
        { url = url("/echo?" .. t .. "&i=1") },
        { url = url("/echo?" .. t .. "&i=2"), multipart = { { name = "f", file = "/nonexistent/x" } } },
        { url = url("/echo?" .. t .. "&i=3") },
      }
      assert.equal(3, #out)
      assert.equal("1", echo(out[1]).query.i)
      is_error(out[2], "invalid_input", "file", false)
      assert.equal("3", echo(out[3]).query.i)
      local got = seen(t)
      assert.equal(2, #got)
      assert.is_nil(got[1].target:find("i=2", 1, true))
      assert.is_nil(got[2].target:find("i=2", 1, true))
      c:close()
    end)

    it("refuses a multipart name or filename a server could misread, and sends nothing", function()
      -- Inside Content-Disposition's quoted-string a backslash is an escape
      -- to some parsers and a byte to others: name="a\" ends differently.
      local c = core.http_client()
      local t = tag()
      local u = url("/echo?" .. t)
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p '" .. dir .. "'"))
      local odd_file = dir .. "/a\\b.jpg"
      H.write_file(odd_file, "\255\216\255")
      local parts = {}
      for _, bad in ipairs { "a\\", "\\", "a\\b", 'a"', "a\tb", "a\rb", "a\nb", "a\0b", "a\127", "a\1" } do
        parts[#parts + 1] = { { name = bad, value = "x" } }
        parts[#parts + 1] = { { name = "f", data = "x", filename = bad } }
      end
      parts[#parts + 1] = { { name = "f", file = odd_file } } -- its base name has the backslash
      for i, mp in ipairs(parts) do
        local ok, msg = pcall(c.request, c, { url = u, multipart = mp })
        assert.is_false(ok, "case " .. i .. " did not raise")
        assert.matches("^ksms.core: bad request: multipart part 1: ", msg)
        ok, msg = pcall(core.multipart_body, mp, "B")
        assert.is_false(ok, "case " .. i .. " did not raise in multipart_body")
      end
      assert.equal(0, #seen(t))
      -- The same file goes out under a filename given for it, and UTF-8 is kept.
      local e = echo(c:request { url = u, multipart = { { name = "이름", file = odd_file, filename = "b.jpg" } },
        boundary = "B" })
      assert.equal('--B\r\nContent-Disposition: form-data; name="이름"; filename="b.jpg"\r\n'
        .. "Content-Type: application/octet-stream\r\n\r\n\255\216\255\r\n--B--\r\n", e.body)
      os.remove(odd_file)
      os.remove(dir)
      c:close()
    end)

    it("encodes empty names and values with no undefined behaviour (clang UBSan build)", function()
      local script = [=[
        local core = require "ksms.core"
        local cjson = require "cjson"
        local url = arg[1]
        local c = core.http_client()
        local out = { core.urlencode_form { { "", "" } }, core.urlencode_form { { "", "x" }, { "a", "" } },
          (core.multipart_body({ { name = "", value = "" } }, "B")) }
        for _, req in ipairs {
          { url = url, form = { { "", "" }, { "", "x" }, { "a", "" } } },
          { url = url, form = {} },
          { url = url, multipart = { { name = "", value = "" }, { name = "d", data = "", filename = "" } }, boundary = "B" },
        } do
          out[#out + 1] = cjson.decode(assert(c:request(req)).body).body
        end
        c:close()
        io.write(table.concat(out, "|"))
      ]=]
      local want = table.concat({ "=", "=x&a=", '--B\r\nContent-Disposition: form-data; name=""\r\n\r\n\r\n--B--\r\n',
        "=&=x&a=", "",
        '--B\r\nContent-Disposition: form-data; name=""\r\n\r\n\r\n'
        .. '--B\r\nContent-Disposition: form-data; name="d"; filename=""\r\n'
        .. "Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n" }, "|")
      local path = H.tmpname()
      H.write_file(path, script)
      -- Under this interpreter's own build first.
      local out, ok = H.run(("%s %s %s 2>&1"):format(LUA, path, url("/echo")))
      assert(ok, out)
      assert.equal(want, out)
      -- GCC's UBSan (make asan-run) does not see NULL + 0 pointer arithmetic;
      -- clang's does.
      out, ok = H.run_ubsan_clang(LUA, path, url("/echo"))
      if out then
        assert(ok, out)
        assert.equal(want, out)
      end
      os.remove(path)
    end)
  end)

  describe("responses", function()
    it("gives lowercased headers, repeats joined, only the final response's", function()
      local c = core.http_client()
      local r = assert(c:request { url = url("/headers") })
      assert.equal(200, r.status)
      assert.equal("headers", r.body)
      assert.equal("one, two", r.headers["x-dup"])
      assert.equal("a=1, b=2", r.headers["set-cookie"])
      assert.equal("Value", r.headers["x-mixed-case"])
      assert.equal("first second", r.headers["x-folded"])
      assert.equal("padded", r.headers["x-spaces"])
      assert.equal("7", r.headers["content-length"])
      assert.is_nil(r.headers["x-interim"])
      for k in pairs(r.headers) do assert.equal(k:lower(), k) end
      c:close()
    end)

    it("reads chunked bodies (trailers are not headers)", function()
      local c = core.http_client()
      local r = assert(c:request { url = url("/chunked") })
      assert.equal("hello, chunked world", r.body)
      assert.equal("chunked", r.headers["transfer-encoding"])
      assert.is_nil(r.headers["x-trailer"])
      c:close()
    end)

    it("returns any status as a response", function()
      local c = core.http_client()
      local r = assert(c:request { url = url("/status?code=503") })
      assert.equal(503, r.status)
      assert.equal(503, cjson.decode(r.body).status)
      r = assert(c:request { url = url("/nowhere") })
      assert.equal(404, r.status)
      c:close()
    end)

    it("stops at max_response (too_large), whether Content-Length or chunked", function()
      local c = core.http_client { max_response = 1000 }
      assert.equal(1000, #assert(c:request { url = url("/huge?size=1000") }).body)
      assert.equal(1000, #assert(c:request { url = url("/huge?size=1000&chunked=1") }).body)
      local res, err = c:request { url = url("/huge?size=1001") }
      assert.is_nil(res)
      is_error(err, "protocol", "too_large", true)
      res, err = c:request { url = url("/huge?size=1001&chunked=1") }
      assert.is_nil(res)
      is_error(err, "protocol", "too_large", true)
      c:close()
      -- The default is 4 MiB.
      c = core.http_client()
      assert.equal(4194304, #assert(c:request { url = url("/huge?size=4194304&chunked=1") }).body)
      res, err = c:request { url = url("/huge?size=4194305&chunked=1") }
      is_error(err, "protocol", "too_large", true)
      c:close()
    end)

    it("reports garbage as a protocol error", function()
      local c = core.http_client()
      local res, err = c:request { url = url("/garbage") }
      assert.is_nil(res)
      is_error(err, "protocol", "protocol", true)
      res, err = c:request { url = url("/garbage?kind=status") }
      assert.is_nil(res)
      is_error(err, "protocol", "protocol", true)
      c:close()
    end)

    it("reports a response cut short as recv, maybe sent", function()
      local c = core.http_client()
      local res, err = c:request { url = url("/half") }
      assert.is_nil(res)
      is_error(err, "network", "recv", true)
      c:close()
    end)
  end)

  describe("connections", function()
    it("keeps one connection alive for many requests, single and batched", function()
      local c = core.http_client()
      local first = echo(c:request { url = url("/echo") })
      assert.equal(1, first.seq)
      for i = 2, 10 do
        local e = echo(c:request { method = "POST", url = url("/echo"), form = { { "i", i } } })
        assert.equal(first.conn, e.conn)
        assert.equal(i, e.seq)
      end
      local out = c:request_many({ { url = url("/echo") }, { url = url("/echo") }, { url = url("/echo") } },
        { concurrency = 1 })
      for i = 1, 3 do
        local e = echo(out[i])
        assert.equal(first.conn, e.conn)
        assert.equal(10 + i, e.seq)
      end
      -- Another client has its own connections.
      local c2 = core.http_client()
      assert.not_equal(first.conn, echo(c2:request { url = url("/echo") }).conn)
      c2:close()
      c:close()
    end)

    it("runs request_many concurrently, at most N at once, results in order", function()
      local c = core.http_client()
      assert(ctl:request { url = url("/reset") })
      local reqs = {}
      for i = 1, 20 do reqs[i] = { url = url("/echo?delay=200&i=" .. i) } end
      local t0 = now()
      local out = c:request_many(reqs, { concurrency = 10 })
      local dt = now() - t0
      assert.equal(20, #out)
      for i = 1, 20 do assert.equal(tostring(i), echo(out[i]).query.i) end
      assert.is_true(dt >= 0.39, "too fast for 10 at once: " .. dt)
      assert.is_true(dt < 2, "not concurrent: " .. dt)
      assert.equal(10, stats().max_inflight)
      c:close()
    end)

    it("keeps the order when later requests finish first; default concurrency is 8", function()
      local c = core.http_client()
      assert(ctl:request { url = url("/reset") })
      local reqs = {}
      for i = 1, 16 do reqs[i] = { method = "POST", url = url("/echo?delay=" .. (17 - i) * 15), body = "#" .. i } end
      local out = c:request_many(reqs)
      for i = 1, 16 do assert.equal("#" .. i, echo(out[i]).body) end
      assert.equal(8, stats().max_inflight)
      assert.same({}, c:request_many {})
      c:close()
    end)

    it("does not let one slow request hold up the batch beyond its timeout", function()
      local c = core.http_client()
      local t0 = now()
      local out = c:request_many {
        { url = url("/echo?i=1") },
        { url = url("/echo?delay=5000"), timeout = 0.3 },
        { url = url("/echo?i=3&delay=100") },
      }
      local dt = now() - t0
      assert.is_true(dt < 1.5, dt)
      assert.equal("1", echo(out[1]).query.i)
      is_error(out[2], "timeout", "timeout", true)
      assert.equal("3", echo(out[3]).query.i)
      c:close()
    end)
  end)

  describe("failures", function()
    it("times out a request (total timeout), maybe sent", function()
      -- Per request, then the client's default.
      local cases = { { core.http_client(), 0.3 }, { core.http_client { timeout = 0.3 }, nil } }
      for _, case in ipairs(cases) do
        local c = case[1]
        local t0 = now()
        local res, err = c:request { url = url("/echo?delay=3000"), timeout = case[2] }
        local dt = now() - t0
        assert.is_nil(res)
        is_error(err, "timeout", "timeout", true)
        assert.is_true(dt >= 0.29 and dt < 1.5, dt)
        c:close()
      end
    end)

    it("times out a connection that never completes (connect timeout), not sent", function()
      -- A listener whose backlog is full: further SYNs are dropped.
      local l = socket.tcp()
      assert(l:bind("127.0.0.1", 0))
      assert(l:listen(0))
      local _, port = l:getsockname()
      local fill = {}
      for i = 1, 4 do
        fill[i] = socket.tcp()
        fill[i]:settimeout(0)
        fill[i]:connect("127.0.0.1", port)
      end
      socket.sleep(0.1)
      local c = core.http_client { connect_timeout = 0.3 }
      local t0 = now()
      local res, err = c:request { url = ("http://127.0.0.1:%d/"):format(port), method = "POST", body = "x" }
      local dt = now() - t0
      for _, s in ipairs(fill) do s:close() end
      l:close()
      assert.is_nil(res)
      is_error(err, "timeout", "timeout", false)
      assert.is_true(dt < 1.5, dt)
      c:close()
    end)

    it("reports a refused connection as connect, not sent, retryable", function()
      local c = core.http_client()
      local res, err = c:request { method = "POST", url = ("http://127.0.0.1:%d/x"):format(free_port()), body = "x" }
      assert.is_nil(res)
      is_error(err, "network", "connect", false)
      assert.is_true(err.retryable)
      c:close()
    end)

    it("reports a name that does not resolve as dns, not sent", function()
      local c = core.http_client { connect_timeout = 3 }
      local res, err = c:request { url = "http://ksms-no-such-host.invalid/" }
      assert.is_nil(res)
      if err.code == "timeout" then -- a resolver that does not answer at all
        is_error(err, "timeout", "timeout", false)
      else
        is_error(err, "network", "dns", false)
      end
      c:close()
    end)

    it("never sends a request twice when a reused connection dies after reading it", function()
      local c = core.http_client()
      local cases = {
        { method = "POST", body = "pay once" },
        { method = "POST", form = { { "to", "01012345678" } } },
        { method = "POST", multipart = { { name = "a", value = "b" } } },
        { method = "POST" },        -- no body: libcurl has nothing to rewind
        { method = "DELETE" },
        { method = "PUT", body = ("x"):rep(200000) },
      }
      for i, req in ipairs(cases) do
        local first = echo(c:request { url = url("/echo") }) -- a connection to reuse
        local t = tag()
        req.url = url("/close?" .. t)
        local res, err = c:request(req)
        assert.is_nil(res)
        -- libcurl reports the dead connection at the write ("send") or at
        -- the read ("recv") depending on timing; either way it may have
        -- been acted on and is not sent again.
        is_error(err, "network", err.code == "send" and "send" or "recv", true)
        assert.is_false(err.retryable)
        local got = seen(t)
        assert.equal(1, #got, ("case %d (%s) sent %d times"):format(i, req.method, #got))
        assert.equal(first.conn, got[1].conn) -- it did go over the reused connection
      end
      -- The same through request_many.
      local firsts = c:request_many { { url = url("/echo") }, { url = url("/echo") } }
      local t = tag()
      local out = c:request_many({ { method = "POST", url = url("/close?" .. t .. "1"), body = "a" },
        { method = "POST", url = url("/close?" .. t .. "2"), body = "b" } }, { concurrency = 2 })
      for i = 1, 2 do
        is_error(out[i], "network", "recv", true)
        assert.equal(1, #seen(t .. i))
      end
      assert.is_table(firsts[1])
      c:close()
    end)

    it("lets libcurl retry a bodyless GET once on a fresh connection (harmless)", function()
      -- This is the retry the guard above refuses for everything else.
      local c = core.http_client()
      local first = echo(c:request { url = url("/echo") })
      local t = tag()
      local res, err = c:request { url = url("/close?" .. t) }
      assert.is_nil(res)
      is_error(err, "network", "recv", true)
      local got = seen(t)
      assert.equal(2, #got)
      assert.equal(first.conn, got[1].conn)
      assert.not_equal(first.conn, got[2].conn)
      c:close()
    end)
  end)

  describe("lifecycle and misuse", function()
    it("close() is idempotent and a closed client raises", function()
      local c = core.http_client()
      assert(c:request { url = url("/echo") })
      c:close()
      c:close()
      assert.matches("closed", tostring(c))
      assert.has_error(function() c:request { url = url("/echo") } end, "ksms.core: the http client is closed")
      assert.has_error(function() c:request_many { { url = url("/echo") } } end,
        "ksms.core: the http client is closed")
    end)

    it("closes with a Lua 5.4 to-be-closed variable", function()
      if _VERSION ~= "Lua 5.4" then return end
      local chunk = assert(load([[
        local core, u = ...
        local kept
        do
          local c <close> = core.http_client()
          assert(c:request { url = u })
          kept = c
        end
        return kept
      ]]))
      local kept = chunk(core, url("/echo"))
      assert.has_error(function() kept:request { url = url("/echo") } end, "ksms.core: the http client is closed")
    end)

    it("frees clients left to the garbage collector", function()
      for _ = 1, 30 do
        local c = core.http_client()
        assert(c:request { url = url("/echo") })
      end
      collectgarbage()
      collectgarbage()
      assert.equal(200, assert(ctl:request { url = url("/echo") }).status)
    end)

    it("raises on a malformed request before sending anything", function()
      local c = core.http_client()
      local t = tag()
      local u = url("/echo?" .. t)
      local bad = {
        {}, { url = 42 }, { url = "" }, { url = "ftp://127.0.0.1/" }, { url = "127.0.0.1/echo" },
        { url = u .. " x" }, { url = u .. "\n" }, { url = u, body = "a", form = {} },
        { url = u, body = "a", multipart = {} }, { url = u, method = "get" },
        { url = u, method = "GE T" }, { url = u, method = 1 }, { url = u, method = "" },
        { url = u, body = 42 }, { url = u, body = {} },
        { url = u, headers = { ["X-A"] = "1\r\nX-Injected: 1" } },
        { url = u, headers = { ["X-A"] = "1\0" } },
        { url = u, headers = { ["Bad Name"] = "1" } }, { url = u, headers = { ["X:A"] = "1" } },
        { url = u, headers = { { "X-A" } } }, { url = u, headers = { ["X-A"] = {} } },
        { url = u, headers = { { "X-A", "1" }, ["X-B"] = "2" } }, { url = u, headers = { "X-A: 1" } },
        { url = u, headers = { ["Content-Length"] = "5" } }, { url = u, headers = { ["expect"] = "" } },
        { url = u, headers = "X-A: 1" }, { url = u, form = "a=b" }, { url = u, form = { "a=b" } },
        { url = u, form = { { "a", {} } } }, { url = u, form = { { "a" } } },
        { url = u, multipart = { { value = "x" } } }, { url = u, multipart = { { name = 'a"b', value = "x" } } },
        { url = u, multipart = { { name = "a\r\n", value = "x" } } },
        { url = u, multipart = { { name = "a", value = "x", file = "/etc/hostname" } } },
        { url = u, multipart = { { name = "a" } } }, { url = u, multipart = { "a" } },
        { url = u, multipart = { { name = "a", data = "x", filename = "a\r\nb" } } },
        { url = u, multipart = { { name = "a", data = "x", filename = 'a"b' } } },
        { url = u, multipart = { { name = "a", data = "x", content_type = "a\nb" } } },
        { url = u, multipart = { { name = "a", value = "x", filename = "f" } } },
        { url = u, multipart = { { name = "a", value = "x", size = 1 } } },
        { url = u, multipart = { { name = "a", value = "x" } }, boundary = "bad boundary" },
        { url = u, multipart = { { name = "a", value = "x" } }, boundary = ("b"):rep(71) },
        { url = u, multipart = { { name = "a", value = "a--XyZ" } }, boundary = "XyZ" },
        { url = u, body = "x", boundary = "XyZ" },
        { url = u, multipart = { { name = "a", value = "x" } }, headers = { ["Content-Type"] = "x" } },
        { url = u, method = "HEAD", body = "x" }, { url = u, timeout = 0 }, { url = u, timeout = "1" },
        { url = u, connect_timeout = -1 }, { url = u, bodyy = "typo" }, { url = u, [1] = "x" },
      }
      for i, req in ipairs(bad) do
        local ok, msg = pcall(c.request, c, req)
        assert.is_false(ok, "case " .. i .. " did not raise")
        assert.matches("^ksms.core: bad request: ", msg)
        ok, msg = pcall(c.request_many, c, { { url = u }, req })
        assert.is_false(ok, "case " .. i .. " did not raise in request_many")
        assert.matches("^ksms.core: bad request #2: ", msg)
      end
      assert.has_error(function() c:request("http://x/") end)
      assert.has_error(function() c:request() end)
      assert.has_error(function() c:request_many("x") end)
      assert.has_error(function() c:request_many { "x" } end)
      assert.has_error(function() c:request_many({}, { concurrency = 0 }) end)
      assert.has_error(function() c:request_many({}, { concurrency = 1.5 }) end)
      assert.has_error(function() c:request_many({}, { parallel = 2 }) end)
      assert.has_error(function() core.multipart_body({ { name = "a", value = "x" } }, "bad boundary") end)
      assert.has_error(function() core.urlencode_form { { "a", true } } end)
      assert.equal(0, #seen(t))
      -- Messages never carry a header value or a URL (keys travel in both).
      local _, msg = pcall(c.request, c, { url = u, headers = { ["X-Api-Key"] = "SECRET\r\n" } })
      assert.is_nil(msg:find("SECRET", 1, true), msg)
      _, msg = pcall(c.request, c, { url = "ftp://h/?key=SECRET" })
      assert.is_nil(msg:find("SECRET", 1, true), msg)
      c:close()
    end)

    it("raises on bad client options", function()
      for _, opts in ipairs {
        { timeout = -1 }, { timeout = "5" }, { connect_timeout = 0 }, { insecure = "yes" },
        { verify = false }, { ca_file = "/nonexistent/ca.pem" }, { ca_file = 1 },
        { max_response = 1.5 }, { max_response = 0 }, { max_connections = 0 },
        { user_agent = "a\r\nb" }, "x",
      } do
        assert.has_error(function() core.http_client(opts) end)
      end
    end)
  end)

  describe("ksms.transport", function()
    it("gives the libcurl transport with the interface's methods", function()
      local t = transport.new { timeout = 5 }
      for _, m in ipairs { "request", "request_many", "close" } do assert.is_function(t[m]) end
      local e = echo(t:request { url = url("/echo") })
      assert.equal("GET", e.method)
      local out = t:request_many { { url = url("/echo") } }
      assert.equal(200, out[1].status)
      t:close()
      t:close()
      assert.is_string(transport._VERSION)
      assert.is_string(require("ksms.transport.curl")._VERSION)
    end)
  end)
end)

describe("http transport over TLS", function()
  local dir, server, port

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local out, ok = H.run(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem "
      .. "-out cert.pem -days 2 -subj /CN=localhost "
      .. "-addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>&1"):format(dir))
    assert(ok, out)
    port = free_port()
    server = spawn(("openssl s_server -quiet -www -accept 127.0.0.1:%d -cert %s/cert.pem "
      .. "-key %s/key.pem >/dev/null 2>&1"):format(port, dir, dir))
    local deadline = now() + 10
    repeat
      local s = socket.tcp()
      s:settimeout(0.2)
      local up = s:connect("127.0.0.1", port)
      s:close()
      if up then break end
      socket.sleep(0.05)
    until now() > deadline
  end)

  teardown(function()
    stop(server)
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function tls_url() return ("https://127.0.0.1:%d/"):format(port) end

  it("refuses a certificate it does not trust (tls, not sent)", function()
    local c = core.http_client()
    local res, err = c:request { method = "POST", url = tls_url(), body = "x" }
    assert.is_nil(res)
    is_error(err, "network", "tls", false)
    assert.matches("certificate", err.message)
    c:close()
  end)

  it("trusts the certificate given as ca_file", function()
    local c = core.http_client { ca_file = dir .. "/cert.pem" }
    local r = assert(c:request { url = tls_url() })
    assert.equal(200, r.status)
    assert.matches("<HTML>", r.body, 1, true)
    c:close()
  end)

  it("skips verification only when insecure = true", function()
    local c = core.http_client { insecure = true }
    assert.equal(200, assert(c:request { url = tls_url() }).status)
    c:close()
    c = core.http_client { insecure = false }
    local _, err = c:request { url = tls_url() }
    is_error(err, "network", "tls", false)
    c:close()
  end)
end)

-- Answers no honest server gives (spec/fakes/hostile.lua), from a fake
-- provider told to send one (fault = kind): each ends as a clean response
-- or error, in bounded time, CPU and memory.
describe("http transport against hostile servers", function()
  local fake_control = require "fake_control"
  local fake, client

  setup(function()
    fake = fake_control.start("senders")
    client = core.http_client { timeout = 10 }
  end)

  teardown(function()
    if client then client:close() end
    if fake then fake:stop() end
  end)

  -- One POST answered with the hostile kind: res, err, and the wall
  -- seconds, CPU seconds and Lua memory growth (KiB) it took.
  local function answered(kind, timeout)
    fake:script { path = "/hostile", fault = kind, times = 1 }
    collectgarbage()
    collectgarbage()
    local mem0, t0, cpu0 = collectgarbage("count"), now(), os.clock()
    local res, err = client:request { url = fake.base_url .. "/hostile", form = { { "a", "1" } },
      timeout = timeout or 10 }
    local elapsed, cpu = now() - t0, os.clock() - cpu0
    collectgarbage()
    collectgarbage()
    return res, err, elapsed, cpu, collectgarbage("count") - mem0
  end

  local function refused(kind, category, code)
    local res, err, elapsed, cpu, grown = answered(kind)
    assert.is_nil(res, kind)
    is_error(err, category, code, true) -- the request was written
    assert.is_true(elapsed < 3, kind .. ": " .. elapsed .. " s")
    assert.is_true(cpu < 1, kind .. ": " .. cpu .. " s of CPU")
    assert.is_true(grown < 1024, kind .. ": " .. grown .. " KiB")
    return err
  end

  it("reads an over-long header line and endless 1xx answers as protocol/too_large, maybe sent", function()
    local err = refused("long_header", "protocol", "too_large")
    assert.matches("header line too long", err.message)
    err = refused("endless_1xx", "protocol", "too_large")
    assert.matches("interim", err.message)
  end)

  it("refuses conflicting Content-Length values (two headers or a list) as the nginx transport does", function()
    for _, kind in ipairs({ "conflicting_length", "conflicting_list" }) do
      local err = refused(kind, "protocol", "protocol")
      assert.matches("conflicting Content%-Length values", err.message)
    end
  end)

  it("keeps header values with long blank runs, and joins 60,000 repeats in linear time", function()
    local res, err = answered("blank_headers")
    assert(res, tostring(err))
    local blanks = (" \t"):rep(30000)
    assert.equal("a" .. blanks .. "b", res.headers["x-blank-1"])
    assert.equal("ok", res.body)
    res, err = answered("many_headers")
    assert(res, tostring(err))
    local t0 = os.clock()
    local x = res.headers.x -- built on first use, from 240 KB of "X:" lines
    local cpu = os.clock() - t0
    assert.equal(2 * 60000 - 2, #x)
    assert.is_true(cpu < 0.25, cpu .. " s of CPU for the header table")
  end)

  it("reads two million one-byte chunks, and times a drip out at the request's timeout", function()
    local res, err, elapsed = answered("tiny_chunks")
    assert(res, tostring(err))
    assert.equal(("x"):rep(2000000), res.body)
    assert.is_true(elapsed < 8, elapsed .. " s")
    local _, drip_err, drip_elapsed = answered("drip", 1)
    is_error(drip_err, "timeout", "timeout", true)
    assert.is_true(drip_elapsed >= 0.9 and drip_elapsed < 2.5, drip_elapsed .. " s")
  end)
end)
