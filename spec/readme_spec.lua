-- The README's Lua examples run, and print what their "-->" comments say.
local H = require "spec_helper"

describe("README examples", function()
  local readme = H.read_file("README.md")
  local blocks, compile_only = {}, {}
  for code in readme:gmatch("```lua\n(.-)```") do
    -- Blocks that need credentials say so on their first line: those are
    -- compiled, not run.
    if code:match("^%-%- %(not run by the specs") then
      compile_only[#compile_only + 1] = code
    else
      blocks[#blocks + 1] = code
    end
  end

  it("has examples that at least compile where they cannot run", function()
    assert.is_true(#compile_only >= 1)
    for i, code in ipairs(compile_only) do
      local fn, err = (loadstring or load)(code, "=README block " .. i)
      assert.is_function(fn, err)
    end
  end)

  it("has examples to check", function()
    assert.is_true(#blocks >= 1)
  end)

  for i, code in ipairs(blocks) do
    it("example " .. i .. " runs and prints what it promises", function()
      local file = os.tmpname()
      H.write_file(file, code)
      local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
      local out, ok = H.run(lua .. " " .. file .. " 2>&1")
      os.remove(file)
      assert.is_true(ok, out)
      local pos = 1
      for promised in code:gmatch("%-%->%s*([^\n]+)") do
        for piece in (promised .. ","):gmatch("%s*(.-),") do
          local want = piece:gsub("%s+", "%%s+")
          local s, e = out:find(want, pos)
          assert.is_truthy(s, "README promises '" .. piece .. "', output was:\n" .. out)
          pos = e + 1
        end
      end
    end)
  end
end)
