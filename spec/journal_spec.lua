-- ksms.cli.journal reading a journal file anyone may have edited: a line of
-- any length is read in bounded memory, and the rows around it still count.
local journal = require "ksms.cli.journal"
local H = require "spec_helper"

describe("ksms.cli.journal.load", function()
  it("reads a journal with a 50 MB line in bounded memory, and the rows around it", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("# ksms bulk journal v1\n", "# columns\tphone,name\n", "1\t01011112222\tok\tid=1\n")
    f:write("2\t01011113333\tmaybe_sent\t")
    local piece = ("x"):rep(1024 * 1024)
    for _ = 1, 50 do f:write(piece) end
    f:write("\n3\t01011114444\tfailed\tbalance\n", "4\t01011115555\tpending\t") -- cut by a kill
    f:close()
    piece = nil
    collectgarbage("collect")
    local before = collectgarbage("count")
    local peak = before
    local state
    -- the load itself, sampled at every line it runs: it must never hold
    -- the long line whole
    local hook_n = 0
    debug.sethook(function()
      hook_n = hook_n + 1
      local now = collectgarbage("count")
      if now > peak then peak = now end
    end, "l")
    state = journal.load(path)
    debug.sethook()
    os.remove(path)
    assert.is_true(hook_n > 0)
    -- f:lines() holds the 50 MB line whole (more while it grows it); the
    -- chunked reader holds 1 MiB of it at most, plus the garbage of its
    -- 64 KiB reads, which the collector lets grow up to its pause (as big
    -- as the heap the suite already has): far under the line itself.
    assert.is_true(peak - before < 40 * 1024, ("heap grew %.0f KB"):format(peak - before))
    assert.equal("phone,name", state.columns)
    assert.is_true(state.ok:has(1))
    assert.is_true(state.unknown:has(2))
    assert.is_true(state.failed:has(3))
    assert.is_true(state.pending:has(4))
    assert.equal(6, state.lines)
  end)

  it("gives the same lines as f:lines() on an ordinary journal", function()
    local path = os.tmpname()
    local text = "# a\n1\tx\tok\t\n\n2\ty\tfailed\tz\n3\tq\tpending\t"
    H.write_file(path, text)
    local f = assert(io.open(path, "rb"))
    local got = {}
    for line in journal.bounded_lines(f, 1024) do got[#got + 1] = line end
    f:close()
    local want = {}
    for line in io.lines(path) do want[#want + 1] = line end
    os.remove(path)
    assert.same(want, got)
  end)

  it("fingerprints with FNV-1a 32 (the published test vectors), the same under every Lua", function()
    assert.equal(0x811c9dc5, journal.fnv1a32(""))
    assert.equal(0xe40c292c, journal.fnv1a32("a"))
    assert.equal(0xbf9cf968, journal.fnv1a32("foobar"))
    local a = journal.fingerprint({ text = "{name}님", provider = "senders" })
    assert.matches("^fnv1a32:%x+$", a)
    assert.equal(a, journal.fingerprint({ provider = "senders", text = "{name}님" }))
    assert.not_equal(a, journal.fingerprint({ provider = "senders", text = "{name}님!" }))
  end)

  it("reads the last template fingerprint recorded", function()
    local path = os.tmpname()
    H.write_file(path, "# columns\tphone\n# template\tfnv1a32:00000001\n1\tx\tok\t\n# template\tfnv1a32:00000002\n")
    local state = journal.load(path)
    os.remove(path)
    assert.equal("fnv1a32:00000002", state.template)
  end)
end)
