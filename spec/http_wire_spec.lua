-- One request writer: what the libcurl transport puts on the wire is, byte
-- for byte, what ksms.transport.http1.prepare wrote (request line, headers,
-- body), libcurl adding nothing of its own (no Accept, Expect, User-Agent,
-- Content-Type default, Host of its own placing). A raw echo server
-- (spec/fakes/echo_server.lua, /raw) answers with the exact bytes it read.
-- The cosocket transport's bytes are checked the same way in
-- spec/nginx_http_spec.lua.
local core = require "ksms.core"
local http1 = require "ksms.transport.http1"
local cjson = require("cjson").new()
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"

local function spawn(cmd)
  local p = assert(io.popen("echo $$; exec env -u LD_PRELOAD " .. cmd))
  local pid = tonumber(p:read("*l"))
  assert(pid, "could not start: " .. cmd)
  return { pipe = p, pid = pid }
end

-- The requests every transport must write exactly as prepared; base is
-- "http://127.0.0.1:<port>" and path the server's raw echo path.
local function requests(base, path)
  local big = ("0123456789abcdef"):rep(80 * 1024) -- 1.25 MiB: libcurl would add Expect: 100-continue
  return {
    form = { url = base .. path .. "?via=form",
      headers = { { "x-waple-authorization", "k" }, { "X-Empty", "" }, { "X-Blank", "  " }, { "X-Num", 5 } },
      form = { { "msg", "안녕 a+b&c=d" }, { "n", 1 } } },
    json = { method = "POST", url = base .. path,
      headers = { ["Content-Type"] = "application/json; charset=utf-8", ["Authorization"] = "Bearer t" },
      body = cjson.encode { to = "01012345678", text = "가나다" } },
    multipart = { url = base .. path, boundary = "ksms-fixed-B0undary",
      multipart = { { name = "text", value = "사진 두 장" }, { name = "n", value = 2 },
        { name = "file", data = "\255\216\255\224 jpeg bytes", filename = "a.jpg", content_type = "image/jpeg" } } },
    get = { url = base .. path .. "?a=1&b=%EA%B0%80&c=/../x#frag", headers = { Accept = "application/json" } },
    get_map = { url = base .. path .. "?m=1", headers = { ["X-B"] = "2", ["X-A"] = "1", ["user-agent"] = "mine/1" } },
    host = { url = base .. path .. "?host=1", headers = { { "X-First", "1" }, { "Host", "example.com" } } },
    put_empty = { method = "PUT", url = base .. path .. "?put=1" },
    delete = { method = "DELETE", url = base .. path .. "?delete=1" },
    big = { url = base .. path .. "?big=1", body = big, headers = { ["Content-Type"] = "text/plain" } },
  }
end

describe("the libcurl transport's request bytes", function()
  local S, base

  setup(function()
    S = spawn(LUA .. " spec/fakes/echo_server.lua")
    local line = S.pipe:read("*l")
    local port = tonumber(line and line:match("^LISTENING (%d+)$"))
    assert(port, "echo server did not start: " .. tostring(line))
    S.pipe:read("*l")
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if S then
      os.execute("kill " .. S.pid .. " 2>/dev/null")
      S.pipe:close()
    end
  end)

  for _, ua in ipairs { false, "ksms-spec/1" } do
    it("are exactly http1.prepare's head and body" .. (ua and " (user_agent given)" or ""), function()
      local opts = ua and { user_agent = ua } or {}
      local defaults = { user_agent = ua or ("ksms/" .. core._VERSION) }
      local reqs = requests(base, "/raw")
      for _, t in ipairs { core.http_client(opts), require("ksms.transport").new(opts) } do
        for name, req in pairs(reqs) do
          local p = http1.prepare(req, defaults)
          local res, err = t:request(req)
          assert(res, name .. ": " .. tostring(err))
          assert.equal(200, res.status, name)
          local want = p.head .. (p.body or "")
          if #want > 4096 then
            assert.equal(#want, #res.body, name)
            assert.equal(p.head, res.body:sub(1, #p.head), name)
            assert.is_true(res.body == want, name)
          else
            assert.equal(want, res.body, name)
          end
        end
        -- request_many writes the same bytes.
        local list, preps = {}, {}
        for _, name in ipairs { "form", "json", "multipart", "get" } do
          list[#list + 1] = reqs[name]
          preps[#preps + 1] = http1.prepare(reqs[name], defaults)
        end
        for i, res in ipairs(t:request_many(list, { concurrency = 2 })) do
          assert.equal(preps[i].head .. (preps[i].body or ""), res.body, i)
        end
        t:close()
      end
    end)
  end

  it("sends the prepared form of what the spec checks: no Expect, Accept or Content-Type of libcurl's", function()
    local t = core.http_client()
    local reqs = requests(base, "/raw")
    local raw = assert(t:request(reqs.big)).body
    local head = raw:sub(1, raw:find("\r\n\r\n", 1, true))
    assert.is_nil(head:lower():find("expect", 1, true))
    raw = assert(t:request(reqs.put_empty)).body
    assert.is_nil(raw:lower():find("content-type", 1, true))
    assert.matches("\r\nContent%-Length: 0\r\n\r\n$", raw)
    raw = assert(t:request(reqs.host)).body
    assert.matches("^GET /raw%?host=1 HTTP/1.1\r\nHost: example.com\r\n", raw)
    raw = assert(t:request(reqs.form)).body
    assert.matches("\r\nX%-Empty:\r\nX%-Blank:\r\n", raw)
    raw = assert(t:request(reqs.get)).body
    assert.matches("^GET /raw%?a=1&b=%%EA%%B0%%80&c=/%.%./x HTTP/1.1\r\n", raw)
    t:close()
  end)

  it("are what the dry run shows (the prepared bytes, masked)", function()
    local dryrun = require "ksms.cli.dryrun"
    assert.is_function(dryrun.wire)
    local p = http1.prepare(requests(base, "/raw").json, { user_agent = "ksms/" .. core._VERSION })
    assert.equal(p.head .. p.body, dryrun.wire(p))
  end)
end)

describe("http1.prepare misuse", function()
  it("refuses a second Host header", function()
    assert.error_matches(function()
      http1.prepare({ url = "http://h/", headers = { { "Host", "a" }, { "host", "b" } } }, { user_agent = "x" })
    end, "Host given twice")
  end)

  it("reports a body encoder's misuse as a bad request, with the caller's prefix", function()
    local ok, msg = pcall(http1.prepare, { url = "http://h/", form = { { "a", {} } } }, { user_agent = "x" }, 3)
    assert.is_false(ok)
    assert.equal("ksms.transport: bad request #3: form field 1: name and value must be strings or numbers", msg)
    ok, msg = pcall(http1.prepare, { url = "http://h/", multipart = { { value = "x" } } },
      { user_agent = "x", who = "ksms.core" })
    assert.is_false(ok)
    assert.equal("ksms.core: bad request: multipart part 1: name is required", msg)
  end)

  it("leaves the C core no request of its own to write", function()
    local c = core.http_client()
    assert.error_matches(function() c:request { url = "http://h/", nope = 1 } end,
      "^ksms.core: bad request: unknown request field 'nope'")
    c:close()
    local src = H.read_file and H.read_file("csrc/http.c") or assert(io.open("csrc/http.c")):read("*a")
    for _, gone in ipairs { "http_parse(", "http_headers(", "http_header(", "http_token_char(" } do
      assert.is_nil(src:find(gone, 1, true), gone)
    end
  end)
end)

describe("the dry run's wire bytes", function()
  local dryrun = require "ksms.cli.dryrun"
  local defaults = { user_agent = "ksms/" .. core._VERSION }
  local SECRET = "s3cr+t/Key=가나"

  it("are http1.prepare's bytes exactly when nothing is secret (form, JSON, multipart, GET)", function()
    local reqs = requests("http://127.0.0.1:8080", "/p")
    reqs.multipart.multipart[3].data = "text, not binary"
    reqs.json.headers.Authorization = nil -- a secret: masked (next test)
    for name, req in pairs(reqs) do
      if name ~= "big" then
        local p = http1.prepare(req, defaults)
        local d = dryrun.describe(req, "senders")
        assert.equal(p.head .. (p.body or ""), d.wire, name)
        assert.equal(#p.head + #(p.body or ""), d.wire_bytes, name)
      end
    end
  end)

  it("mask a secret in every encoding, in headers, form fields and multipart values", function()
    local reqs = {
      { url = "http://h/send", form = { { "api_key", SECRET }, { "secure", core.b64encode(SECRET) }, { "msg", "hi" } } },
      { url = "http://h/send", headers = { { "x-waple-authorization", SECRET } }, body = '{"a":1}' },
      { url = "http://h/send", headers = { Authorization = SECRET },
        multipart = { { name = "key", value = SECRET }, { name = "msg", value = "안녕" } }, boundary = "B" },
    }
    for i, req in ipairs(reqs) do
      local d = dryrun.describe(req, "x")
      assert.is_string(d.wire, i)
      assert.truthy(d.wire:find(require("ksms.secrets").MASK, 1, true), i)
      for _, form in ipairs(H.secret_encodings(SECRET)) do
        assert.is_nil(d.wire:find(form, 1, true), i .. ": " .. form)
      end
      -- The head is the real one: its Content-Length counts the real body.
      local p = http1.prepare(req, defaults)
      assert.equal(#p.head + #(p.body or ""), d.wire_bytes, i)
      assert.equal(p.head:match("Content%-Length: %d+"), d.wire:match("Content%-Length: %d+"), i)
    end
  end)

  it("shows ppurio's MMS multipart with its boundary, binary parts by their size", function()
    local jpeg = "\255\216\255\224" .. ("\0\1\2\255"):rep(100)
    local req = { url = "http://h/mms", headers = { { "x-waple-authorization", SECRET } },
      multipart = { { name = "msg_body", value = "사진" },
        { name = "file", data = jpeg, filename = "a.jpg", content_type = "image/jpeg" } } }
    local d = dryrun.describe(req, "ppurio")
    local boundary = d.wire:match("\r\nContent%-Type: multipart/form%-data; boundary=(ksms%-%w+)\r\n")
    assert.is_string(boundary)
    assert.truthy(d.wire:find("--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"msg_body\"\r\n\r\n사진\r\n", 1, true))
    assert.truthy(d.wire:find(("<%d bytes of binary content, not shown>"):format(#jpeg), 1, true))
    assert.truthy(d.wire:find("--" .. boundary .. "--\r\n", 1, true))
    assert.is_true(d.wire_elided)
    assert.matches("# on the wire, %d+ bytes", dryrun.render(d))
  end)
end)
