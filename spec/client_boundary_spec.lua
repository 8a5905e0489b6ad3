-- ksms.client is the one place that turns transport errors into outcomes:
-- an adapter's finish for a plan of one request only ever reads a
-- response, and every call's transport failure comes back as the same
-- outcome (network category, the provider stamped, maybe_sent kept).
local ksms = require "ksms"
local errors = require "ksms.errors"

-- A transport that fails every request, maybe after sending it.
local function failing(maybe_sent)
  local function err()
    return errors.new { category = "network", code = "reset", message = "connection reset",
      maybe_sent = maybe_sent, retryable = true }
  end
  return {
    request = function() return nil, err() end,
    request_many = function(_, reqs)
      local outs = {}
      for i = 1, #reqs do outs[i] = err() end
      return outs
    end,
    close = function() end,
  }
end

local OPTIONS = {
  senders = { api_key = "k" },
  messageme = { api_key = "k" },
  ppurio = { client_id = "id", api_key = "k" },
  cafe24 = { user_id = "u", secure_key = "k" },
}

-- Every call of a provider that makes one request, with its arguments.
local CALLS = {
  senders = { { "balance" } },
  messageme = { { "balance" } },
  ppurio = { { "report", "cmid-1" }, { "register_sender", "0212345678", "office" }, { "sender_numbers" } },
  cafe24 = { { "balance" }, { "sender_numbers" }, { "history", {} } },
}

describe("the client's error boundary", function()
  for name, calls in pairs(CALLS) do
    for _, call in ipairs(calls) do
      it("keeps transport errors from a one-request finish: " .. name .. " " .. call[1], function()
        if name == "cafe24" and call[1] == "history" and not pcall(require, "lxp") then return end
        for _, maybe in ipairs { false, true } do
          local o = {}
          for k, v in pairs(OPTIONS[name]) do o[k] = v end
          o.transport = failing(maybe)
          local c = ksms.client(name, o)
          -- Wrap the adapter's plans so any finish that gets an error fails.
          local adapter, seen = c.adapter, 0
          local wrapped = setmetatable({}, { __index = function(_, k)
            local f = adapter[k]
            if type(k) ~= "string" or not k:find("^plan_") then return f end
            return function(...)
              local plan, perr = f(...)
              if not plan then return plan, perr end
              local finish = plan.finish
              plan.finish = function(outs)
                seen = seen + 1
                for _, out in ipairs(outs) do assert.is_false(errors.is(out), name .. " " .. call[1]) end
                return finish(outs)
              end
              return plan
            end
          end })
          c.adapter = wrapped
          local res, err = c[call[1]](c, call[2], call[3])
          assert.is_nil(res)
          assert.equal(0, seen)
          assert.is_true(errors.is(err, "network"), tostring(err))
          assert.equal(name, err.provider)
          assert.equal(maybe, err.maybe_sent)
          assert.equal(not maybe, err.retryable)
          c:close()
        end
      end)
    end
  end

  it("gives a send of several requests the errors through combine", function()
    local c = ksms.client("senders", { api_key = "k", transport = failing(false), max_recipients_per_request = 1 })
    local res, err = c:send { to = { "01011112222", "01022223333" }, from = "0212345678", text = "x" }
    assert.is_nil(res)
    assert.equal("senders", err.provider)
    assert.equal("network", err.category)
    assert.equal(2, #err.parts)
    assert.is_false(err.partial)
    c:close()
  end)
end)
