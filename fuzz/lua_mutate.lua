-- fuzz/lua_mutate.lua: mutation loops for the parsers written in Lua, run
-- under the ASan build of ksms.core (see fuzz/run.sh), Lua 5.4 or LuaJIT.
--
--   lua fuzz/lua_mutate.lua TARGET [--seconds N] [--seed N] [--corpus DIR]
--       [--replay DIR] [--save DIR] [--current FILE] [--no-tostring] [FILE ...]
--   lua fuzz/lua_mutate.lua --list
--
-- It replays every file of --replay (the regressions), then mutates the
-- seeds of --corpus for --seconds: byte flips, long runs of blanks, cuts,
-- splices, repeated tokens and lines, long tokens, invalid UTF-8, JSON
-- values of the wrong type. FILE arguments run just those inputs.
--
-- For every input: nothing raises (a raise from the code under test is a
-- break); a result is a value or nil plus an error that
-- require("ksms.errors").is accepts, with a readable tostring (the C
-- __tostring, which ASan watches); the CPU time (os.clock) stays under a
-- bound proportional to the input (250 ms per 64 KiB plus 500 ms, some
-- targets more; a slow input is timed twice more after a full collection);
-- and the target's own invariants below. The first input of each kind of
-- break is saved under --save (a file and a .txt saying what broke) and the
-- exit status is 1. The input being run is written to --current first:
-- after a crash (ASan, a signal) run.sh keeps it.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local core = require "ksms.core"
local errors = require "ksms.errors"
local cjson = require "cjson.safe"

local type, pairs, ipairs, tostring, tonumber, pcall, xpcall, error, select =
  type, pairs, ipairs, tostring, tonumber, pcall, xpcall, error, select
local byte, char, sub, rep, find, format, gsub, lower, match =
  string.byte, string.char, string.sub, string.rep, string.find, string.format, string.gsub,
  string.lower, string.match
local concat, insert, remove = table.concat, table.insert, table.remove
local unpack = table.unpack or unpack
local floor, random, huge = math.floor, math.random, math.huge
local clock = os.clock

local MAX_INPUT = 256 * 1024    -- the CSV and HTTP limits are 64 KiB: go past them
local MAX_ERROR_TEXT = 8 * 1024 -- tostring(err) of a runtime error: messages are cut

-- ---- breaks -------------------------------------------------------------------

-- --no-tostring: to look past a known tostring(err) crash in a long run
-- (the same text is checked, built in Lua instead).
local NO_TOSTRING = false

local BREAK = {}
local function fail(kind, fmt, ...)
  error(setmetatable({ kind = kind, msg = format(fmt, ...) }, BREAK), 0)
end

local function check(cond, kind, fmt, ...)
  if not cond then fail(kind, fmt, ...) end
end

-- An error object as ksms promises it.
local function check_error(err, what)
  check(errors.is(err), "not_an_error", "%s: the error is a %s without the ksms.error metatable",
    what, type(err))
  check(errors.categories[err.category], "bad_category", "%s: unknown category %s", what, tostring(err.category))
  local ct = type(err.code)
  check(ct == "string" or ct == "number", "bad_code", "%s: error code is a %s", what, ct)
  check(type(err.message) == "string", "bad_message", "%s: error message is a %s", what, type(err.message))
  check(type(err.provider) == "string", "bad_provider", "%s: error provider is a %s", what, type(err.provider))
  local head = "ksms[" .. err.provider .. "] " .. err.category
  -- the C __tostring (csrc/error.c): "ksms[provider] category (code): message"
  local text = NO_TOSTRING and (head .. " (" .. tostring(err.code) .. "): " .. err.message) or tostring(err)
  check(type(text) == "string" and sub(text, 1, #head) == head, "bad_tostring",
    "%s: tostring(err) is %q, not %q...", what, sub(tostring(text), 1, 80), head)
  check(#text <= MAX_ERROR_TEXT, "unbounded_error", "%s: tostring(err) is %d bytes (an answer quoted whole?)",
    what, #text)
  local kind = match(text, "(%a+): 0x%x+")
  check(not (kind == "table" or kind == "function" or kind == "userdata" or kind == "thread"),
    "address_in_error", "%s: the error shows a Lua address: %s", what, sub(text, 1, 200))
end

-- ---- small tools ----------------------------------------------------------------

local function hash(s) -- for file names and split seeds, the same in both interpreters
  local h = 5381
  for i = 1, #s, (#s > 4096 and floor(#s / 4096) or 1) do h = (h * 33 + byte(s, i)) % 4294967296 end
  return (h * 33 + #s) % 4294967296
end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function list_dir(dir)
  local out = {}
  if not dir then return out end
  local p = io.popen("ls -1 '" .. dir .. "' 2>/dev/null")
  for name in p:lines() do
    if not find(name, "%.txt$") then out[#out + 1] = dir .. "/" .. name end
  end
  p:close()
  table.sort(out)
  return out
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- ---- the targets -----------------------------------------------------------------
-- Each returns a short signature of what happened (new signatures keep an
-- input in the pool, a poor man's coverage) and fails or raises on a break.

local T = {}

-- HTTP/1.1 responses through the nginx transport's sans-I/O reader, fed
-- whole and in pieces: the same outcome (status, headers, body or error
-- code) either way.
do
  local http1 = require "ksms.transport.http1"
  local CODES = { empty = true, recv = true, timeout = true, protocol = true, too_large = true }
  local MAX = 1024 * 1024
  local function read_with(input, piece)
    local pos = 1
    local r = http1.reader(function(max)
      if pos > #input then return nil, "closed" end
      local n = piece(max)
      local s = sub(input, pos, pos + n - 1)
      pos = pos + #s
      return s
    end)
    local res, a, b = http1.read_response(r, { max_response = MAX })
    if res then
      check(type(res.status) == "number" and res.status >= 100 and res.status <= 999, "bad_status",
        "status %s", tostring(res.status))
      check(type(res.headers) == "table" and type(res.body) == "string" and type(res.raw_headers) == "string",
        "bad_response", "response fields of the wrong type")
      check(#res.body <= MAX, "too_large", "body of %d bytes over max_response", #res.body)
      for k, v in pairs(res.headers) do
        check(type(k) == "string" and type(v) == "string", "bad_headers", "a header that is not string: string")
      end
      check(type(a) == "boolean", "bad_keep", "keep is a %s", type(a))
    else
      check(CODES[a], "bad_code", "read_response failed with code %s", tostring(a))
      check(type(b) == "string", "bad_detail", "read_response's detail is a %s", type(b))
    end
    return res, a
  end
  -- 100 ms per 64 KiB: the reader copies what is buffered (at most one
  -- read, 16 KiB) for each line, which is linear but not cheap.
  T.http1 = { cpu_per_64k = 0.5, run = function(input)
    local res, code = read_with(input, function(max) return max end)
    local h = hash(input)
    local res2, code2 = read_with(input, function(max)
      h = (h * 1103515245 + 12345) % 2147483648
      local n = h % 4 == 0 and (h % 300 + 1) or (h % 7 + 1)
      return n < max and n or max
    end)
    if res then
      check(res2 and res2.status == res.status and res2.body == res.body and deep_equal(res.headers, res2.headers),
        "split", "the response read in pieces differs from the response read whole")
      return "ok" .. res.status
    end
    check(not res2 and code2 == code, "split", "read whole: %s, in pieces: %s", tostring(code),
      res2 and "a response" or tostring(code2))
    return code
  end }
end

-- Provider answers through ksms.client over a test double transport: the
-- input is "operation[ status]\n" then the body the provider answers.
local function check_outcome(res, err, what)
  if res ~= nil then
    check(type(res) == "table" and res.ok == true and err == nil, "bad_result",
      "%s returned a %s (ok = %s) and %s", what, type(res), type(res) == "table" and tostring(res.ok) or "-",
      tostring(err))
    return "ok:" .. tostring(res.code)
  end
  check_error(err, what)
  return err.category .. ":" .. sub(tostring(err.code), 1, 24)
end

local function provider_target(provider, options, ops)
  local names = {}
  for name in pairs(ops) do names[#names + 1] = name end
  table.sort(names)
  local ksms = require "ksms"
  return { max_input = 64 * 1024, run = function(input)
    -- a transport's status is always a 3-digit integer
    local op, status, body = match(input, "^(%a+) ?(%d?%d?%d?)\n(.*)$")
    if not ops[op] then op, status, body = names[#input % #names + 1], "", input end
    local function answer()
      return { status = tonumber(status) or 200, body = body, raw_headers = "",
        headers = { ["content-type"] = "text/html" } }
    end
    local o = { transport = {
      request = function() return answer() end,
      request_many = function(_, reqs)
        local outs = {}
        for i = 1, #reqs do outs[i] = answer() end
        return outs
      end,
      close = function() end,
    }, now = function() return 1767225600 end }
    for k, v in pairs(options) do o[k] = v end
    local client = ksms.client(provider, o)
    local res, err = ops[op](client)
    return op .. ":" .. check_outcome(res, err, provider .. " " .. op)
  end }
end

local SMS = { from = "02-1234-5678", to = "010-1111-2222", text = "안녕하세요" }
T.senders = provider_target("senders", { api_key = "k" }, {
  send = function(c) return c:send(SMS) end,
  balance = function(c) return c:balance() end,
})
T.messageme = provider_target("messageme", { api_key = "k" }, {
  send = function(c) return c:send(SMS) end,
  balance = function(c) return c:balance() end,
  alimtalk = function(c)
    return c:alimtalk { template = "T1", variables = { "a" }, to = SMS.to, from = SMS.from }
  end,
})
T.ppurio = provider_target("ppurio", { client_id = "id", api_key = "k" }, {
  send = function(c) return c:send(SMS) end,
  report = function(c) return c:report("20250101000000001") end,
  register = function(c) return c:register_sender("0312345678", "fuzz") end,
  numbers = function(c) return c:sender_numbers() end,
})
T.cafe24 = provider_target("cafe24", { user_id = "id", secure_key = "k" }, {
  send = function(c) return c:send(SMS) end,
  balance = function(c) return c:balance() end,
  numbers = function(c) return c:sender_numbers() end,
})
T.cafe24_history = provider_target("cafe24", { user_id = "id", secure_key = "k" }, {
  history = function(c) return c:history { days = 1 } end,
})

-- MessageMe's MO webhook: the raw form body, and the same body as the table
-- ngx.req.get_post_args() makes of it (a repeated name: a list of values;
-- a bare name: true).
do
  local messageme = require "ksms.providers.messageme"
  local function unescape(s)
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
  end
  local function post_args(body)
    local args = {}
    for pair in (body .. "&"):gmatch("([^&]*)&") do
      if pair ~= "" then
        local k, eq, v = match(pair, "^([^=]*)(=?)(.*)$")
        k = unescape(k)
        local value = eq == "" and true or unescape(v)
        local old = args[k]
        if old == nil then args[k] = value
        elseif type(old) == "table" then old[#old + 1] = value
        else args[k] = { old, value } end
      end
    end
    return args
  end
  local function check_mo(res, err, what)
    if res == nil then
      check_error(err, what)
      return "err:" .. tostring(err.code)
    end
    check(type(res) == "table" and type(res.from) == "string" and type(res.text) == "string", "bad_mo",
      "%s: from or text is not a string", what)
    check(res.subject == nil or type(res.subject) == "string", "bad_mo", "%s: subject is a %s",
      what, type(res.subject))
    check(type(res.images) == "table", "bad_mo", "%s: images is a %s", what, type(res.images))
    for _, img in ipairs(res.images) do check(type(img) == "string", "bad_mo", "%s: an image is a %s", what, type(img)) end
    return "ok:" .. #res.images
  end
  T.messageme_mo = { run = function(input)
    local res, err = messageme.parse_mo(input)
    local a = check_mo(res, err, "parse_mo(body)")
    res, err = messageme.parse_mo(post_args(input))
    local b = check_mo(res, err, "parse_mo(get_post_args table)")
    return a .. "/" .. b
  end }
end

-- The CLI's CSV reader on a file of the input's bytes: records of strings,
-- no field over the reader's limits, errors are messages naming a line.
do
  local csv = require "ksms.cli.csv"
  local path = os.tmpname()
  -- 300 ms per 64 KiB: a file of "," lines is 32768 records per 64 KiB,
  -- each a line read and a table (about 5 us a record).
  T.csv = { lines = true, cpu_per_64k = 0.3, cleanup = function() os.remove(path) end, run = function(input)
    write(path, input)
    local limit = csv.MAX_FIELD
    if csv.MAX_LINE and csv.MAX_LINE > limit then limit = csv.MAX_LINE end
    local r = assert(csv.open(path))
    local records, sig = 0, "eof"
    while true do
      local fields, line = r:next()
      if fields == nil then
        if line ~= nil then
          check(type(line) == "string", "bad_error", "next() failed with a %s", type(line))
          sig = "err:" .. (match(line, "^line %d+: (%a+ %a+)") or "?")
        end
        break
      end
      records = records + 1
      check(type(fields) == "table" and type(line) == "number", "bad_record", "next() gave %s, %s",
        type(fields), type(line))
      for i, f in ipairs(fields) do
        check(type(f) == "string", "bad_field", "field %d is a %s", i, type(f))
        check(#f <= limit, "field_over_limit", "a field of %d bytes passed the %d-byte limit (line %d)",
          #f, limit, line)
      end
      check(records <= #input + 1, "endless", "more records than bytes")
    end
    r:close()
    return sig .. ":" .. (records > 3 and "many" or records)
  end }
end

-- The OneShot protocol state machine driven by a script, one step a line:
--   > {json}        the server sends this message (a table Body of
--                   BindRes/UnBindRes, or of anything in encrypted mode,
--                   is encrypted as the server would)
--   >raw HEX        the server sends these bytes
--   submit [N]      N messages are submitted (ids M1, M2, ...; 500 in all)
--   upload [N]      an upload of N bytes is queued (20 in all)
--   poll [+S]       time moves S seconds (1), then poll
--   ack             every pending report/spam/change_phone event is acked
--   disconnect      the connection drops; the client reconnects
--   close           UnBindReq
-- "#encrypted" on the first line selects the encrypted mode. Invariants:
-- no raise, each message gets at most one outcome (result event), errors
-- and outcomes are ksms errors, an upload_done names its file, what the
-- client writes is valid frames.
do
  local protocol = require "ksms.oneshot.protocol"
  local codec = require "ksms.oneshot.codec"
  local KEY, IV = "ksms-oneshot-key", "ksms-oneshot-iv!" -- spec/fakes/oneshot.lua
  local BIND_METHODS = { BindRes = true, UnBindRes = true }
  local EVENT_TYPES = { bound = true, sent = true, bind_failed = true, result = true, requeued = true, report = true,
    spam = true, change_phone = true, upload_step = true, upload_done = true, upload_failed = true,
    alive_res = true, unbound = true, dead = true, protocol_error = true }

  -- The script as steps, with every server frame built (framing and the
  -- server's encryption are the harness's work, not timed).
  local function prepare(input)
    local encrypted = sub(input, 1, 10) == "#encrypted"
    local steps, private_key = { encrypted = encrypted }, nil
    for line in (input .. "\n"):gmatch("([^\n]*)\n") do
      local cmd, rest = match(line, "^(%S*)%s?(.*)$")
      if cmd == ">" then
        local msg = cjson.decode(rest)
        local bytes
        if type(msg) == "table" and type(msg.Header) == "table" and type(msg.Body) == "table"
          and (BIND_METHODS[msg.Header.Method] or (encrypted and private_key)) then
          local key = private_key or KEY:sub(1, 16)
          msg.Body = core.b64encode(core.aes128cbc_encrypt(cjson.encode(msg.Body) or "{}", key, IV))
          bytes = core.frame_encode(cjson.encode(msg))
        else
          bytes = core.frame_encode(rest)
        end
        if encrypted and type(msg) == "table" and type(msg.Header) == "table"
          and msg.Header.Method == "PrivateKeyRes" and type(msg.Body) == "table"
          and type(msg.Body.PrivateKey) == "string" and #msg.Body.PrivateKey >= 16 then
          private_key = sub(msg.Body.PrivateKey, 1, 16)
        end
        steps[#steps + 1] = { "receive", bytes }
      elseif cmd == ">raw" then
        steps[#steps + 1] = { "receive", core.unhex(rest) or rest }
      elseif cmd == "submit" or cmd == "upload" or cmd == "ack" or cmd == "disconnect" or cmd == "close" then
        steps[#steps + 1] = { cmd, tonumber(rest) }
      elseif cmd == "poll" then
        steps[#steps + 1] = { cmd, math.min(math.max(tonumber(match(rest, "^%+?(%d+%.?%d*)")) or 1, 0), 3600) }
      end
    end
    local wire = 0
    for _, st in ipairs(steps) do if st[1] == "receive" then wire = wire + #st[2] end end
    steps.wire = wire
    return steps
  end

  -- A short line becomes a whole frame, and a refused bind a reconnect (a
  -- BindReq encrypted and compressed): the bound counts the frames' bytes
  -- and 0.1 ms a step besides the script's size.
  local function bound(steps, input, floor_s, per_64k)
    local bytes = steps.wire > #input and steps.wire or #input
    return floor_s + per_64k * bytes / 65536 + 0.0001 * #steps
  end

  -- Every frame is inflated, decoded and often decrypted and answered: a
  -- few hundred microseconds each under ASan, 0.235 s was seen for 24 KB
  -- on a loaded machine; a quadratic step would still be far above this.
  T.oneshot_protocol = { cpu_per_64k = 1.0, max_input = 64 * 1024, lines = true, prepare = prepare, bound = bound,
    run = function(steps)
    local p = protocol.new { id = "test001", password = "pw", key = KEY, iv = IV, id_prefix = "T",
      encrypted = steps.encrypted }
    local now, n_submitted, n_uploads = 0, 0, 0
    local outcomes = {}       -- rec -> number of result events
    local pending_acks = {}
    local server = codec.decoder()
    local sig = {}

    local function written(out, what)
      check(type(out) == "string", "bad_out", "%s wrote a %s", what, type(out))
      if out ~= "" then
        local msgs, err = server:feed(out)
        check(msgs and not err, "bad_frames", "%s wrote bytes that are not OneShot frames: %s", what,
          tostring(err and err.message))
      end
    end
    local connected = true
    local function handle(events, what)
      check(type(events) == "table", "bad_events", "%s returned %s events", what, type(events))
      local fatal = false
      for _, ev in ipairs(events) do
        check(type(ev) == "table" and EVENT_TYPES[ev.type], "bad_event", "%s: unknown event %s", what,
          tostring(type(ev) == "table" and ev.type))
        sig[ev.type] = true
        if ev.type == "result" then
          check(ev.rec ~= nil, "bad_event", "a result without its rec")
          outcomes[ev.rec] = (outcomes[ev.rec] or 0) + 1
          check(outcomes[ev.rec] == 1, "two_outcomes", "message %s got %d outcomes", tostring(ev.rec.id),
            outcomes[ev.rec])
          if ev.ok then
            check(type(ev.outcome) == "table" and ev.outcome.ok == true, "bad_outcome", "ok result without an ok outcome")
          else
            check_error(ev.outcome, "the outcome of message " .. tostring(ev.rec.id))
          end
        elseif ev.type == "requeued" then
          check(not outcomes[ev.rec], "requeued_after_outcome", "message %s requeued after its outcome",
            tostring(ev.rec and ev.rec.id))
        elseif ev.type == "protocol_error" or ev.type == "bind_failed" or ev.type == "upload_failed" then
          check_error(ev.err, ev.type)
          if ev.type ~= "upload_failed" and (ev.fatal or ev.type == "bind_failed") then fatal = true end
        elseif ev.type == "upload_done" then
          check(type(ev.file_name) == "string", "upload_without_name",
            "upload_done without a file name (an early UploadFileFinishRes?)")
        elseif ev.type == "report" or ev.type == "spam" or ev.type == "change_phone" then
          pending_acks[#pending_acks + 1] = ev
        elseif ev.type == "dead" or ev.type == "unbound" then
          fatal = true
        end
      end
      if fatal then -- what the session does: drop, then connect again
        handle(p:disconnected(now), "disconnected")
        connected = false
      end
    end
    local function ensure_connected()
      if connected then return end
      server = codec.decoder()
      written(p:connected(now), "connected")
      connected = true
    end

    written(p:connected(now), "connected")
    for _, step in ipairs(steps) do
      local cmd, arg = step[1], step[2]
      if cmd == "receive" then
        ensure_connected()
        local events, out = p:receive(arg, now)
        written(out, "receive")
        handle(events, "receive")
      elseif cmd == "submit" then
        -- bounded: the client's own work is not what is measured
        for _ = 1, math.min(arg or 1, 50, 500 - n_submitted) do
          n_submitted = n_submitted + 1
          local rec, err = p:submit { to = "010-1111-2222", from = "02-1234-5678",
            text = "fuzz " .. n_submitted, id = "M" .. n_submitted }
          if not rec then check_error(err, "submit") end
        end
      elseif cmd == "upload" and n_uploads < 20 then
        n_uploads = n_uploads + 1
        local h, err = p:upload(rep("\255", math.min(arg or 3000, 1024 * 1024)), ".jpg")
        if not h then check_error(err, "upload") end
      elseif cmd == "poll" then
        now = now + arg
        ensure_connected()
        local events, out = p:poll(now)
        written(out, "poll")
        handle(events, "poll")
      elseif cmd == "ack" then
        for _, ev in ipairs(pending_acks) do written(p:ack(ev, now), "ack") end
        pending_acks = {}
      elseif cmd == "disconnect" then
        if connected then handle(p:disconnected(now), "disconnected") end
        connected = false
        ensure_connected()
      elseif cmd == "close" then
        written(p:close(now), "close")
      end
    end
    if connected then handle(p:disconnected(now), "disconnected") end
    local t = {}
    for k in pairs(sig) do t[#t + 1] = k end
    table.sort(t)
    return concat(t, ",")
  end }
end

-- ---- mutations -------------------------------------------------------------------

local BLANKS = { " ", "\t", "\r\n", "\n", " \t" }
local SPECIAL = { '"', "'", "<", ">", "&", ",", ";", ":", "=", "\r\n", "\n", "\0", "%", "\\", "]]>",
  "<!--", "&amp;", "&#0;", "\255", "\192\128", "\237\160\128", "{", "}", "[", "]", "\"\"", "+", "%zz" }
local CONFUSED = { "0", "-1", "1e309", "-0", "0.1", "9007199254740993", '""', '"x"', "[]", "{}", "null",
  "true", "false", "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]", '{"a":{"b":{"c":[]}}}', '"' .. rep("9", 3000) .. '"',
  '"\\u0000"', '"\\ud800"', "[1,2,3]" }

local function rnd(n) return random(1, n) end
local function pick(t) return t[rnd(#t)] end

local mutators = {
  function(s) -- flip bytes
    if #s == 0 then return char(rnd(256) - 1) end
    local t = { byte(s, 1, #s > 4000 and 4000 or #s) }
    local tail = #s > 4000 and sub(s, 4001) or ""
    for _ = 1, rnd(8) do
      local i = rnd(#t)
      t[i] = random(0, 1) == 0 and (rnd(256) - 1) or (t[i] + 2 ^ (rnd(8) - 1)) % 256
    end
    local parts = {}
    for i = 1, #t, 4000 do parts[#parts + 1] = char(unpack(t, i, math.min(i + 3999, #t))) end
    return concat(parts) .. tail
  end,
  function(s) -- a long run of blanks
    local at = rnd(#s + 1)
    local n = pick { 64, 512, 4096, 8192, 16384 }
    return sub(s, 1, at - 1) .. rep(pick(BLANKS), floor(n / 2) + rnd(n)):sub(1, n * 2) .. sub(s, at)
  end,
  function(s) return sub(s, 1, rnd(#s + 1) - 1) end, -- truncate
  function(s, pool) -- splice another seed in
    local o = pick(pool)
    local a, b = rnd(#o + 1), rnd(#o + 1)
    if a > b then a, b = b, a end
    local at = rnd(#s + 1)
    return sub(s, 1, at - 1) .. sub(o, a, b) .. sub(s, at)
  end,
  function(s) -- repeat a token
    if #s == 0 then return s end
    local a = rnd(#s)
    local b = math.min(#s, a + rnd(32) - 1)
    return sub(s, 1, b) .. rep(sub(s, a, b), pick { 2, 10, 100, 1000, 5000 }) .. sub(s, b + 1)
  end,
  function(s) -- repeat a line
    local lines = {}
    for l in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    local i = rnd(#lines)
    local n = pick { 2, 3, 50, 2000, 20000 }
    if #lines[i] * n > MAX_INPUT then n = floor(MAX_INPUT / (#lines[i] + 1)) end
    lines[i] = rep(lines[i] .. "\n", n - 1) .. lines[i]
    return concat(lines, "\n")
  end,
  function(s) -- delete, duplicate or swap lines
    local lines = {}
    for l in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    if #lines < 2 then return s end
    local i, j = rnd(#lines), rnd(#lines)
    local how = rnd(3)
    if how == 1 then remove(lines, i)
    elseif how == 2 then insert(lines, j, lines[i])
    else lines[i], lines[j] = lines[j], lines[i] end
    return concat(lines, "\n")
  end,
  function(s) -- a long token (long codes and messages reach the errors)
    local at = rnd(#s + 1)
    local t = {}
    for i = 1, pick { 300, 1100, 3000, 5000 } do t[i] = char(random(33, 126)) end
    return sub(s, 1, at - 1) .. gsub(concat(t), '["\\%%&<>\n]', "x") .. sub(s, at)
  end,
  function(s) -- a special character
    local at = rnd(#s + 1)
    return sub(s, 1, at - 1) .. pick(SPECIAL) .. sub(s, at)
  end,
  function(s) -- delete a range
    local a = rnd(#s + 1)
    return sub(s, 1, a - 1) .. sub(s, a + rnd(64))
  end,
  function(s) -- a JSON value of another type
    local spots = {}
    for pos in s:gmatch('():%s*[%-%d"tfn%[{]') do spots[#spots + 1] = pos end
    if #spots == 0 then return s end
    local at = pick(spots) + 1
    local v_end = find(s, "[,}%]]", at + 1) or #s + 1
    if byte(s, at) == 34 or match(s, '^%s*"', at) then
      local q = find(s, '"', (find(s, '"', at, true) or at) + 1, true)
      v_end = q and q + 1 or v_end
    end
    return sub(s, 1, at - 1) .. pick(CONFUSED) .. sub(s, v_end)
  end,
  function(s) -- a number at its edges
    return (gsub(s, "%d+", function(d) if random(0, 3) == 0 then return pick(CONFUSED) end end, 1))
  end,
}

-- Targets whose input is a list of lines (scripts, CSV) get the line
-- mutators (6 and 7 above) as often as all the others together.
local function mutate(s, pool, max, lines)
  for _ = 1, rnd(3) do
    local m = (lines and random(0, 1) == 0) and mutators[random(6, 7)] or mutators[rnd(#mutators)]
    s = m(s, pool)
    if #s > max then s = sub(s, 1, max) end
  end
  return s
end

-- ---- the driver ------------------------------------------------------------------

local function usage(code)
  io.stderr:write("usage: lua fuzz/lua_mutate.lua TARGET [--seconds N] [--seed N] [--corpus DIR]\n"
    .. "       [--replay DIR] [--save DIR] [--current FILE] [--no-tostring] [FILE ...] | --list\n")
  os.exit(code)
end

local opts, files = { seconds = 5 }, {}
local target_name = arg[1]
if target_name == "--list" then
  local names = {}
  for name in pairs(T) do names[#names + 1] = name end
  table.sort(names)
  print(concat(names, "\n"))
  os.exit(0)
end
local target = T[target_name or ""]
if not target then usage(2) end
do
  local i = 2
  while arg[i] do
    local a = arg[i]
    if a == "--seconds" or a == "--seed" then opts[sub(a, 3)] = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--corpus" or a == "--replay" or a == "--save" or a == "--current" then
      opts[sub(a, 3)] = arg[i + 1]; i = i + 2
    elseif a == "--no-tostring" then NO_TOSTRING = true; i = i + 1
    elseif sub(a, 1, 2) == "--" then usage(2)
    else files[#files + 1] = a; i = i + 1 end
  end
end
math.randomseed(opts.seed or os.time())

-- Generous on purpose: this runs under ASan on a shared 2-core machine, and
-- it looks for superlinear parsers (seconds to minutes on these inputs),
-- not for small slowdowns (bench/ measures speed).
local floor_s = target.cpu_floor or 0.5
local per_64k = target.cpu_per_64k or 0.25
local seen_breaks, n_breaks, execs = {}, 0, 0

local function report(input, kind, msg)
  n_breaks = n_breaks + 1
  if seen_breaks[kind] then return end
  seen_breaks[kind] = true
  io.stderr:write(format("lua_mutate %s: BREAK %s: %s (input of %d bytes)\n", target_name, kind,
    sub(msg, 1, 400), #input))
  if opts.save then
    os.execute("mkdir -p '" .. opts.save .. "'")
    local name = format("%s/%s-%08x", opts.save, gsub(kind, "[^%w_]", "_"), hash(input))
    write(name, input)
    write(name .. ".txt", format("%s: %s\n", kind, msg))
    io.stderr:write("  saved as " .. name .. "\n")
  end
end

local function traceback(e)
  if getmetatable(e) == BREAK then return e end
  return { raise = tostring(e), trace = debug.traceback("", 2) }
end

-- Runs one input; returns its signature, or nil when it broke something.
local function run(input)
  execs = execs + 1
  if opts.current then write(opts.current, input) end
  local prepare = target.prepare or function(s) return s end
  local ok, arg_or_err = xpcall(prepare, traceback, input)
  local t0 = clock()
  local sig
  if ok then ok, sig = xpcall(target.run, traceback, arg_or_err) else sig = arg_or_err end
  local spent = clock() - t0
  if not ok then
    if getmetatable(sig) == BREAK then report(input, sig.kind, sig.msg)
    else
      local where = match(sig.raise, "^([^:]+:%d+):") or "?"
      report(input, "raise@" .. gsub(where, "^.*/", ""), sig.raise .. "\n" .. sig.trace)
    end
    return nil
  end
  local limit = target.bound and ok and target.bound(arg_or_err, input, floor_s, per_64k)
    or floor_s + per_64k * #input / 65536
  if spent > limit then
    -- Timed twice more before it counts, each time after a full collection
    -- so that the garbage of earlier inputs (the pool) is not charged to it.
    spent = huge
    for _ = 1, 2 do
      local prepared = prepare(input)
      collectgarbage("collect")
      t0 = clock()
      pcall(target.run, prepared)
      local again = clock() - t0
      if again < spent then spent = again end
    end
    if spent > limit then
      report(input, "slow", format("%.3f s of CPU for %d bytes (bound %.3f s: %.0f ms per 64 KiB + %.0f ms%s)",
        spent, #input, limit, per_64k * 1000, floor_s * 1000, target.bound and ", and per step" or ""))
      return nil
    end
  end
  return tostring(sig)
end

-- Explicit files: just those.
if #files > 0 then
  for _, f in ipairs(files) do
    local sig = run(assert(read(f)))
    io.stderr:write(format("%s: %s\n", f, sig and ("ok, " .. sig) or "BROKE"))
  end
  if target.cleanup then target.cleanup() end
  os.exit(n_breaks == 0 and 0 or 1)
end

for _, f in ipairs(list_dir(opts.replay)) do run(assert(read(f))) end
local replayed = n_breaks

local pool, sigs = {}, {}
for _, f in ipairs(list_dir(opts.corpus)) do
  local s = assert(read(f))
  pool[#pool + 1] = s
  local sig = run(s)
  if sig then sigs[sig] = true end
end
if #pool == 0 then pool[1] = "" end
local n_seeds = #pool
local deadline = clock() + (opts.seconds or 5)
local wall_deadline = os.time() + (opts.seconds or 5) * 3 + 5 -- a loaded machine
while clock() < deadline and os.time() < wall_deadline do
  -- half the time from a seed itself, so large descendants do not take over
  local from = random(0, 1) == 0 and pool[rnd(n_seeds)] or pick(pool)
  local input = mutate(from, pool, target.max_input or MAX_INPUT, target.lines)
  local sig = run(input)
  if sig and not sigs[sig] then
    sigs[sig] = true
    if #pool < 400 then pool[#pool + 1] = input else pool[random(n_seeds + 1, #pool)] = input end
  end
end
if target.cleanup then target.cleanup() end
local nsig = 0
for _ in pairs(sigs) do nsig = nsig + 1 end
io.stderr:write(format("lua_mutate %s: %d inputs (%d regressions replayed, %d broke), %d outcomes seen, %d breaks\n",
  target_name, execs, #list_dir(opts.replay), replayed, nsig, n_breaks))
os.exit(n_breaks == 0 and 0 or 1)
