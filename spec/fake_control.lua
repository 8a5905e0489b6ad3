-- fake_control.lua - start, drive and stop a fake provider server (a real
-- process, spec/fakes/run.lua) from a spec. Talks to it over raw LuaSocket
-- HTTP, never through ksms, so the fakes stay independent of what they test.
--
--   local fake = require("fake_control").start("senders", { balance = 10 })
--   fake.port, fake.base_url                -- "http://127.0.0.1:<port>"
--   fake:script{ path = "/APIV2/sms_send", result = "185", times = 1 }
--   fake:requests(), fake:stats(), fake:reset(), fake:state{ balance = 0 }
--   fake:mo("http://127.0.0.1:8080/mo", { msg = "hi", phone = "01012345678" })
--   fake:stop()
--
-- HTTPS (ppurio, cafe24, or any fake):
--   local cert = fake_control.make_cert()     -- { cert =, key =, dir = }
--   local c24 = fake_control.start("cafe24", { tls = cert })
--   c24.base_url                              -- "https://127.0.0.1:<port>"
--   c24.history, c24.history_url              -- the sms_list.php site (a view of
--                                             -- the same fake on its second port)
--   fake_control.remove_cert(cert)
--
-- OneShot (raw TCP on a second port, control API over HTTP on .port):
--   local os1 = fake_control.start("oneshot", { state = { speed = 5 } })
--   os1.oneshot_port                          -- the OneShot TCP port
--   local sock = os1:oneshot_connect()        -- a connected LuaSocket
--   os1:push("SpamReq", { PhoneNo = "01000000000" }), os1:reports(),
--   os1:pushes(), os1:connections([all]), os1:drop([conn_id])
local socket = require "socket"

-- The directory of this file, so spec/fakes/ is found from any cwd.
local here = (debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or ".") .. "/"
if not package.path:find(here .. "?.lua", 1, true) then
  package.path = here .. "?.lua;" .. package.path
end
local json = require "fakes.json"
local forms = require "fakes.forms"
local exec_ok = require("helper").exec_ok

local _M = {}

local running = {}               -- fakes started and not yet stopped

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A connected socket to 127.0.0.1:port; with tls, a LuaSec socket after
-- its handshake, the certificate not verified (the control client only:
-- specs that test the certificate verify it themselves).
function _M.connect(port, timeout, tls)
  local sock = socket.tcp()
  sock:settimeout(timeout or 10)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  if tls then
    local ssl = require "ssl"
    local conn, werr = ssl.wrap(sock, { mode = "client", protocol = "any", verify = "none",
                                        options = { "all" } })
    if not conn then
      sock:close()
      return nil, "tls: " .. tostring(werr)
    end
    conn:settimeout(timeout or 10)
    local hok, herr = conn:dohandshake()
    if not hok then
      conn:close()
      return nil, "tls handshake: " .. tostring(herr)
    end
    sock = conn
  end
  return sock
end

-- One HTTP/1.1 exchange on a fresh connection (Connection: close), over
-- TLS when tls is true. Returns { status, headers, body } or nil, err.
function _M.http(port, method, path, body, headers, timeout, tls)
  local sock, err = _M.connect(port, timeout, tls)
  if not sock then return nil, err end
  body = body or ""
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port,
                  "Connection: close", "Content-Length: " .. #body }
  for name, value in pairs(headers or {}) do lines[#lines + 1] = name .. ": " .. value end
  sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  local data, rerr = sock:receive("*a")
  sock:close()
  if not data then return nil, "receive: " .. tostring(rerr) end
  local head, rest = data:match("^(.-)\r\n\r\n(.*)$")
  local status = head and tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "not an HTTP answer: " .. data:sub(1, 80) end
  local response_headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then response_headers[name:lower()] = value end
  end
  local length = tonumber(response_headers["content-length"])
  return { status = status, headers = response_headers,
           body = length and rest:sub(1, length) or rest }
end

local Fake = {}
Fake.__index = Fake

function Fake:request(method, path, body, headers, timeout)
  return _M.http(self.port, method, path, body, headers, timeout, self.tls)
end

-- A provider request with form fields: a list of {name, value} (sent in
-- that order) or a map. Returns status, body, headers.
function Fake:post_form(path, fields)
  local list = fields
  if not fields[1] then
    list = {}
    for k, v in pairs(fields) do list[#list + 1] = { k, v } end
    table.sort(list, function(a, b) return a[1] < b[1] end)
  end
  local res = assert(self:request("POST", path, forms.encode(list),
                       { ["Content-Type"] = "application/x-www-form-urlencoded" }))
  return res.status, res.body, res.headers
end

-- A control call: the decoded JSON answer; raises on failure.
function Fake:control(method, path, value)
  local body = value ~= nil and json.encode(value) or ""
  local res, err = self:request(method, "/_fake/" .. path, body,
                                { ["Content-Type"] = "application/json" })
  if not res then error("fake " .. self.provider .. ": " .. path .. ": " .. err, 2) end
  local decoded = json.decode(res.body)
  if res.status ~= 200 then
    error("fake " .. self.provider .. ": " .. path .. ": " .. res.status .. " " .. res.body, 2)
  end
  return decoded
end

function Fake:script(s) return self:control("POST", "script", s) end
function Fake:scripts() return self:control("GET", "scripts") end
function Fake:reset() return self:control("POST", "reset") end
function Fake:stats() return self:control("GET", "stats") end

function Fake:requests(path)
  return self:control("GET", "requests" .. (path and ("?path=" .. forms.escape(path)) or ""))
end

-- With a table: sets those state keys. Returns the whole state.
function Fake:state(values)
  if values then return self:control("POST", "state", values) end
  return self:control("GET", "state")
end

-- The fake (MessageMe) POSTs an MO webhook to target and tells what the
-- target answered: { status, headers, body, sent = { body, form } }, or
-- nil, err when the target could not be reached.
function Fake:mo(target, fields, timeout_ms)
  local res = assert(self:request("POST", "/_fake/mo",
    json.encode({ target = target, fields = fields or {}, timeout_ms = timeout_ms })))
  local result = json.decode(res.body)
  if res.status ~= 200 then return nil, result and result.error or res.body end
  return result
end

-- The same without waiting: returns an id for mo_result(id), which gives
-- { done = false } until the target has answered. Lets a spec serve the
-- webhook itself in between.
function Fake:mo_async(target, fields, timeout_ms)
  return self:control("POST", "mo", { target = target, fields = fields or {},
                                      timeout_ms = timeout_ms, async = true }).id
end

-- OneShot: a server push (SpamReq or ChangePhoneReq) on the bound
-- connection (or conn). Returns the push record, or nil, err (409).
function Fake:push(method, body, conn)
  local res = assert(self:request("POST", "/_fake/push",
    json.encode({ method = method, body = body, conn = conn })))
  local decoded = json.decode(res.body)
  if res.status ~= 200 then return nil, decoded and decoded.error or res.body end
  return decoded
end

function Fake:reports() return self:control("GET", "reports") end
function Fake:pushes() return self:control("GET", "pushes") end
-- The open OneShot connections (all: every one since the reset, closed too).
function Fake:connections(all) return self:control("GET", "connections" .. (all and "?all=1" or "")) end
function Fake:drop(conn) return self:control("POST", "drop", { conn = conn }) end

-- Options for a OneShot session bound to this fake with its default
-- account (spec/fakes/oneshot.lua's default_state), extra merged over them.
function Fake:session_options(extra)
  local o = { host = "127.0.0.1", port = assert(self.oneshot_port, "not a oneshot fake"),
    id = "test001", password = "test001#$$%", key = "ksms-oneshot-key", iv = "ksms-oneshot-iv!" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A socket connected to the OneShot port.
function Fake:oneshot_connect(timeout)
  return _M.connect(assert(self.oneshot_port, "not a oneshot fake"), timeout)
end

function Fake:mo_result(id)
  return self:control("GET", "mo/" .. id)
end

-- Whether the process still runs (an exited, unreaped one does not count).
function Fake:alive()
  local f = io.open("/proc/" .. self.pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function wait_exit(fake, seconds)
  local deadline = socket.gettime() + seconds
  while fake:alive() do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.01)
  end
  return true
end

-- Asks the fake to shut down, waits for it, kill -9 if it lingers, reaps it.
function Fake:stop()
  if self.view then return self.view:stop() end
  if self.stopped then return end
  self.stopped = true
  running[self] = nil
  _M.http(self.port, "POST", "/_fake/shutdown", "", nil, 2, self.tls)
  if not wait_exit(self, 3) then
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    wait_exit(self, 3)
  end
  self.pipe:close()              -- waits for the process: no zombie left
  os.remove(self.log_path)
end

function Fake:log()
  if self.view then return self.view:log() end
  local f = io.open(self.log_path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- opts: port (0), idle_exit (seconds, 120), api_key, balance, senders (list),
-- state (table of state keys), interp (default $KSMS_TEST_LUA or lua5.4),
-- tls ({ cert =, key = }, as make_cert returns: the port speaks HTTPS),
-- for cafe24 history_port (0) and history_tls (false), and for oneshot
-- oneshot_port (0).
function _M.start(provider, opts)
  opts = opts or {}
  local interp = opts.interp or os.getenv("KSMS_TEST_LUA") or "lua5.4"
  local args = { interp, here .. "fakes/run.lua", provider,
                 "--port", opts.port or 0, "--idle-exit", opts.idle_exit or 120 }
  local function add(flag, value) args[#args + 1] = flag; args[#args + 1] = value end
  if opts.api_key then add("--api-key", opts.api_key) end
  if opts.balance then add("--balance", opts.balance) end
  if opts.senders then add("--senders", table.concat(opts.senders, ",")) end
  if opts.state then add("--state", json.encode(opts.state)) end
  if opts.tls then
    add("--tls-cert", opts.tls.cert)
    add("--tls-key", opts.tls.key)
  end
  if opts.history_port then add("--history-port", opts.history_port) end
  if opts.history_tls then add("--history-tls", "on") end
  if opts.oneshot_port then add("--oneshot-port", opts.oneshot_port) end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local log_path = os.tmpname()
  -- "exec" makes the shell's pid the fake's; the pipe's end is its stdout.
  local pipe = assert(io.popen("echo PID $$; exec " .. table.concat(quoted, " ")
                               .. " 2>" .. shell_quote(log_path), "r"))
  local pid = tonumber((pipe:read("*l") or ""):match("^PID (%d+)$"))
  local line = pipe:read("*l") or ""
  local port = tonumber(line:match("^LISTENING (%d+)"))
  local history_port = tonumber(line:match(" HISTORY (%d+)"))
  local oneshot_port = tonumber(line:match(" ONESHOT (%d+)"))
  local fake = setmetatable({ provider = provider, pid = pid, port = port, pipe = pipe,
                              log_path = log_path, tls = opts.tls ~= nil }, Fake)
  if not pid or not port then
    pipe:close()
    local log = fake:log()
    os.remove(log_path)
    error("fake " .. provider .. " did not start: " .. log, 2)
  end
  fake.base_url = (fake.tls and "https" or "http") .. "://127.0.0.1:" .. port
  fake.oneshot_port = oneshot_port
  if history_port then
    -- The same process on its second port: requests and control calls go
    -- there; stop() and log() act on the whole fake.
    local history = setmetatable({ provider = provider, pid = pid, port = history_port,
                                   tls = opts.history_tls == true, view = fake }, Fake)
    history.base_url = (history.tls and "https" or "http") .. "://127.0.0.1:" .. history_port
    fake.history, fake.history_port, fake.history_url = history, history_port, history.base_url
  end
  running[fake] = true
  return fake
end

-- A self-signed certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1,
-- RSA 2048, two days) in a fresh private directory, made with the openssl
-- command. Returns { cert = path, key = path, dir = path }; the certificate
-- is its own CA, so a client verifies the fake with cafile = cert.
function _M.make_cert()
  local dir = os.tmpname()
  os.remove(dir)
  if not exec_ok("mkdir -m 700 " .. shell_quote(dir)) then error("make_cert: cannot create " .. dir, 2) end
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. shell_quote(key)
    .. " -out " .. shell_quote(cert) .. " >/dev/null 2>&1"
  local ok = exec_ok(cmd)
  local f = io.open(cert, "r")
  if not (ok and f) then
    if f then f:close() end
    os.execute("rm -rf " .. shell_quote(dir))
    error("make_cert: openssl failed: " .. cmd, 2)
  end
  f:close()
  return { cert = cert, key = key, dir = dir }
end

function _M.remove_cert(c)
  if c and c.dir and c.dir:match("^/tmp/") then os.execute("rm -rf " .. shell_quote(c.dir)) end
end

-- Stops every fake still running (for a spec's teardown).
function _M.stop_all()
  for fake in pairs(running) do fake:stop() end
end

return _M
