-- Every public function of lua/ksms has an LDoc comment (a block starting
-- with "---") directly above it, every module a "---" header naming itself
-- with @module, and ldoc reads the whole tree without a warning (make docs).
-- Public: a function stored at the top level of a file in a table
-- (function T.f, function T:m, T.f = function), whose name does not start
-- with "_": module tables (_M, P) and the methods of the classes they hand out.
local H = require "spec_helper"

local function files()
  local list = {}
  for path in H.run("find lua/ksms -name '*.lua' | sort"):gmatch("[^\n]+") do list[#list + 1] = path end
  return list
end

local function public_functions(path)
  local found, prev = {}, {}
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    local name = line:match("^function ([%w_]+[.:][%w_.:]+)%s*%(")
      or line:match("^([%w_]+%.[%w_]+)%s*=%s*function")
    if name and not name:match("[.:]_") then
      local i = #prev
      while i >= 1 and prev[i]:match("^%s*%-%-") do i = i - 1 end
      found[#found + 1] = { name = name, line = n, doc = i < #prev and prev[i + 1]:match("^%-%-%-") ~= nil }
    end
    prev[#prev + 1] = line
  end
  return found
end

describe("doc comments", function()
  it("every public function of lua/ksms has a --- block directly above it", function()
    local missing, total = {}, 0
    for _, path in ipairs(files()) do
      for _, f in ipairs(public_functions(path)) do
        total = total + 1
        if not f.doc then missing[#missing + 1] = ("%s:%d %s"):format(path, f.line, f.name) end
      end
    end
    assert.is_true(total > 200, "found only " .. total .. " public functions")
    assert.same({}, missing)
  end)

  it("every module has a --- header with its @module name", function()
    local wrong = {}
    for _, path in ipairs(files()) do
      local text = H.read_file(path)
      local name = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      if not text:match("^%-%-%- ") or not text:find("\n%-%- @module " .. name:gsub("%.", "%%.") .. "\n") then
        wrong[#wrong + 1] = path
      end
    end
    assert.same({}, wrong)
  end)

  -- ldoc takes about a second; once is enough (it is the same under both).
  local lua = os.getenv("KSMS_TEST_LUA") or "lua5.4"
  local it_once = (lua == "lua5.4") and it or pending
  it_once("ldoc reads every module and guide without a warning (make docs)", function()
    local dir = H.tmpname(); os.remove(dir)
    local out, ok = H.run("ldoc -d " .. dir .. " . 2>&1")
    assert.is_true(ok, out)
    -- warnings name a file and line: "path:line: ..."
    assert.is_nil(out:match("[^\n]*%.lua:%d+:[^\n]*"), out)
    assert.is_nil(out:match("[^\n]*%.md:%d+:[^\n]*"), out)
    for _, page in ipairs { "index.html", "modules/ksms.client.html", "modules/ksms.errors.html",
        "modules/ksms.codes.html", "modules/ksms.oneshot.session.html", "modules/ksms.ngx.oneshot.html",
        "modules/ksms.cli.main.html", "modules/ksms.providers.cafe24.html", "topics/README.md.html" } do
      assert.is_truthy(io.open(dir .. "/" .. page), page .. " not written")
    end
    H.run("rm -rf " .. dir)
  end)
end)
