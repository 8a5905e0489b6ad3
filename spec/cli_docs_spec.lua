-- The completion scripts and the man page come from the tables of --help:
-- every command and every flag is in them, and the shells and groff take
-- them. (The installed copies: cli_spec's installation test.)
local main = require "ksms.cli.main"
local docs = require "ksms.cli.help"
local flags = require "ksms.cli.flags"
local H = require "spec_helper"

local function have(tool)
  local r = os.execute("command -v " .. tool .. " >/dev/null 2>&1")
  return r == true or r == 0
end

local function check_with(tool_cmd, text)
  local path = os.tmpname()
  H.write_file(path, text)
  -- env -u LD_PRELOAD: the ASan runs preload the sanitizer into the specs,
  -- and it would judge groff's own allocations, not ours.
  local out, ok = H.run("env -u LD_PRELOAD " .. tool_cmd .. " " .. path .. " 2>&1")
  os.remove(path)
  return ok, out
end

describe("ksms completion and man page", function()
  local bash = docs.bash_completion(main.commands)
  local zsh = docs.zsh_completion(main.commands)
  local man = docs.man(main.commands, "0.0.0")

  it("list every command and every flag of the tables", function()
    assert.is_true(#main.commands >= 12)
    for _, c in ipairs(main.commands) do
      assert.matches("\n    " .. c.name:gsub("%-", "%%-") .. "%) ", bash, nil, c.name)
      assert.matches("'" .. c.name .. ":", zsh, 1, true)
      assert.matches(".SS " .. c.name:gsub("%-", "\\-"), man, 1, true)
      for _, f in ipairs(docs.flags_of(c)) do
        local line = bash:match("\n    " .. c.name:gsub("%-", "%%-") .. "%) words=\"([^\"]*)\"")
        assert.is_truthy((" " .. line .. " "):find(" --" .. f.name .. " ", 1, true), c.name .. " --" .. f.name)
        assert.is_truthy(zsh:find("'--" .. f.name .. ":", 1, true), c.name .. " --" .. f.name)
        if not f.hidden then
          assert.is_truthy(man:find("\\fB\\-\\-" .. f.name:gsub("%-", "\\-") .. "\\fR", 1, true), "man --" .. f.name)
        end
      end
    end
    for _, f in ipairs(flags.PROVIDER_OPTIONS) do
      assert.is_truthy(man:find("\\-\\-" .. f.name:gsub("%-", "\\-"), 1, true), "man --" .. f.name)
    end
    assert.matches("--version", bash, 1, true)
    assert.matches("\n4  network failure before anything left", "\n" .. man:match("%.SH EXIT STATUS\n%.nf\n(.-)%.fi"):gsub("\n%s+", "\n"), 1, true)
  end)

  it("are accepted by bash -n, zsh -n and groff (where installed)", function()
    local ok, out = check_with("bash -n", bash)
    assert(ok, out)
    if have("zsh") then ok, out = check_with("zsh -n", zsh); assert(ok, out) end
    assert.matches("^#compdef ksms\n", zsh)
    assert.matches("^%.TH KSMS 1 ", man)
    for _, section in ipairs({ "NAME", "SYNOPSIS", "COMMANDS", "OPTIONS", "EXIT STATUS" }) do
      assert.matches("\n.SH " .. section .. "\n", man, 1, true)
    end
    -- no text line starting with a control character by accident
    for line in man:gmatch("[^\n]+") do
      if line:match("^[%.']") then assert.matches("^%.[A-Za-z][A-Za-z]?", line) end
    end
    if have("groff") then
      ok, out = check_with("groff -man -ww -z", man)
      assert(ok, out)
      assert.equal("", out)
    end
  end)

  it("completes commands, flags and provider names in bash", function()
    local path = os.tmpname()
    H.write_file(path, bash)
    local driver = os.tmpname()
    local function complete(words)
      local quoted = {}
      for i, w in ipairs(words) do quoted[i] = "'" .. w .. "'" end
      H.write_file(driver, ("source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_ksms\necho \"${COMPREPLY[*]}\"\n")
        :format(path, table.concat(quoted, " "), #words - 1))
      local out = H.run("env -u LD_PRELOAD bash " .. driver)
      return (out:gsub("%s+$", ""))
    end
    assert.equal("send senders", complete({ "ksms", "--provider", "senders", "se" }))
    assert.equal("--journal", complete({ "ksms", "bulk", "--jo" }))
    assert.equal("ppurio", complete({ "ksms", "send", "--provider", "pp" }))
    -- a command group: its subcommand word first, then its flags and values
    assert.equal("status list resolve counts", complete({ "ksms", "outbox", "" }))
    assert.equal("list", complete({ "ksms", "outbox", "li" }))
    assert.equal("--state", complete({ "ksms", "outbox", "list", "--st" }))
    assert.equal("maybe_sent", complete({ "ksms", "outbox", "list", "--state", "may" }))
    os.remove(path)
    os.remove(driver)
  end)
end)
