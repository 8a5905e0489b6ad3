-- ksms.cli.fingerprint: what `ksms bulk` keeps in its outbox to tell the
-- same template from another on a re-run.
local fingerprint = require "ksms.cli.fingerprint"

describe("ksms.cli.fingerprint", function()
  it("is FNV-1a 32 (the published test vectors), the same under every Lua", function()
    assert.equal(0x811c9dc5, fingerprint.fnv1a32(""))
    assert.equal(0xe40c292c, fingerprint.fnv1a32("a"))
    assert.equal(0xbf9cf968, fingerprint.fnv1a32("foobar"))
  end)

  it("fingerprints a table in sorted order of its names", function()
    local a = fingerprint.of({ text = "{name}님", provider = "senders" })
    assert.matches("^fnv1a32:%x%x%x%x%x%x%x%x$", a)
    assert.equal(a, fingerprint.of({ provider = "senders", text = "{name}님" }))
    assert.not_equal(a, fingerprint.of({ provider = "senders", text = "{name}님!" }))
  end)
end)
