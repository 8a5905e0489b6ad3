-- What a core.http_client handle shows, and what core.urlencode_form
-- allocates: the default User-Agent is the core's own constant, not a
-- field every handle appears to have; the form encoder owns one buffer,
-- not a whole request batch.
local core = require "ksms.core"

describe("core.http_client handles", function()
  it("have their methods and no user_agent field, given or not", function()
    for _, opts in ipairs { {}, { user_agent = "ksms-spec/1" } } do
      local h = core.http_client(opts)
      assert.is_function(h.request)
      assert.is_function(h.request_many)
      assert.is_nil(h.user_agent)
      local mt = getmetatable(h)
      if type(mt) == "table" then assert.is_nil(rawget(mt, "user_agent")) end
      h:close()
    end
  end)
end)

describe("core.urlencode_form", function()
  it("allocates one small buffer per call, not a request batch", function()
    local form = { { "user_id", "ksmstest" }, { "msg", "안녕 a&b" } }
    local expected = "user_id=ksmstest&msg=%EC%95%88%EB%85%95+a%26b"
    assert.equal(expected, core.urlencode_form(form))
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    for _ = 1, 1000 do core.urlencode_form(form) end
    local per_call = (collectgarbage("count") - before) * 1024 / 1000
    collectgarbage("restart")
    -- The same (interned) string each time: what is left is the buffer's
    -- userdata, well under the 500-odd bytes of a one-request batch.
    assert.is_true(per_call < 200, ("%.0f bytes of Lua heap per call"):format(per_call))
  end)

  -- The buffer a raise leaves behind is freed by its __gc (make valgrind
  -- reports leaks).
  it("raises for a bad field after encoding a large one, and converts numbers", function()
    local big = string.rep("x", 1048576)
    for _ = 1, 5 do
      assert.error_matches(function() core.urlencode_form { { "a", big }, { "b", {} } } end,
        "form field 2")
    end
    assert.equal("a=1&b=2.5", core.urlencode_form { { "a", 1 }, { "b", 2.5 } })
  end)
end)
