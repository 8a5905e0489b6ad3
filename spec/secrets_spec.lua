-- The CLI's masker (ksms.secrets) and the one writer every output goes
-- through (ksms.cli.output Out:write). The
-- end-to-end check with a server echoing a key is in spec/cli_spec.lua.
local secrets = require "ksms.secrets"
local output = require "ksms.cli.output"
local core = require "ksms.core"
local H = require "spec_helper"

local encodings = H.secret_encodings -- computed by the spec, not the masker

local SECRET = "c24 s3cr?t>~key/" -- Base64 YzI0IHMzY3I/dD5+a2V5Lw==

local function out_to_files()
  local o_path, e_path = os.tmpname(), os.tmpname()
  local out = output.new { stdout = assert(io.open(o_path, "wb")), stderr = assert(io.open(e_path, "wb")) }
  return out, o_path, e_path
end

describe("ksms.secrets", function()
  it("masks every encoding of a secret, whole, leaving the text around it", function()
    local b64 = core.b64encode(SECRET)
    assert.is_truthy(b64:find("+", 1, true) and b64:find("/", 1, true))
    local m = secrets.masker()
    m:add(SECRET)
    for _, form in ipairs(encodings(SECRET)) do
      local masked = m:mask("<" .. form .. ">")
      -- Only Base64 padding (=, %3D) may stay: it carries nothing.
      assert.is_truthy(masked:match("^<%*%*%*%*%*%*%*%*[=%%3Dd25]*>$"), form .. " -> " .. masked)
    end
  end)

  it("masks the start of a secret cut short (a quoted answer cut inside it), not a few bytes of it", function()
    local m = secrets.masker()
    m:add(SECRET)
    for _, form in ipairs(encodings(SECRET)) do
      local cut = form:sub(1, 10)
      assert.equal("[********]", m:mask("[" .. cut .. "]"), cut)
    end
    assert.equal("c24 s3c", m:mask("c24 s3c")) -- 7 bytes: under secrets.PREFIX
  end)

  it("leaves values under 3 bytes alone and masks table keys and secret-named fields", function()
    local m = secrets.masker()
    m:add("ab")
    assert.equal("ab cd", m:mask("ab cd"))
    m:add("sekrit-value")
    local t = m:mask_tree({ ["sekrit-value"] = 1, api_key = "anything", list = { "x sekrit-value y" } })
    assert.same({ ["********"] = 1, api_key = "********", list = { "x ******** y" } }, t)
  end)

  it("masks in linear time on a hostile text of secret starts", function()
    local m = secrets.masker()
    m:add(SECRET)
    local text = (core.b64encode(SECRET):sub(1, 12) .. "%2"):rep(64 * 1024)
    local t0 = os.clock()
    local masked = m:mask(text)
    local t = os.clock() - t0
    assert.equal(("********%2"):rep(64 * 1024), masked)
    -- about 0.3 s here (0.6 s under the ASan build on a loaded machine); a
    -- masker that rescans from each start would take hours on 900 KB
    assert.is_true(t < 3, ("%.2f s of CPU for %d bytes"):format(t, #text))
  end)
end)

describe("ksms.cli.output Out:write", function()
  it("masks across the pieces of one write, but not verbatim pieces", function()
    local out, o_path, e_path = out_to_files()
    out:secret("split-secret")
    out:write(out.stdout, "a split-", "secret b ", output.verbatim("split-secret"), "\n")
    out:line("line split-secret")
    out:note("note split-secret")
    out:raw_err("bar split-secret")
    out.stdout:close(); out.stderr:close()
    assert.equal("a ******** b split-secret\nline ********\n", H.read_file(o_path))
    assert.equal("note ********\nbar ********", H.read_file(e_path))
    os.remove(o_path); os.remove(e_path)
  end)
end)
