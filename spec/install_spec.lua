-- make install and luarocks make put a working module where Lua finds it.
-- Runs under Lua 5.4 only: it builds, which the other interpreter's run
-- would repeat for nothing.
local H = require "spec_helper"

local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local describe_if = (lua == "lua5.4") and describe or pending

describe_if("installation", function()
  local probe = [[local k = require 'ksms'; local c = require 'ksms.oneshot.codec';
    assert(k.core.inflate(k.core.deflate('ok')) == 'ok'); assert(c.encode('AliveReq'));
    print(package.searchpath('ksms.core', package.cpath))]]

  it("make install honours PREFIX and DESTDIR", function()
    local dest = os.tmpname(); os.remove(dest)
    local _, ok = H.run("make -s install DESTDIR=" .. dest .. " PREFIX=/opt/k >/dev/null 2>&1")
    assert.is_true(ok)
    local out, ran = H.run(("cd /tmp && LUA_PATH='%s/opt/k/share/lua/5.4/?.lua;%s/opt/k/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='%s/opt/k/lib/lua/5.4/?.so;;' lua5.4 -e %q"):format(dest, dest, dest, probe))
    assert.is_true(ran, out)
    assert.matches(dest .. "/opt/k/lib/lua/5.4/ksms/core.so", out, 1, true)
    H.run("rm -rf " .. dest)
  end)

  it("the rockspec lists every source file", function()
    local spec = H.read_file("ksms-scm-1.rockspec")
    local files = H.run("find lua csrc -name '*.lua' -o -name '*.c' | sort")
    local n = 0
    for path in files:gmatch("[^\n]+") do
      assert.is_truthy(spec:find('"' .. path .. '"', 1, true), path .. " missing from the rockspec")
      n = n + 1
    end
    assert.is_true(n > 10)
  end)

  it("luarocks make --deps-mode=none builds and installs it", function()
    local tree = os.tmpname(); os.remove(tree)
    local out, ok = H.run("luarocks --lua-version=5.4 make --deps-mode=none --tree=" .. tree
      .. " ksms-scm-1.rockspec 2>&1")
    assert.is_true(ok, out)
    local res, ran = H.run(("cd /tmp && LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e %q"):format(tree, tree, tree, probe))
    assert.is_true(ran, res)
    assert.matches(tree .. "/lib/lua/5.4/ksms/core.so", res, 1, true)
    local syms = H.run("nm -D --defined-only " .. tree .. "/lib/lua/5.4/ksms/core.so | grep ' T ' | grep -v ' _'")
    assert.equal("luaopen_ksms_core", syms:match("T (%S+)"))
    assert.is_nil(syms:match("\n.*T "), "more than one exported function: " .. syms)
    H.run("rm -rf " .. tree .. " ksms-scm-1.rockspec.*")
  end)
end)
