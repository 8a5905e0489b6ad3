-- The Lua examples of README.md and of every docs/*.md run, and print what
-- their "-->" comments say (each piece, comma-separated, is a Lua pattern
-- with its spaces loosened, found in order in the output).
local H = require "spec_helper"

local function documents()
  local list = { "README.md" }
  for path in H.run("ls docs/*.md 2>/dev/null"):gmatch("[^\n]+") do list[#list + 1] = path end
  return list
end

-- Blocks that need credentials, an account or nginx say so on their first
-- line: those are compiled, not run.
local function blocks_of(path)
  local run, compile_only = {}, {}
  for code in H.read_file(path):gmatch("```lua\n(.-)```") do
    if code:match("^%-%- %(not run by the specs") then
      compile_only[#compile_only + 1] = code
    else
      run[#run + 1] = code
    end
  end
  return run, compile_only
end

local function check_runs(name, code)
  local file = os.tmpname()
  H.write_file(file, code)
  local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
  local out, ok = H.run(lua .. " " .. file .. " 2>&1")
  os.remove(file)
  assert.is_true(ok, name .. ":\n" .. out)
  local pos = 1
  for promised in code:gmatch("%-%->%s*([^\n]+)") do
    for piece in (promised .. ","):gmatch("%s*(.-),") do
      local want = piece:gsub("%s+", "%%s+")
      local s, e = out:find(want, pos)
      assert.is_truthy(s, name .. " promises '" .. piece .. "', output was:\n" .. out)
      pos = e + 1
    end
  end
end

describe("documentation examples", function()
  it("the README has a first send that runs (against the bundled fake)", function()
    local run = blocks_of("README.md")
    assert.is_true(#run >= 1)
    assert.matches("client:send", run[1], 1, true)
    assert.matches("-->", run[1], 1, true)
  end)

  it("the guides the README links to exist", function()
    local readme = H.read_file("README.md")
    local n = 0
    for target in readme:gmatch("%]%(([^)#]+)%)") do
      -- docs/metrics.md is written with ksms.metrics (another branch)
      if not target:match("^https?:") and target ~= "docs/metrics.md" then
        assert.is_truthy(io.open(target), "README links to " .. target .. ", which is not there")
        n = n + 1
      end
    end
    assert.is_true(n >= 8)
  end)

  it("the README stays short and stale lines stay gone", function()
    local readme = H.read_file("README.md")
    local lines = select(2, readme:gsub("\n", ""))
    assert.is_true(lines < 150, "README.md is " .. lines .. " lines")
    for _, path in ipairs(documents()) do
      assert.is_nil(H.read_file(path):find("come later", 1, true), path .. " still says 'come later'")
    end
  end)

  local total_run, total_compiled = 0, 0
  for _, path in ipairs(documents()) do
    local run, compile_only = blocks_of(path)
    total_run, total_compiled = total_run + #run, total_compiled + #compile_only
    if #compile_only > 0 then
      it(path .. ": the examples that cannot run compile", function()
        for i, code in ipairs(compile_only) do
          local fn, err = (loadstring or load)(code, "=" .. path .. " block " .. i)
          assert.is_function(fn, err)
        end
      end)
    end
    for i, code in ipairs(run) do
      it(path .. ": example " .. i .. " runs and prints what it promises", function()
        check_runs(path .. " example " .. i, code)
      end)
    end
  end

  it("has examples to check", function()
    assert.is_true(total_run >= 2)
    assert.is_true(total_compiled >= 4)
  end)
end)
