-- The library's comments cite only what a reader of the repository can
-- open: no path under shared/ (the project's workspace, not shipped).
describe("comments in lua/ and csrc/", function()
  it("cite no path outside the repository", function()
    local missing, files = {}, 0
    for path in io.popen("find lua csrc -name '*.lua' -o -name '*.c' -o -name '*.h' | sort"):lines() do
      files = files + 1
      local f = assert(io.open(path, "rb"))
      local text = f:read("*a")
      f:close()
      for cited in text:gmatch("shared/[%w_%.%-/]*") do
        local c = io.open((cited:gsub("[%.%)]+$", "")), "rb")
        if c then c:close() else missing[#missing + 1] = path .. ": " .. cited end
      end
    end
    assert.is_true(files > 50)
    assert.same({}, missing)
  end)
end)
