-- The bulk CSV reader (ksms.cli.csv) on ordinary and hostile files: RFC
-- 4180 as before, every field and record bounded with an error naming the
-- line, linear time, bounded memory, and never a raise.
local csv = require "ksms.cli.csv"
local trim = require("ksms.cli.input").trim
local H = require "spec_helper"

local MAX_FIELD, MAX_RECORD = csv.MAX_FIELD, csv.MAX_RECORD

local paths = {}
local function temp_file(data)
  local path = os.tmpname()
  paths[#paths + 1] = path
  if data then H.write_file(path, data) end
  return path
end

-- Every record of a file, or the error that stopped the reader; never
-- raises (a raise fails the spec with its message).
local function read_all(path)
  local r = assert(csv.open(path))
  local records, err = {}, nil
  while true do
    local ok, fields, line_or_err = pcall(r.next, r)
    assert(ok, "the reader raised: " .. tostring(fields))
    if not fields then err = line_or_err; break end
    records[#records + 1] = { fields = fields, line = line_or_err }
  end
  r:close()
  return records, err
end

-- CPU seconds of f(); f must not raise.
local function cpu(f)
  local t0 = os.clock()
  local ok, e = pcall(f)
  assert(ok, "raised: " .. tostring(e))
  return os.clock() - t0
end

describe("ksms.cli.csv", function()
  teardown(function()
    for _, p in ipairs(paths) do os.remove(p) end
  end)

  describe("ordinary files", function()
    it("reads RFC 4180 quoting, CRLF and LF, a BOM, blank lines, and names each record's first line", function()
      local records, err = read_all(temp_file("\239\187\191name,phone,note\r\n"
        .. "\"김, 철수\",010-1111-2222,\"say \"\"hi\"\"\"\r\n"
        .. "\n"
        .. "\"two\nlines\",01033334444,\n"
        .. "last,\"\",x"))
      assert.is_nil(err)
      assert.same({ "name", "phone", "note" }, records[1].fields)
      assert.same({ "김, 철수", "010-1111-2222", "say \"hi\"" }, records[2].fields)
      assert.same({ "two\nlines", "01033334444", "" }, records[3].fields)
      assert.same({ "last", "", "x" }, records[4].fields)
      assert.same({ 1, 2, 4, 6 }, { records[1].line, records[2].line, records[3].line, records[4].line })
      assert.equal(4, #records)
    end)

    it("keeps fields up to the limit and refuses text after a closing quote, naming the line", function()
      local big = ("x"):rep(MAX_FIELD)
      local records, err = read_all(temp_file("a,b\n\"" .. big .. "\"," .. big .. "\n"))
      assert.is_nil(err)
      assert.equal(MAX_FIELD, #records[2].fields[1])
      assert.equal(MAX_FIELD, #records[2].fields[2])
      records, err = read_all(temp_file("a,b\n1,2\n\"x\"y,2\n"))
      assert.equal(2, #records)
      assert.matches("^line 3: unexpected \"y\" after a closing quote", err)
      records, err = read_all(temp_file("a\n\"never closed\nmore\n"))
      assert.matches("^line 2: a quoted field is not closed before the end of the file", err)
    end)
  end)

  describe("hostile files", function()
    it("bounds a quoted field whose lines end in \"\" (the old size count missed them)", function()
      -- Each line: 60 bytes then "" (one quote), so the field goes on.
      local line = ("y"):rep(60) .. "\"\"\n"
      local path = temp_file("name,phone\n\"" .. line:rep(math.ceil(4 * MAX_FIELD / #line)) .. "\",01011112222\n")
      local records, err = read_all(path)
      assert.equal(1, #records)
      assert.matches("^line 2: a field runs past " .. MAX_FIELD .. " bytes", err)
      -- The same on one line: "" pairs only.
      records, err = read_all(temp_file("h\n\"" .. ("\"\""):rep(MAX_FIELD + 1) .. "\"\n"))
      assert.equal(1, #records)
      assert.matches("^line 2: a field runs past " .. MAX_FIELD .. " bytes", err)
    end)

    it("bounds unquoted fields, lines, records and the number of fields, naming the line", function()
      local records, err = read_all(temp_file("h\nok\n" .. ("z"):rep(MAX_FIELD + 1) .. ",1\n"))
      assert.equal(2, #records)
      assert.matches("^line 3: a field runs past " .. MAX_FIELD .. " bytes", err)
      -- One line longer than a record may be, with no newline at all.
      records, err = read_all(temp_file("h\n" .. ("a,"):rep(MAX_RECORD)))
      assert.equal(1, #records)
      assert.matches("^line 2: ", err)
      -- A record of many lines, each field within its limit.
      local piece = ("q"):rep(1000) .. "\n"
      records, err = read_all(temp_file("h\n" .. ("\"" .. piece:rep(60) .. "\","):rep(40) .. "\n"))
      assert.equal(1, #records)
      assert.matches("^line 2: a record runs past " .. MAX_RECORD .. " bytes %(to line %d+", err)
      records, err = read_all(temp_file("h\n" .. (","):rep(csv.MAX_FIELDS + 1) .. "\n"))
      assert.equal(1, #records)
      assert.matches("^line 2: more than " .. csv.MAX_FIELDS .. " fields", err)
    end)

    it("stays stopped after an error, and reports a file it cannot read", function()
      local r = assert(csv.open(temp_file("h\n" .. ("z"):rep(MAX_FIELD + 1) .. "\nok\n")))
      assert.same({ "h" }, (r:next()))
      local f1, e1 = r:next()
      local f2, e2 = r:next()
      assert(f1 == nil and f2 == nil, "a field past the limit was returned")
      assert.matches("^line 2: a field runs past", e1)
      assert.equal(e1, e2)
      r:close()
      local dir = temp_file()
      os.remove(dir)
      os.execute("mkdir " .. dir)
      local rd = csv.open(dir)
      if rd then -- Linux opens a directory and fails on read
        local fields, err = rd:next()
        assert.is_nil(fields)
        assert.matches("^line 1: cannot read", err)
        rd:close()
      end
      os.execute("rmdir " .. dir)
    end)

    it("parses adversarial 64 KiB+ inputs in linear time", function()
      local n = MAX_FIELD
      local inputs = {
        quotes = ("\""):rep(n + 1),
        doubled = "h\n\"" .. ("\"\""):rep(n / 2 - 2) .. "\",x\n",
        doubled_lines = "h\n\"" .. ("ab\"\"\n"):rep(n / 8) .. "\"\n",
        fields = "h\n" .. (","):rep(csv.MAX_FIELDS - 1) .. "\n",
        commas = "h\n" .. (","):rep(n) .. "\n",
        blank_lines = ("\r\n"):rep(n) .. "h\n",
        quote_runs = "h\n" .. ("\"a\"\"b\"\"\","):rep(n / 16) .. "\n",
        spaces = "h\n" .. ("x" .. (" "):rep(n - 2) .. "y,"):rep(4) .. "\n",
        long_line = ("k"):rep(4 * n),
      }
      for name, data in pairs(inputs) do
        local path = temp_file(data)
        local t = cpu(function() read_all(path) end)
        assert.is_true(t < 0.5, ("%s: %.2f s of CPU for %d bytes"):format(name, t, #data))
      end
    end)

    it("reads a 50 MB hostile file in bounded memory", function()
      local MB = 1024 * 1024
      local shapes = {
        -- one line of 50 MB, no newline
        one_line = function() return ("w"):rep(MB) end,
        -- one quoted field whose every line ends in ""
        doubled_lines = function() return (("v"):rep(126) .. "\"\"\n"):rep(MB / 128) end,
        -- "" pairs only, no line break
        doubled = function() return ("\"\""):rep(MB / 2) end,
      }
      local heads = { one_line = "h\n", doubled_lines = "h\n\"", doubled = "h\n\"" }
      for name, chunk in pairs(shapes) do
        local path = temp_file()
        local f = assert(io.open(path, "wb"))
        f:write(heads[name])
        local piece = chunk()
        for _ = 1, 50 do f:write(piece) end
        f:close()
        piece = nil
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        local peak = before
        local r = assert(csv.open(path))
        while true do
          local ok, fields, err = pcall(r.next, r)
          assert(ok, name .. ": raised " .. tostring(fields))
          peak = math.max(peak, collectgarbage("count"))
          if not fields then
            assert(err and err:find("^line 2: "), name .. ": " .. tostring(err))
            break
          end
        end
        r:close()
        os.remove(path)
        local grown = (peak - before) / 1024
        assert.is_true(grown < 8, ("%s: %.1f MB of Lua heap while reading"):format(name, grown))
      end
    end)
  end)

  describe("input.trim", function()
    it("trims like ^%s*(.-)%s*$ in linear time", function()
      for _, s in ipairs({ "", " ", "a", " a ", "\t a b \r\n", "a  b", "  ", "x\n" }) do
        assert.equal(s:match("^%s*(.-)%s*$"), trim(s))
      end
      local hostile = ("a" .. (" "):rep(64 * 1024) .. "b"):rep(2)
      local t = cpu(function() assert.equal(#hostile, #trim(" " .. hostile .. " ")) end)
      assert.is_true(t < 0.5, ("%.2f s of CPU"):format(t))
    end)
  end)
end)
