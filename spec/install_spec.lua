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

  local ROCKSPECS = { "ksms-scm-1.rockspec", "ksms-0.2.0-1.rockspec" }

  -- A rockspec's fields, read as luarocks reads it (a Lua chunk setting globals).
  local function rockspec(path)
    local env = {}
    local chunk = assert((loadfile or load)(path, "t", env))
    if setfenv then setfenv(chunk, env) end
    chunk()
    return env
  end

  it("every rockspec lists every source file", function()
    local files = H.run("find lua csrc -name '*.lua' -o -name '*.c' | sort")
    for _, name in ipairs(ROCKSPECS) do
      local spec = H.read_file(name)
      local n = 0
      for path in files:gmatch("[^\n]+") do
        assert.is_truthy(spec:find('"' .. path .. '"', 1, true), path .. " missing from " .. name)
        n = n + 1
      end
      assert.is_true(n > 10)
    end
  end)

  it("the versioned rockspec builds what the scm one builds, from its release tag", function()
    local scm, rel = rockspec("ksms-scm-1.rockspec"), rockspec("ksms-0.2.0-1.rockspec")
    assert.equal("0.2.0-1", rel.version)
    assert.equal("v0.2.0", rel.source.tag)
    assert.same(scm.build, rel.build)
    assert.same(scm.dependencies, rel.dependencies)
    assert.same(scm.external_dependencies, rel.external_dependencies)
    assert.same(scm.description, rel.description)
    -- luarocks test runs busted through make specs, which installs nothing
    assert.same({ type = "command", command = "make specs" }, rel.test)
    assert.same(rel.test, scm.test)
    assert.is_nil(H.read_file("Makefile"):match("\nspecs:[^\n]*deps"), "make specs must not install packages")
    assert.equal("MIT", rel.description.license)
    assert.matches("MIT License", H.read_file("LICENSE"), 1, true)
    assert.matches("## " .. rel.version:match("^(.-)%-"), H.read_file("CHANGELOG.md"), 1, true)
  end)

  it("luarocks lint finds nothing in either rockspec", function()
    for _, name in ipairs(ROCKSPECS) do
      local out, ok = H.run("luarocks lint " .. name .. " 2>&1")
      assert.is_true(ok, out)
      assert.equal("", out)
    end
  end)

  -- In a copy of the checkout, so the build's leftovers can be compared
  -- with what make clean removes: luarocks make, require "ksms" and the ksms
  -- command through luarocks path, then make clean leaves the files as they were.
  it("luarocks make of the versioned rockspec gives a working module and command; make clean removes its leftovers", function()
    local copy = os.tmpname(); os.remove(copy)
    local tree = copy .. "-tree"
    assert.is_true(H.exec_ok("mkdir -p " .. copy .. " && git ls-files -z | xargs -0 cp --parents -t " .. copy))
    local before = H.run("cd " .. copy .. " && find . | sort")
    local out, ok = H.run("cd " .. copy .. " && luarocks --lua-version=5.4 make --deps-mode=none --tree="
      .. tree .. " ksms-0.2.0-1.rockspec 2>&1")
    assert.is_true(ok, out)
    local res, ran = H.run(("cd /tmp && eval \"$(luarocks --lua-version=5.4 path --tree %s)\" && "
      .. "lua5.4 -e %q && ksms --version && command -v ksms && ksms check '안녕 hello' 2>&1")
      :format(tree, "print(require('ksms')._VERSION, package.searchpath('ksms.core', package.cpath))"))
    assert.is_true(ran, res)
    assert.matches(tree .. "/lib/lua/5.4/ksms/core.so", res, 1, true)
    assert.matches("ksms %S+ %(Lua 5%.4%)", res)
    assert.matches(tree .. "/bin/ksms", res, 1, true)
    assert.matches("10 bytes in CP949", res, 1, true)
    local cleaned, made = H.run("cd " .. copy .. " && make -s clean >/dev/null 2>&1 && find . | sort")
    assert.is_true(made)
    assert.equal(before, cleaned)
    H.run("rm -rf " .. copy .. " " .. tree)
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
    -- luarocks make compiles in place: its objects and ksms/core.so go (make clean's lines)
    H.run("rm -rf " .. tree .. " ksms-scm-1.rockspec.* csrc/*.o ksms/core.so; rmdir ksms 2>/dev/null")
  end)
end)
