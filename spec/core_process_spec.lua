-- core.getpid, core.pid_alive and core.hostname: what the outbox tells a
-- dead worker by (ksms.outbox.worker).
local core = require "ksms.core"
local H = require "helper"

describe("ksms.core process bindings", function()
  it("gives this process's id and finds it alive", function()
    local pid = core.getpid()
    assert.is_true(pid > 1)
    assert.is_true(core.pid_alive(pid))
    assert.is_true(core.pid_alive(1)) -- init: another user's process counts (EPERM or not)
    local out = H.run("echo $PPID")
    assert.equal(pid, tonumber(out:match("%d+")))
  end)

  it("finds a finished process dead, and an unreaped (zombie) one too", function()
    local out = H.run("sh -c 'echo $$'")
    assert.is_false(core.pid_alive(tonumber(out:match("%d+"))))
    -- A child of a sleeping shell that exits at once stays a zombie until the shell waits.
    local p = io.popen("sh -c 'true & echo $!; exec sleep 2'")
    local zpid = tonumber(p:read("*l"))
    core.sleep(0.3)
    local stat = io.open("/proc/" .. zpid .. "/stat")
    if stat then
      local s = stat:read("*a"); stat:close()
      assert.matches("%) Z ", s) -- it is a zombie indeed
    end
    assert.is_false(core.pid_alive(zpid))
    p:close()
  end)

  it("raises for what is not a process id", function()
    for _, v in ipairs({ 0, -1, 1.5, 2 ^ 40 }) do
      assert.has_error(function() core.pid_alive(v) end)
    end
    assert.has_error(function() core.pid_alive({}) end)
  end)

  it("names the host", function()
    local name = core.hostname()
    assert.is_string(name)
    assert.is_true(#name > 0)
    local out, ok = H.run("hostname")
    if ok then assert.equal(out:gsub("%s+$", ""), name) end
  end)
end)
