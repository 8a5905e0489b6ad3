-- ksms.core.tcp_connect: the blocking TCP client with bounded waits, against
-- a LuaSocket server in a subprocess. Each connection's first line picks
-- what the server does with it.
local core = require "ksms.core"
local socket = require "socket"
local H = require "spec_helper"

local now = socket.gettime

local SERVER = [=[
local socket = require "socket"
local port_file = arg[1]
local l = assert(socket.bind("127.0.0.1", 0))
local _, port = l:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w")); f:write(port); f:close()
os.rename(port_file .. ".tmp", port_file)
l:settimeout(30)
while true do
  local c = l:accept()
  if not c then break end
  c:settimeout(10)
  local line = c:receive("*l")
  if line == "QUIT" then c:close() break
  elseif line == "ECHO" then
    while true do
      local data, err, part = c:receive(1)
      if not data then break end
      c:send(data)
    end
  elseif line == "SILENT" then
    c:receive("*a")                          -- until the client closes
  elseif line == "CLOSE" then
    -- closes at once
  elseif line == "PARTIAL" then
    c:send("abc"); socket.sleep(0.3); c:send("defgh"); socket.sleep(0.2)
  elseif line and line:match("^COUNT ") then
    local n = tonumber(line:match("%d+"))
    socket.sleep(0.5)                        -- let the client's buffers fill
    local got = assert(c:receive(n))
    c:send(("OK %d %d\n"):format(#got, #got > 0 and got:byte(#got) or -1))
    c:receive("*a")
  elseif line and line:match("^BYTES ") then
    -- sends the bytes given in hex, then closes
    c:send((line:match("^BYTES (%x*)"):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)))
  elseif line and line:match("^STALL") then
    socket.sleep(4)                          -- reads nothing for a while
  end
  c:close()
end
l:close()
]=]

describe("ksms.core tcp", function()
  local port, script, port_file, proc

  setup(function()
    script = H.tmpname()
    port_file = H.tmpname()
    os.remove(port_file)
    H.write_file(script, SERVER)
    proc = io.popen(("lua5.4 %s %s >/dev/null 2>&1 & echo $!"):format(script, port_file))
    local pid = proc:read("*l")
    proc:close()
    proc = pid
    local deadline = now() + 10
    while now() < deadline do
      local f = io.open(port_file)
      if f then port = tonumber(f:read("*a")); f:close(); break end
      socket.sleep(0.02)
    end
    assert(port, "test server did not start")
  end)

  teardown(function()
    local c = core.tcp_connect("127.0.0.1", port, { connect_timeout = 2 })
    if c then c:send("QUIT\n"); c:close() end
    os.execute("kill " .. proc .. " 2>/dev/null")
    os.remove(script)
    os.remove(port_file)
  end)

  local function conn(mode, opts)
    local c = assert(core.tcp_connect("127.0.0.1", port, opts or { connect_timeout = 2 }))
    assert(c:send(mode .. "\n"))
    return c
  end

  local free_port = require("spec_helper").free_port

  it("connects, sends and receives (echo)", function()
    local c = conn("ECHO")
    assert.is_true(c:send("hello"))
    local got = ""
    while #got < 5 do got = got .. assert(c:receive(100, 2)) end
    assert.equal("hello", got)
    assert.is_true(c:fd() >= 0)
    assert.matches("tcp_conn", tostring(c))
    c:close()
    assert.equal(-1, c:fd())
    assert.is_true(c:close()) -- idempotent
  end)

  it("refuses a closed port as network/connect, retryable", function()
    local c, err = core.tcp_connect("127.0.0.1", free_port(), { connect_timeout = 2 })
    assert.is_nil(c)
    assert.equal("network", err.category)
    assert.equal("connect", err.code)
    assert.is_true(err.retryable)
    assert.matches("connect", tostring(err))
  end)

  it("bounds a connect that never completes (full backlog)", function()
    local l = socket.tcp()
    assert(l:bind("127.0.0.1", 0))
    assert(l:listen(0))
    local _, p = l:getsockname()
    local fill = {}
    for i = 1, 4 do
      fill[i] = socket.tcp()
      fill[i]:settimeout(0)
      fill[i]:connect("127.0.0.1", p)
    end
    socket.sleep(0.1)
    local t0 = now()
    local c, err = core.tcp_connect("127.0.0.1", p, { connect_timeout = 0.3 })
    local dt = now() - t0
    for _, s in ipairs(fill) do s:close() end
    l:close()
    if c then -- a kernel that completes the handshake anyway: nothing to test
      c:close()
      return
    end
    assert.equal("timeout", err.category)
    assert.equal("timeout", err.code)
    assert.is_true(dt < 1.5, dt)
  end)

  it("reports a name that does not resolve as dns", function()
    local c, err = core.tcp_connect("ksms-no-such-host.invalid", 80, { connect_timeout = 2 })
    assert.is_nil(c)
    assert.equal("network", err.category)
    assert.equal("dns", err.code)
  end)

  it("bounds a read that gets nothing (timeout argument and read_timeout)", function()
    local c = conn("SILENT", { connect_timeout = 2, read_timeout = 0.2 })
    local t0 = now()
    local data, err = c:receive(10, 0.3)
    local dt = now() - t0
    assert.is_nil(data)
    assert.equal("timeout", err.category)
    assert.equal("timeout", err.code)
    assert.is_true(dt >= 0.25 and dt < 2, dt)
    t0 = now()
    data, err = c:receive()
    dt = now() - t0
    assert.is_nil(data)
    assert.equal("timeout", err.code)
    assert.is_true(dt >= 0.15 and dt < 2, dt)
    -- timeout 0 polls without waiting
    t0 = now()
    assert.is_nil((c:receive(10, 0)))
    assert.is_true(now() - t0 < 0.5)
    c:close()
  end)

  it("returns partial reads as they arrive, never more than max", function()
    local c = conn("PARTIAL")
    assert.equal("abc", c:receive(100, 2))
    local rest = ""
    while #rest < 5 do rest = rest .. assert(c:receive(2, 2)) end
    assert.equal("defgh", rest)
    c:close()
  end)

  it("reports the peer's close as network/closed", function()
    local c = conn("CLOSE")
    local data, err = c:receive(10, 8)
    assert.is_nil(data)
    assert.equal("network", err.category)
    assert.equal("closed", err.code)
    c:close()
  end)

  it("writes large buffers whole (the peer reads late)", function()
    local n = 8 * 1024 * 1024
    local big = ("0123456789abcdef"):rep(n / 16)
    local c = conn("COUNT " .. n)
    assert.is_true(c:send(big))
    local line = ""
    while not line:find("\n") do line = line .. assert(c:receive(100, 10)) end
    assert.equal(("OK %d %d\n"):format(n, ("f"):byte()), line)
    c:close()
  end)

  it("bounds a write the peer never reads, and tells how much went out", function()
    local big = ("x"):rep(32 * 1024 * 1024)
    local c = conn("STALL", { connect_timeout = 2, write_timeout = 0.3 })
    local t0 = now()
    local ok, err = c:send(big)
    local dt = now() - t0
    assert.is_nil(ok)
    assert.equal("timeout", err.category)
    assert.is_true(err.written > 0 and err.written < #big, err.written)
    assert.is_true(dt < 2, dt)
    c:close()
  end)

  it("fails cleanly on a closed connection, and raises on misuse", function()
    local c = conn("CLOSE")
    c:close()
    local ok, err = c:send("x")
    assert.is_nil(ok)
    assert.equal("closed", err.code)
    assert.equal(0, err.written)
    local data, rerr = c:receive()
    assert.is_nil(data)
    assert.equal("closed", rerr.code)
    assert.has_error(function() core.tcp_connect("127.0.0.1", 0) end)
    assert.has_error(function() core.tcp_connect("127.0.0.1", 80, { read_timeout = -1 }) end)
    assert.has_error(function() core.tcp_connect("127.0.0.1", 80, { connect_timeout = "1" }) end)
    assert.has_error(function() c:receive(0) end)
  end)

  it("reports a send to a peer that went away as network/send", function()
    local c = conn("CLOSE")
    local d, e = c:receive(10, 8) -- the peer has closed
    assert.is_nil(d)
    assert.equal("closed", e.code)
    local ok, err
    for _ = 1, 50 do
      ok, err = c:send(("y"):rep(65536))
      if not ok then break end
      socket.sleep(0.01)
    end
    assert.is_nil(ok)
    assert.equal("network", err.category)
    assert.equal("send", err.code)
    assert.is_number(err.written)
    c:close()
  end)

  it("receives exactly what arrived after a frame failed to inflate (the shared scratch)", function()
    -- A hostile server's frame: 5000 bytes of zlib that inflate, then a bad
    -- checksum. What inflated must not come out of a receive elsewhere.
    local z = core.deflate(("A"):rep(5000))
    z = z:sub(1, -2) .. string.char((z:byte(-1) + 1) % 256)
    local frame = "Content-Length:" .. #z .. "\r\n" .. z
    local hostile = conn("BYTES " .. core.hex(frame))
    local got = ""
    while true do
      local d, e = hostile:receive(nil, 5)
      if not d then
        assert.equal("closed", e.code)
        break
      end
      got = got .. d
    end
    hostile:close()
    assert.equal(frame, got)
    local dec = core.frame_decoder()
    local list, err = dec:feed(got)
    assert.is_nil(list)
    assert.equal("protocol", err.category)

    local c = conn("ECHO")
    local function round_trip(what)
      local msg = "ping " .. what
      assert.is_true(c:send(msg))
      local back = ""
      while #back < #msg do back = back .. assert(c:receive(100, 2)) end
      assert.equal(msg, back, "after " .. what)
    end
    round_trip("the bad frame")
    -- Every other failure exit of a binding that uses the scratch.
    local schema = core.json_schema({ "a" })
    local key, iv = ("k"):rep(16), ("i"):rep(16)
    local failures = {
      frame_too_large = function()
        return core.frame_decoder({ max_payload = 100 }):feed(core.frame_encode(("B"):rep(4000)))
      end,
      inflate = function() return core.inflate(z) end,
      inflate_too_large = function() return core.inflate(core.deflate(("C"):rep(5000)), 100) end,
      b64decode = function() return core.b64decode(("QUJD"):rep(1000) .. "!!!!") end,
      unhex = function() return core.unhex(("41"):rep(1000) .. "zz") end,
      aes = function() return core.aes128cbc_decrypt(("x"):rep(4096), key, iv) end,
      json_object = function() return core.json_object({ a = ("D"):rep(3000) .. "\255" }, schema) end,
      oneshot_frame = function()
        return core.oneshot_frame("AliveReq", ("E"):rep(3000) .. "\192\128")
      end,
    }
    for name, fail in pairs(failures) do
      local res, e = fail()
      assert.is_nil(res, name)
      assert.is_table(e, name)
      round_trip(name)
    end
    c:close()
  end)

  if _VERSION == "Lua 5.4" then
    it("closes on __close", function()
      local f = assert(load([[
        local core, port = ...
        local fdv
        do
          local c <close> = assert(core.tcp_connect("127.0.0.1", port))
          c:send("CLOSE\n")
          fdv = c
        end
        return fdv:fd()
      ]]))
      assert.equal(-1, f(core, port))
    end)
  end
end)
