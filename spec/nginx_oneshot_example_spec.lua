-- nginx_oneshot_example_spec.lua - examples/nginx/oneshot.conf runs as it
-- is: a real nginx with it (only its listen port changed, in a copy under
-- build/nginx/) binds to the fake OneShot server with the credentials the
-- environment gives, sends through /sms, and answers a request without
-- its fields with a 400, not a 500.
local fake_control = require "fake_control"
local H = require "spec_helper"
local socket = require "socket"
local cjson = require "cjson"

local NGINX = "/usr/sbin/nginx"

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function post(port, body)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(15)
  assert(c:send(("POST /sms HTTP/1.0\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"):format(#body, body)))
  local data, _, partial = c:receive("*a")
  c:close()
  data = data or partial
  return tonumber(data:match("^HTTP/1%.%d (%d+)")), data:match("\r\n\r\n(.*)$")
end

describe("examples/nginx/oneshot.conf", function()
  it("binds with the environment's credentials, sends, and turns a missing field into a 400", function()
    local fake = fake_control.start("oneshot")
    local o = fake:session_options {}
    local port = H.free_port()
    os.execute("mkdir -p build/nginx")
    local conf = H.read_file("examples/nginx/oneshot.conf"):gsub("listen 8080;", "listen 127.0.0.1:" .. port .. ";")
    conf = conf:gsub("pid build/nginx/oneshot%.pid;", "pid build/nginx/oneshot-spec.pid;")
    -- its own log, read back into a failure's message
    conf = conf:gsub("error_log build/nginx/error%.log notice;", "error_log build/nginx/oneshot-spec.log notice;")
    os.remove("build/nginx/oneshot-spec.log")
    -- The checkout's absolute path for $prefix, and no LUA_PATH/LUA_CPATH
    -- from the spec's interpreter: nginx's LuaJIT must load build/luajit's
    -- core, never the one of the interpreter running the specs.
    local cwd = H.run("pwd"):gsub("%s+$", "")
    conf = conf:gsub("%$prefix", (cwd:gsub("%%", "%%%%")))
    H.write_file("build/nginx/oneshot-spec.conf", conf)
    local env = ("ONESHOT_HOST=%s ONESHOT_PORT=%d ONESHOT_ID=%s ONESHOT_PASSWORD=%s ONESHOT_KEY=%s ONESHOT_IV=%s"):format(
      shell_quote(o.host), o.port, shell_quote(o.id), shell_quote(o.password), shell_quote(o.key), shell_quote(o.iv))
    local out, ok = H.run("env -u LUA_PATH -u LUA_CPATH " .. env .. " " .. NGINX .. " -p \"$PWD\" -e build/nginx/oneshot-spec.log -c build/nginx/oneshot-spec.conf 2>&1")
    assert.is_true(ok, out)
    local status, body
    local pass, err = pcall(function()
      -- the binder (a timer in one worker) binds first
      H.wait_until("the binder's bind", 10, function() return fake:stats().binds >= 1 end, 0.05)
      status, body = post(port, cjson.encode { to = "010-1234-5678", from = "1566-6639", text = "hello" })
      assert.equal(200, status, body)
      assert.is_true(cjson.decode(body).ok, body)
      local msgs = fake:requests("MsgSendReq")
      assert.equal(1, #msgs)
      assert.equal("01012345678", msgs[1].body.PhoneNo)
      status = post(port, cjson.encode { to = "010-1234-5678" })
      assert.equal(400, status)
      status = post(port, "not json")
      assert.equal(400, status)
    end)
    os.execute("kill $(cat build/nginx/oneshot-spec.pid) 2>/dev/null; sleep 0.3")
    fake:stop()
    if not pass then
      local f = io.open("build/nginx/oneshot-spec.log")
      error(tostring(err) .. "\nnginx's log:\n" .. (f and f:read("*a") or "(none)"), 0)
    end
  end)
end)
