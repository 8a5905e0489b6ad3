-- ksms reads and writes JSON with its own cjson instances: an application
-- that changes a setting on the shared `cjson` or `cjson.safe` module does
-- not change how ksms reads answers, and loading ksms changes none of the
-- application's settings.
local ksms = require "ksms"
local fake_control = require "fake_control"
local H = require "spec_helper"

local LUA = os.getenv("KSMS_TEST_LUA") or "lua5.4"
local BUILD = os.getenv("KSMS_TEST_BUILD") or "build/" .. LUA

-- Every setting lua-cjson 2.1.0 has, read without changing it.
local SETTINGS = {
  "encode_sparse_array", "encode_max_depth", "decode_max_depth", "encode_number_precision",
  "encode_keep_buffer", "encode_invalid_numbers", "decode_invalid_numbers",
}

describe("ksms's cjson instances", function()
  it("read Cafe24's JSON answer whatever the application set on the shared cjson, and leave its settings alone", function()
    local cert = fake_control.make_cert()
    local fake = fake_control.start("cafe24", { tls = cert })
    local shared = { require "cjson", (require "cjson.safe") }
    local saved = {}
    for i, c in ipairs(shared) do saved[i] = { c.decode_max_depth(), c.decode_invalid_numbers() } end
    local client = ksms.client("cafe24", { user_id = "ksmstest", secure_key = "test-cafe24-key",
      base_url = fake.base_url, history_url = fake.history_url, ca_file = cert.cert, timeout = 5 })
    -- smsSenderPhone.php answers an object holding a list: depth 2 at least.
    for _, c in ipairs(shared) do c.decode_max_depth(1); c.decode_invalid_numbers(false) end
    local ok, res, err = pcall(client.sender_numbers, client)
    local after = {}
    for i, c in ipairs(shared) do after[i] = { c.decode_max_depth(), c.decode_invalid_numbers() } end
    for i, c in ipairs(shared) do c.decode_max_depth(saved[i][1]); c.decode_invalid_numbers(saved[i][2]) end
    client:close()
    fake:stop()
    fake_control.remove_cert(cert)
    assert(ok, res)
    assert(res, err and tostring(err))
    local found = {}
    for _, n in ipairs(res.numbers) do found[n.number] = true end
    assert.is_true(found["0212345678"])
    assert.same({ { 1, false }, { 1, false } }, after)
  end)

  it("change none of the shared cjson's settings when every module of ksms loads", function()
    local script = H.tmpname()
    H.write_file(script, [[
local SETTINGS = { ]] .. "'" .. table.concat(SETTINGS, "', '") .. "'" .. [[ }
local function snapshot()
  local out = {}
  for _, name in ipairs({ "cjson", "cjson.safe" }) do
    local c = require(name)
    for _, s in ipairs(SETTINGS) do out[#out + 1] = name .. "." .. s .. "=" .. table.concat({ tostring(c[s]()) }, ",") end
  end
  return table.concat(out, " ")
end
local before = snapshot()
local loaded = 0
for f in io.popen("find lua/ksms -name '*.lua' -not -path 'lua/ksms/ngx/*' | sort"):lines() do
  require((f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")))
  loaded = loaded + 1
end
-- Use them: a OneShot frame decoded, an answer read, a CLI JSON line.
local codec = require "ksms.oneshot.codec"
local common = require "ksms.providers.common"
assert(common.decode_json('{"a":[1,2,{"b":3}]}'))
assert(require("ksms.cli.output").encode({ "x/y", 1.5 }) == "[\"x/y\",1.5]")
print(loaded > 40, before == snapshot() and "same" or (before .. "\n" .. snapshot()))
]])
    local out, ok = H.run(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s %s 2>&1")
      :format(BUILD, LUA, script))
    os.remove(script)
    assert(ok, out)
    assert.equal("true\tsame\n", out)
  end)
end)
