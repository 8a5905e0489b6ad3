-- ksms.cli.status: which exit code an error gives. 4 is "not sent, safe to
-- retry": a network failure before the request left, and only that.
local status = require "ksms.cli.status"
local errors = require "ksms.errors"

local function e(fields) return errors.new(fields) end

describe("ksms.cli.status.for_error", function()
  it("keeps 0-3 and gives 4 for a network failure where nothing was sent", function()
    assert.equal(0, status.OK)
    assert.equal(1, status.REFUSED)
    assert.equal(2, status.USAGE)
    assert.equal(3, status.UNKNOWN)
    assert.equal(4, status.NOT_SENT)
    for _, code in ipairs({ "dns", "connect", "tls" }) do
      assert.equal(4, status.for_error(e { category = "network", code = code, maybe_sent = false, provider = "senders" }, true), code)
    end
    assert.equal(4, status.for_error(e { category = "timeout", code = "timeout", maybe_sent = false, provider = "senders" }, true))
    assert.equal(4, status.for_error(e { category = "network", code = "not_connected", maybe_sent = false, provider = "oneshot" }, false))
    -- OneShot's connect error says no maybe_sent: the CLI saw nothing leave.
    assert.equal(4, status.for_error(e { category = "network", code = "connect", provider = "oneshot" }, false))
  end)

  it("stays 3 whenever the request may have left", function()
    -- after the request was written
    assert.equal(3, status.for_error(e { category = "network", code = "recv", maybe_sent = true, provider = "senders" }, true))
    assert.equal(3, status.for_error(e { category = "timeout", code = "timeout", maybe_sent = true, provider = "senders" }, true))
    -- a code of a later phase, even claiming maybe_sent false
    assert.equal(3, status.for_error(e { category = "network", code = "send", maybe_sent = false, provider = "senders" }, true))
    -- maybe_sent not said, and the CLI counted a request
    assert.equal(3, status.for_error(e { category = "network", code = "connect", provider = "senders" }, true))
    -- some recipients accepted
    assert.equal(3, status.for_error(e { category = "network", code = "connect", maybe_sent = false, partial = true,
      provider = "senders" }, true))
    -- not a network failure
    assert.equal(1, status.for_error(e { category = "auth", code = "401", maybe_sent = false, provider = "senders" }, true))
  end)
end)

describe("ksms.errors.closest", function()
  it("is exported: the one did-you-mean rule of options, commands and flags", function()
    assert.equal("api_key", errors.closest("api_kye", { "api_key", "base_url" }))
    assert.equal("version", errors.closest("versio", { "version", "verbose", "help" }))
    assert.is_nil(errors.closest("frobnicate", { "send", "bulk" }))
  end)
end)
