-- The CLI asks the library: option schemas, required options, capabilities
-- and limits come from ksms.client.info (the adapters' and the OneShot
-- client's own tables), and no CLI file branches on a provider's name.
local client = require "ksms.client"
local config = require "ksms.cli.config"
local H = require "helper"

describe("the CLI's view of the providers", function()
  it("is the library's: options, required options and the provider list", function()
    assert.same(client.names, config.PROVIDERS)
    for _, name in ipairs(client.names) do
      local info = client.info(name)
      local want = {}
      -- the scalar ones, as text reads them (rate: a number or a table, from text a number)
      local read = { string = "string", number = "number", boolean = "boolean", ["number|table"] = "number" }
      for k, t in pairs(info.options) do
        if read[t] then want[k] = read[t] end
      end
      assert.same(want, config.OPTIONS[name], name)
      assert.same(info.required, config.REQUIRED[name], name)
      assert.is_table(info.capabilities, name)
      assert.is_table(info.limits, name)
      assert.is_number(info.limits.sms, name)
    end
    -- The adapters' options are all there (a new one needs no CLI edit).
    for k in pairs(require("ksms.providers.cafe24").options) do assert.is_string(config.OPTIONS.cafe24[k], k) end
    for k in pairs(require("ksms.oneshot.session").options) do
      local t = require("ksms.oneshot.session").options[k]
      if t ~= "function" then assert.equal(t, config.OPTIONS.oneshot[k], k) end
    end
    assert.is_nil(client.info("nope"))
  end)

  it("has no branch on a provider's name", function()
    local files = {}
    for _, dir in ipairs { "lua/ksms/cli/", "lua/ksms/cli/commands/" } do
      local p = io.popen("ls " .. dir .. "*.lua")
      for f in p:lines() do if not f:find("dryrun%.lua$") then files[#files + 1] = f end end
      p:close()
    end
    assert.is_true(#files > 10)
    for _, f in ipairs(files) do
      local src = H.read_file(f)
      for _, name in ipairs(client.names) do
        for _, op in ipairs { "==", "~=" } do
          local n = 0
          for _ in src:gmatch(op .. '%s*"' .. name .. '"') do n = n + 1 end
          assert.equal(0, n, f .. ": " .. op .. ' "' .. name .. '"')
        end
      end
    end
  end)
end)
