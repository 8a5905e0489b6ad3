-- Error objects in expressions: concatenated either way round (the text is
-- tostring(err)) and asked for their category with err:is(...). `err ==
-- "auth"` cannot work (Lua compares a table and a string as unequal without
-- asking __eq), hence the method.
local core = require "ksms.core"
local errors = require "ksms.errors"
local fake_control = require "fake_control"
local ksms = require "ksms"

describe("an error object", function()
  it("concatenates with strings, numbers and other errors as tostring(err)", function()
    local e = errors.new { category = "auth", code = "155", provider = "senders", message = "key refused" }
    local text = tostring(e)
    assert.equal("ksms[senders] auth (155): key refused", text)
    assert.equal("failed: " .. text, "failed: " .. e)
    assert.equal(text .. "!", e .. "!")
    assert.equal("1" .. text, 1 .. e)
    assert.equal(text .. " / " .. text, e .. " / " .. e)
    assert.equal(text .. text, e .. e)
    -- an error the C core made has the same metatable
    local _, cerr = core.cp949_len("\255")
    assert.equal("bad: " .. tostring(cerr), "bad: " .. cerr)
    -- anything else still refuses, as Lua does
    assert.has_error(function() return e .. {} end)
    assert.has_error(function() return true .. e end)
  end)

  it("answers is(category) and errors.is(v, category)", function()
    local e = errors.new { category = "auth", provider = "senders" }
    assert.is_true(e:is("auth"))
    assert.is_false(e:is("network"))
    assert.is_true(e:is("network", "auth"))
    assert.is_true(e:is())
    assert.is_true(errors.is(e, "auth"))
    assert.is_false(errors.is(e, "balance"))
    assert.is_true(errors.is(e))
    assert.is_false(errors.is({ category = "auth" }, "auth"))
    assert.is_false(errors.is("auth", "auth"))
    -- a misspelt category is misuse, not a silent false
    local ok, msg = pcall(function() local r = e:is("auht"); return r end)
    assert.is_false(ok)
    assert.matches("error_object_spec.lua:%d+: .*unknown category 'auht'", msg)
    -- fields are unchanged: nothing new is visible to pairs or a JSON encoder
    local keys = {}
    for k in pairs(e) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "category", "message", "provider", "retryable" }, keys)
  end)

  it("works on what a client returns", function()
    local fake = fake_control.start("senders")
    local c = ksms.client("senders", { api_key = "wrong-key", base_url = fake.base_url, timeout = 5 })
    local res, err = c:send { to = "01011112222", from = "02-1234-5678", text = "x" }
    c:close()
    fake:stop()
    assert.is_nil(res)
    assert.is_true(err:is("auth"), tostring(err))
    assert.equal("send failed: " .. tostring(err), "send failed: " .. err)
  end)
end)
