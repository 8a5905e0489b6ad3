-- Hostile answers and webhooks against the provider adapters. Adapters
-- never do I/O: they plan requests and read the answers handed to their
-- finish functions, so the parsers are called directly here with what a
-- hostile server or webhook poster could send; the end-to-end parts go
-- through the real fakes, the MO example server and nginx.
--
-- Every parser must: run in CPU time linear in its input, never raise,
-- and answer a result or nil, err (an error object).
local ksms = require "ksms"
local errors = require "ksms.errors"
local cjson = require "cjson"
local socket = require "socket"
local fake_control = require "fake_control"
local nginx_control = require "nginx_control"
local H = require "helper"
local cafe24 = require "ksms.providers.cafe24"
local senders = require "ksms.providers.senders"
local messageme = require "ksms.providers.messageme"
local ppurio = require "ksms.providers.ppurio"

local KIB = 1024
-- CPU seconds allowed per 64 KiB of input: the linear parsers take a few
-- milliseconds, the quadratic trims they replace took 20 to 70 s.
local SECONDS_PER_64K = 0.25

local function cpu_bound(bytes) return SECONDS_PER_64K * math.max(bytes, 64 * KIB) / (64 * KIB) end

local ctx = { now = os.time }
local cfg = {
  cafe24 = cafe24.configure { user_id = "u", secure_key = "k" },
  senders = senders.configure { api_key = "k" },
  messageme = messageme.configure { api_key = "k" },
  ppurio = ppurio.configure { client_id = "c", api_key = "k" },
}
local MSG = { to = "01011112222", from = "0212345678", text = "x" }

local function answer(body, status) return { status = status or 200, headers = {}, body = body } end

-- Each parser of an answer, as the client runs it: plan, then finish with
-- the transport's outcome.
local PARSERS = {
  ["cafe24 send"] = function(b, st) return cafe24.plan_send(cfg.cafe24, MSG, ctx).finish { answer(b, st) } end,
  ["cafe24 balance"] = function(b, st) return cafe24.plan_balance(cfg.cafe24).finish { answer(b, st) } end,
  ["cafe24 sender_numbers"] = function(b, st) return cafe24.plan_sender_numbers(cfg.cafe24).finish { answer(b, st) } end,
  ["cafe24 history"] = function(b, st) return cafe24.plan_history(cfg.cafe24, {}, ctx).finish { answer(b, st) } end,
  ["senders send"] = function(b, st) return senders.plan_send(cfg.senders, MSG, ctx).finish { answer(b, st) } end,
  ["senders balance"] = function(b, st) return senders.plan_balance(cfg.senders).finish { answer(b, st) } end,
  ["messageme send"] = function(b, st) return messageme.plan_send(cfg.messageme, MSG, ctx).finish { answer(b, st) } end,
  ["messageme balance"] = function(b, st) return messageme.plan_balance(cfg.messageme).finish { answer(b, st) } end,
  ["messageme alimtalk"] = function(b, st)
    return messageme.plan_alimtalk(cfg.messageme, { template = "T", variables = { "a" }, to = "01011112222",
      from = "0212345678" }, ctx).finish { answer(b, st) }
  end,
  ["ppurio send"] = function(b, st) return ppurio.plan_send(cfg.ppurio, MSG, ctx).finish { answer(b, st) } end,
  ["ppurio report"] = function(b, st) return ppurio.plan_report(cfg.ppurio, "1").finish { answer(b, st) } end,
  ["ppurio sender_numbers"] = function(b, st) return ppurio.plan_sender_numbers(cfg.ppurio).finish { answer(b, st) } end,
  ["ppurio register_sender"] = function(b, st)
    return ppurio.plan_register_sender(cfg.ppurio, "0212345678", "본사").finish { answer(b, st) }
  end,
  ["messageme parse_mo"] = function(b, st) return messageme.parse_mo(b) end,
}

-- A message must never show a table's or userdata's address.
local function assert_clean_error(err, where)
  assert.is_true(errors.is(err), where .. ": not an error object")
  assert.is_string(err.message, where)
  assert.is_nil(err.message:find("table: 0x", 1, true), where .. ": " .. err.message)
  assert.is_nil(err.message:find("userdata: ", 1, true), where .. ": " .. err.message)
  local code_type = type(err.code)
  assert.is_true(code_type == "string" or code_type == "number", where .. ": code is a " .. code_type)
  -- a server's text quoted in an error is cut (ksms.errors' bounds)
  assert.is_true(#err.message <= errors.MESSAGE_MAX, where .. ": message of " .. #err.message .. " bytes")
  assert.is_true(code_type ~= "string" or #err.code <= errors.CODE_MAX, where .. ": long code")
end

local function is_string_or_nil(v) return v == nil or type(v) == "string" end

-- What a result may hold: strings where the adapters promise strings.
local function assert_clean_result(r, where)
  assert.is_true(r.ok, where)
  assert.is_true(is_string_or_nil(r.code), where .. ": code is a " .. type(r.code))
  for _, k in ipairs({ "id", "cmid", "call_status", "dest_phone", "report_time", "umid", "number" }) do
    assert.is_true(is_string_or_nil(r[k]), where .. ": " .. k .. " is a " .. type(r[k]))
  end
  if r.balance ~= nil then
    assert.is_number(r.balance, where)
    assert.is_true(r.balance == r.balance and math.abs(r.balance) ~= math.huge, where .. ": balance " .. r.balance)
  end
  if r.remaining ~= nil then assert.is_number(r.remaining, where) end
  for _, n in ipairs(r.numbers or {}) do
    assert.is_string(n.number, where)
    assert.is_true(is_string_or_nil(n.formatted) and is_string_or_nil(n.comment), where)
  end
  for _, rec in ipairs(r.records or {}) do
    for _, k in ipairs({ "from", "to", "text", "sent_at", "status", "refunded_at" }) do
      assert.is_true(is_string_or_nil(rec[k]), where .. ": record " .. k)
    end
  end
end

local function assert_clean_mo(mo, where)
  assert.is_string(mo.from, where)
  assert.is_string(mo.text, where)
  assert.is_true(is_string_or_nil(mo.subject), where .. ": subject is a " .. type(mo.subject))
  assert.is_table(mo.images, where)
  for _, u in ipairs(mo.images) do assert.is_string(u, where) end
end

-- Runs parse on input: never raises, returns a clean result or nil, err.
local function check_outcome(name, parse, input, where)
  local ok, r, err = pcall(parse, input)
  assert.is_true(ok, where .. ": raised: " .. tostring(r))
  if name == "messageme parse_mo" and r then
    assert_clean_mo(r, where)
  elseif r then
    assert_clean_result(r, where)
  else
    assert_clean_error(err, where)
  end
  return r, err
end

local function cpu(fn)
  local t = os.clock()
  local ok, r, err = pcall(fn)
  return os.clock() - t, ok, r, err
end

local blanks = (" \t\r\n"):rep(16 * KIB)   -- 64 KiB of whitespace

describe("provider parsers on hostile input", function()
  describe("take CPU time linear in a 64 KiB adversarial answer", function()
    local cases = {
      -- name, parser, body, expected category (nil: a result)
      { "cafe24 send", "x" .. blanks .. "x", "unknown" },
      { "cafe24 send", blanks .. "success," .. blanks .. "5" .. blanks, nil },
      { "cafe24 send", ("-"):rep(64 * KIB), "unknown" },
      { "cafe24 balance", "1" .. blanks .. "x", "unknown" },
      { "cafe24 balance", blanks .. "42" .. blanks, nil },
      { "cafe24 sender_numbers", '{"result":"Success","list":["' .. ("+"):rep(32 * KIB) .. '","'
        .. blanks:sub(1, 32 * KIB) .. '1"]}', nil },
      { "cafe24 history", "<result><code>" .. blanks .. "0000" .. blanks .. "</code></result>", nil },
      { "cafe24 history", "<result><code>0000</code>" .. ("<record><msg>" .. (" "):rep(100)
        .. "x</msg></record>"):rep(500) .. "</result>", nil },
      { "cafe24 history", ("<a>"):rep(20 * KIB), "protocol" },
      { "senders send", '{"result":"' .. blanks .. '100"}', "unknown" },
      { "senders send", ("["):rep(64 * KIB), "protocol" },
      { "senders balance", '{"remainCoin":"' .. blanks .. 'x"}', "protocol" },
      { "messageme send", '{"result":"100","x":[' .. ("{},"):rep(20 * KIB) .. '{}]}', nil },
      { "messageme balance", '{"remainCash":"1' .. blanks .. '"}', nil },
      { "ppurio send", '{"result_code":"' .. blanks .. '","result_msg":"' .. blanks .. '"}', "unknown" },
      { "ppurio report", '{"call_status":"' .. blanks .. '4100","umid":"' .. blanks .. '"}', nil },
      { "ppurio sender_numbers", '{"result_code":"200","numberList":['
        .. ('{"sendnumber":"  1","comment":" "},'):rep(1800) .. '{}]}', nil },
      { "ppurio register_sender", '{"result_code":"200","sendnumber":"' .. blanks .. '"}', nil },
      -- A body at parse_mo's bound: thousands of fields, escapes, blanks.
      { "messageme parse_mo", ("phone=%2B82+10+1234+5678&msg=" .. ("%20"):rep(1000) .. "&x&y=&"):rep(10)
        .. ("&="):rep(8 * KIB) .. "&fileloc1=" .. ("a."):rep(2 * KIB), "invalid_input" },
      { "messageme parse_mo", "phone=01012345678&msg=" .. ("+"):rep(8 * KIB) .. "&fileloc1="
        .. ("a."):rep(4 * KIB - 1) .. "&" .. ("z=1&"):rep(11 * KIB), nil },
    }
    for i, c in ipairs(cases) do
      it(("%s (case %d, %d bytes)"):format(c[1], i, #c[2]), function()
        local parse = PARSERS[c[1]]
        local seconds, ok, r, err = cpu(function() return parse(c[2]) end)
        assert.is_true(ok, tostring(r))
        if c[3] then
          assert.is_nil(r)
          assert_clean_error(err, c[1])
          assert.equal(c[3], err.category)
        else
          assert.is_table(r, err and err.message)
          if c[1] == "messageme parse_mo" then assert_clean_mo(r, c[1]) else assert_clean_result(r, c[1]) end
        end
        assert.is_true(seconds < cpu_bound(#c[2]),
          ("%.3f s of CPU for %d bytes (bound %.2f s)"):format(seconds, #c[2], cpu_bound(#c[2])))
      end)
    end

    it("the MO parser takes fields as tables at their bounds in linear time", function()
      local field = messageme.mo_limits.field
      local fields = { phone = ("+"):rep(field), msg = ("가"):rep(math.floor(field / 3)),
        fileloc1 = ("a."):rep(field / 2), fileloc2 = ("/"):rep(field), subject = (" "):rep(field) }
      local seconds, ok, r, err = cpu(function() return messageme.parse_mo(fields) end)
      assert.is_true(ok, tostring(r))
      assert.is_nil(r)
      assert.equal("sender_number", err.category)
      fields.phone = "010-1234-5678"
      seconds, ok, r = cpu(function() return messageme.parse_mo(fields) end)
      assert.is_true(ok, tostring(r))
      assert_clean_mo(r, "parse_mo")
      assert.equal(2, #r.images)
      assert.is_true(seconds < cpu_bound(5 * field), ("%.3f s"):format(seconds))
    end)
  end)

  describe("Cafe24 over HTTPS with an 80 KB adversarial answer", function()
    local cert, fake, client
    setup(function()
      cert = fake_control.make_cert()
      fake = fake_control.start("cafe24", { tls = cert })
      client = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key",
        base_url = fake.base_url, history_url = fake.history_url, ca_file = cert.cert, timeout = 10 })
    end)
    teardown(function()
      client:close()
      fake:stop()
      fake_control.remove_cert(cert)
    end)
    before_each(function() fake:reset() end)

    local body = "x" .. (" "):rep(80 * 1000) .. "x"
    local function over_https(path, call)
      fake:script { path = path, body = body, times = 1 }
      local seconds, ok, r, err = cpu(call)
      assert.is_true(ok, tostring(r))
      assert.is_nil(r)
      assert.equal("unknown", err.category)
      assert.matches("undocumented answer", err.message)
      assert.equal(body, err.raw)
      assert.equal(1, #fake:requests(path))
      -- Twice the parser's bound: the TLS handshake and libcurl count too.
      assert.is_true(seconds < 2 * cpu_bound(#body), ("%.3f s of CPU"):format(seconds))
    end

    it("send reads it in linear time", function()
      over_https("/sms_sender.php", function() return client:send { to = "01011112222", from = "0212345678", text = "x" } end)
    end)

    it("balance reads it in linear time", function()
      over_https("/sms_remain.php", function() return client:balance() end)
    end)

    it("history refuses malformed XML from the history host with nil, err", function()
      fake:script { path = "/sms_list.php", body = '<?xml version="1.0"?><result><code>&foo;</code></result>', times = 1 }
      local r, err = client:history {}
      assert.is_nil(r)
      assert.equal("protocol", err.category)
      assert.equal("bad_xml", err.code)
      assert.matches("undefined entity", err.message)
      assert(client:history {})  -- and the next, well-formed answer reads
    end)
  end)

  describe("Cafe24 history XML", function()
    local history = PARSERS["cafe24 history"]
    local function refused(body, code, pattern)
      local r, err = check_outcome("cafe24 history", history, body, body:sub(1, 60))
      assert.is_nil(r)
      assert.equal("protocol", err.category)
      assert.equal(code, err.code)
      if pattern then assert.matches(pattern, err.message) end
      return err
    end

    local laughs = { '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' }
    local prev = "lol"
    for level = 1, 9 do
      local name = "lol" .. level
      laughs[#laughs + 1] = ('<!ENTITY %s "%s">'):format(name, ("&" .. prev .. ";"):rep(10))
      prev = name
    end
    laughs[#laughs + 1] = "]><result><code>&" .. prev .. ";</code></result>"

    it("returns nil, err for what is not XML, undefined entities, DTDs and unknown encodings", function()
      refused("hello, this is not XML", "bad_xml", "not well%-formed XML: syntax error")
      refused('<?xml version="1.0"?><result><code>&foo;</code></result>', "bad_xml", "undefined entity")
      refused(table.concat(laughs), "bad_xml", "DTD")
      refused('<?xml version="1.0" encoding="EUC-KR"?><result><code>0000</code></result>', "bad_xml", "encoding")
      refused("<result><code>0000</code><record><msg>x</record></result>", "bad_xml", "mismatched tag")
      refused("<result><code>0000</code>", "bad_xml", "no element found")
      refused("", "bad_xml")
    end)

    it("says what is missing when well-formed XML has no <code>", function()
      local err = refused("<result><data></data></result>", "bad_xml", "no <code>")
      assert.is_nil(err.message:find("table:", 1, true))
    end)

    it("bounds the size of the answer and the number of records", function()
      local limits = cafe24.history_limits
      local record = "<record><msg>x</msg></record>"
      local many = "<result><code>0000</code>" .. record:rep(limits.records + 1) .. "</result>"
      refused(many, "too_large", "more than " .. limits.records .. " records")
      local fits = assert(history("<result><code>0000</code>" .. record:rep(limits.records) .. "</result>"))
      assert.equal(limits.records, #fits.records)
      local huge = "<result><code>0000</code><x>" .. ("y"):rep(limits.bytes) .. "</x></result>"
      refused(huge, "too_large", "at most " .. limits.bytes)
    end)
  end)

  describe("MessageMe parse_mo", function()
    local OK = { phone = "010-1234-5678", msg = "안녕", subject = "제목" }
    local function with(changes)
      local t = {}
      for k, v in pairs(OK) do t[k] = v end
      for k, v in pairs(changes) do t[k] = v end
      return t
    end
    local function refused(fields, pattern, category)
      local ok, r, err = pcall(messageme.parse_mo, fields)
      assert.is_true(ok, tostring(r))
      assert.is_nil(r)
      assert_clean_error(err, pattern)
      assert.equal(category or "invalid_input", err.category)
      assert.equal("messageme", err.provider)
      assert.matches(pattern, err.message)
    end

    it("refuses repeated and bare fields as ngx.req.get_post_args() returns them", function()
      refused(with { phone = { "01012345678", "01099998888" } }, "phone is given more than once")
      refused(with { msg = { "a", "b" } }, "msg is given more than once")
      refused(with { phone = true }, "phone has no value")
      refused(with { subject = true }, "subject has no value")
      refused(with { subject = { "a", "b" } }, "subject is given more than once")
      refused(with { subject = {} }, "subject is given as a table")
      refused(with { fileloc3 = { "/a.jpg", "/b.jpg" } }, "fileloc3 is given more than once")
      refused(with { msg = 42 }, "msg is a number")
      refused(with { phone = false }, "phone has no value")
    end)

    it("refuses the same repeated and bare fields in a raw body", function()
      refused("phone=01012345678&phone=01099998888&msg=x", "phone is given more than once")
      refused("phone=01012345678&msg=a&msg=b", "msg is given more than once")
      refused("phone&msg=x", "phone has no value")
      refused("phone=01012345678&msg=x&subject", "subject has no value")
    end)

    it("bounds the body and each field, and refuses invalid UTF-8", function()
      local limits = messageme.mo_limits
      refused(("a"):rep(limits.body + 1), "body is " .. (limits.body + 1) .. " bytes")
      refused(with { msg = ("x"):rep(limits.field + 1) }, "msg is " .. (limits.field + 1) .. " bytes")
      refused(with { subject = "\255\254" }, "subject")
      refused(with { fileloc1 = "/a\192.jpg" }, "fileloc1")
      refused("phone=01012345678&msg=%FF", "msg")
      local fits = assert(messageme.parse_mo(with { msg = ("x"):rep(limits.field) }))
      assert.equal(limits.field, #fits.text)
    end)

    it("still reads what MessageMe posts, and only strings come out", function()
      local mo = assert(messageme.parse_mo(with { unrelated = { "a", "b" }, other = true }))
      assert_clean_mo(mo, "parse_mo")
      assert.equal("01012345678", mo.from)
      assert.equal("제목", mo.subject)
      local raw = assert(messageme.parse_mo("msg=%EC%95%88%EB%85%95&phone=01012345678&x&x&fileloc1=%2Fa.jpg"))
      assert.same({ "http://www.messageme.co.kr/a.jpg" }, raw.images)
      refused({}, "caller number", "sender_number")
    end)
  end)

  describe("the MO examples answer 4xx to hostile posts and keep serving", function()
    local HOSTILE = {
      -- body, expected status
      { "msg=x", 400 },                                         -- no phone
      { "phone=01012345678&phone=01099998888&msg=x", 400 },     -- repeated
      { "phone&msg=x", 400 },                                   -- bare key
      { "phone=01012345678&msg=%FF%FE", 400 },                  -- not UTF-8
      { "", 400 },
    }
    local function post(port, body, extra_headers)
      local c = assert(socket.connect("127.0.0.1", port))
      c:settimeout(5)
      assert(c:send("POST /mo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        .. (extra_headers or ("Content-Length: " .. #body .. "\r\n")) .. "Connection: close\r\n\r\n" .. body))
      local status = H.read_response(c)
      c:close()
      return status
    end

    it("the LuaSocket server", function()
      local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
      local n = #HOSTILE + 4
      -- "exec" makes the shell's pid the server's, to stop it if a check fails.
      local pipe = assert(io.popen("echo PID $$; exec " .. lua .. " examples/messageme_mo_server.lua 0 --max " .. n
        .. " 2>/dev/null", "r"))
      local pid = tonumber(pipe:read("*l"):match("PID (%d+)"))
      local port = tonumber(pipe:read("*l"):match("LISTENING (%d+)"))
      local ok, e = pcall(function()
        for _, h in ipairs(HOSTILE) do assert.equal(h[2], post(port, h[1]), h[1]:sub(1, 40)) end
        -- Refused from the header alone (nothing is left unread to reset the connection).
        assert.equal(413, post(port, "", "Content-Length: " .. (64 * KIB + 1) .. "\r\n"))
        assert.equal(400, post(port, "", "Content-Length: 1e999\r\n"))
        assert.equal(413, post(port, "", "Content-Length: 99999999999999999999\r\n"))
        assert.equal(200, post(port, "phone=01012345678&msg=%EC%95%88%EB%85%95"))
      end)
      if not ok then os.execute("kill " .. pid .. " 2>/dev/null") end
      local line = pipe:read("*l")
      pipe:close()
      assert(ok, e)
      assert.equal("01012345678", cjson.decode(line).from)
    end)

    local available = nginx_control.available()
    local nginx_it = available and it or pending
    nginx_it("the nginx content handler", function()
      local nginx = nginx_control.start {
        ksms = true, log_level = "notice", lua_path = nginx_control.repo_root() .. "/examples/nginx/?.lua",
        locations = [[
          location = /mo {
            client_max_body_size 64k;
            client_body_buffer_size 64k;
            content_by_lua_block { require("messageme_mo").handle() }
          }]],
      }
      local ok, e = pcall(function()
        for _, h in ipairs(HOSTILE) do assert.equal(h[2], post(nginx.port, h[1]), h[1]:sub(1, 40)) end
        assert.equal(413, post(nginx.port, ("m"):rep(64 * KIB + 1)))
        assert.equal(200, post(nginx.port, "phone=01012345678&msg=%EC%95%88%EB%85%95"))
      end)
      local log = nginx:error_log()
      nginx:stop()
      assert(ok, e)
      assert.matches('messageme MO: {"from":"01012345678"', log, 1, true)
      assert.is_nil(log:find("runtime error", 1, true), log)
      assert.is_nil(log:find("handler failed", 1, true), log)
    end)
  end)

  describe("mutations of real answers from the fakes", function()
    -- parser name -> the answers the fakes really gave it
    local seeds = {}
    local mo_seeds = {}
    local function seed(name, r, err)
      local raw = (r and r.raw) or (err and err.raw)
      assert.is_string(raw, name .. ": no raw answer")
      seeds[name] = seeds[name] or {}
      table.insert(seeds[name], raw)
    end

    setup(function()
      local cert = fake_control.make_cert()
      local fakes = {
        senders = fake_control.start("senders"), messageme = fake_control.start("messageme"),
        ppurio = fake_control.start("ppurio"), cafe24 = fake_control.start("cafe24", { tls = cert }),
      }
      local ok, e = pcall(function()
        local from, to = "0212345678", "01011112222"
        local c = ksms.client("senders", { api_key = "test-senders-key", base_url = fakes.senders.base_url, timeout = 5 })
        seed("senders send", c:send { to = to, from = from, text = "안녕" })
        seed("senders send", c:send { to = to, from = "0299998888", text = "안녕" })
        seed("senders balance", c:balance())
        c:close()
        c = ksms.client("messageme", { api_key = "test-messageme-key", base_url = fakes.messageme.base_url, timeout = 5 })
        seed("messageme send", c:send { to = to, from = from, text = ("긴 글 "):rep(40) })
        seed("messageme balance", c:balance())
        seed("messageme alimtalk", c:alimtalk { template = "WELCOME_01", variables = { "홍길동" }, to = to, from = from })
        seed("messageme alimtalk", c:alimtalk { template = "NOPE", variables = { "a" }, to = to, from = from })
        c:close()
        c = ksms.client("ppurio", { client_id = "ksmstest", api_key = "test-ppurio-key", base_url = fakes.ppurio.base_url,
          timeout = 5 })
        local sent = assert(c:send { to = to, from = from, text = "보고서" })
        seed("ppurio send", sent)
        seed("ppurio send", c:send { to = to, from = "0299998888", text = "x" })
        seed("ppurio report", c:report(sent.cmid))
        seed("ppurio report", c:report("nope"))
        seed("ppurio register_sender", c:register_sender("031-123-4567", "경기 사무실"))
        seed("ppurio sender_numbers", c:sender_numbers())
        c:close()
        c = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key", base_url = fakes.cafe24.base_url,
          history_url = fakes.cafe24.history_url, ca_file = cert.cert, timeout = 5 })
        seed("cafe24 send", c:send { to = to, from = from, text = "기록 <1> & \"2\"" })
        seed("cafe24 send", c:send { to = to, from = "0299998888", text = "x" })
        seed("cafe24 balance", c:balance())
        seed("cafe24 sender_numbers", c:sender_numbers())
        seed("cafe24 history", c:history {})
        c:close()
        -- What the fake MessageMe posts to an MO webhook.
        local forms = require "fakes.forms"
        local mo_fields = require("fakes.messageme").mo_fields
        for _, f in ipairs({ { msg = "사진 보냅니다", phone = "010-1234-5678", fileloc1 = "/upload/mo/1.jpg" },
          { msg = ("장문 "):rep(40), phone = "+82 10 9999 8888" },
          { msg = "x", phone = "01012345678", subject = "제목", fileloc2 = "img.example.com/a.jpg" } }) do
          local list = mo_fields(f)
          seed("messageme parse_mo", { raw = forms.encode(list) })
          local map = {}
          for _, pair in ipairs(list) do map[pair[1]] = pair[2] end
          mo_seeds[#mo_seeds + 1] = map
        end
      end)
      for _, f in pairs(fakes) do f:stop() end
      fake_control.remove_cert(cert)
      assert(ok, e)
    end)

    local TOKENS = { '"', "{", "}", "[", "]", ",", ":", "null", "true", "false", "1e999", "-1e999", "NaN",
      "-0", "0.5", "9223372036854775808", "<", ">", "</", "/>", "&", "&amp;", "&#0;", "&#x110000;", "&nope;",
      "<![CDATA[", "]]>", '<!DOCTYPE a [<!ENTITY e "x">]>', '<?xml version="1.0" encoding="EUC-KR"?>',
      "<record>", "</record>", "<code>", "</code>", "<code>0000</code>", "%", "%FF", "%00", "%2", "+", "=", "&",
      "\0", "\255", "\192\128", (" "):rep(300), ("\t"):rep(100) .. "x", "|", "\r\n", "success,", "Test Success!",
      "-", "phone=", "&phone=1", "msg", "fileloc1=//", '"result":', '"result_code":"200"', '"list":[1]' }

    local function rand_pos(s) return math.random(0, #s) end
    local OPS = {
      function(s) local i = math.random(1, math.max(#s, 1)); return s:sub(1, i - 1) .. string.char(math.random(0, 255)) .. s:sub(i + 1) end,
      function(s) local i = rand_pos(s); return s:sub(1, i) .. TOKENS[math.random(#TOKENS)] .. s:sub(i + 1) end,
      function(s) local i = rand_pos(s); return s:sub(1, i) .. s:sub(i + math.random(1, 16)) end,
      function(s) local i = rand_pos(s); local j = i + math.random(1, 32); return s:sub(1, j) .. s:sub(i + 1, j) .. s:sub(j + 1) end,
      function(s) return s:sub(1, rand_pos(s)) end,
    }
    local function mutate(s)
      for _ = 1, math.random(1, 4) do s = OPS[math.random(#OPS)](s) end
      return s
    end

    local ROUNDS = 300
    local names = {}
    for name in pairs(PARSERS) do names[#names + 1] = name end
    table.sort(names)

    for _, name in ipairs(names) do
      it(name .. ": byte mutations never raise and give a result or nil, err", function()
        local list = seeds[name]
        assert.is_true(list and #list > 0, "no real answer for " .. name)
        math.randomseed(11)
        local results, refusals = 0, 0
        for si, body in ipairs(list) do
          for round = 1, ROUNDS do
            local mutant = mutate(body)
            local status = round % 50 == 0 and 500 or 200
            local r = check_outcome(name, function(b) return PARSERS[name](b, status) end, mutant,
              ("%s seed %d round %d: %q"):format(name, si, round, mutant:sub(1, 200)))
            if r then results = results + 1 else refusals = refusals + 1 end
          end
          check_outcome(name, PARSERS[name], body, name .. " seed " .. si)
        end
        assert.equal(#list * ROUNDS, results + refusals)
      end)
    end

    -- Every value in a real JSON answer replaced by one of these, one at a time.
    local LITERALS = { "100", "100.0", "-1", "0.5", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
      "9223372036854775808", "-0", "1e308", "123456789012345678901234567890", "true", "false", "null", "[]", "{}",
      '["100","200"]', '{"result":"100"}', "[[[[]]]]", '""', '"' .. ("9"):rep(400) .. '"', '"\\u0000"', '"\\ud800"' }
    local PLACEHOLDER = "KSMSMUTANTVALUE"

    local deep_copy = H.deep_copy
    local function paths(doc, prefix, out)
      for k, v in pairs(doc) do
        local path = {}
        for i, key in ipairs(prefix) do path[i] = key end
        path[#path + 1] = k
        out[#out + 1] = path
        if type(v) == "table" then paths(v, path, out) end
      end
      return out
    end
    local function replaced(doc, path, literal)
      local copy = deep_copy(doc)
      local t = copy
      for i = 1, #path - 1 do t = t[path[i]] end
      t[path[#path]] = PLACEHOLDER
      return (cjson.encode(copy):gsub('"' .. PLACEHOLDER .. '"', function() return literal end))
    end

    for _, name in ipairs(names) do
      it(name .. ": every value of a JSON answer replaced by a wrong type", function()
        local safe = require "cjson.safe"
        local tried = 0
        for si, body in ipairs(seeds[name] or {}) do
          local doc = safe.decode(body)
          if type(doc) == "table" then
            for _, path in ipairs(paths(doc, {}, {})) do
              for _, literal in ipairs(LITERALS) do
                local mutant = replaced(doc, path, literal)
                check_outcome(name, PARSERS[name], mutant, ("%s seed %d: %s"):format(name, si, mutant:sub(1, 200)))
                tried = tried + 1
              end
            end
          end
        end
        local json_answers = { ["cafe24 send"] = false, ["cafe24 balance"] = false, ["cafe24 history"] = false,
          ["messageme parse_mo"] = false }
        if json_answers[name] == nil then assert.is_true(tried > 0, name .. ": no JSON answer to mutate") end
      end)
    end

    it("messageme parse_mo: every field posted as a wrong type", function()
      local WRONG = { { "01012345678", "01099998888" }, true, false, 42, 0 / 0, {}, { {} }, ("x"):rep(9000),
        "\255", "", "[제목없음]", "//", "http://", "a.b/" }
      local fields = { "phone", "msg", "subject", "fileloc1", "fileloc2", "fileloc3", "fileloc4", "fileloc5", "other" }
      local tried, read = 0, 0
      for si, base in ipairs(mo_seeds) do
        for _, field in ipairs(fields) do
          for wi, wrong in ipairs(WRONG) do
            local posted = deep_copy(base)
            posted[field] = wrong
            local r = check_outcome("messageme parse_mo", messageme.parse_mo, posted,
              ("seed %d: %s as wrong value %d"):format(si, field, wi))
            tried = tried + 1
            if r then read = read + 1 end
          end
        end
      end
      assert.equal(#mo_seeds * 9 * 14, tried)
      assert.is_true(read > 0 and read < tried)
    end)
  end)
end)
