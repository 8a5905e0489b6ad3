--- ksms.cli.journal: the outcome journal of a bulk send, one line per row
-- and event, appended and flushed as it goes:
--
--   # ksms bulk journal v1 ...            (comments: runs, the CSV header)
--   <row>\t<recipient>\tpending\t         written BEFORE the row is sent
--   <row>\t<recipient>\tok\tid=...        the provider accepted it
--   <row>\t<recipient>\tfailed\t<code> <message>       refused, not sent
--   <row>\t<recipient>\tmaybe_sent\t<code> <message>   may have been sent
--
--   # template\t<fingerprint>           the template and options of a run
--
-- The last line of a row decides. Reading a journal keeps only bitsets of
-- row numbers (ksms.cli.bitset): done (ok), failed, and unknown (pending or
-- maybe_sent), so a million-row journal stays a few hundred KB.
-- @module ksms.cli.journal
-- @alias _M

local bitset = require "ksms.cli.bitset"
local verbatim = require("ksms.cli.output").verbatim

local io_open, tonumber, tostring, type, error = io.open, tonumber, tostring, type, error
local format, gsub, sub = string.format, string.gsub, string.sub
local setmetatable, pairs, ipairs = setmetatable, pairs, ipairs

local _M = { _VERSION = "0.2.0" }

-- FNV-1a, 32 bits, over a string: NOT cryptographic (it tells a changed
-- template from the same one; anyone can make two texts with one hash).
-- Plain arithmetic, no bit operators: the same number under Lua 5.1-5.4
-- and LuaJIT (every intermediate stays under 2^53).
local byte, floor = string.byte, math.floor
local function fnv1a32(s)
  local h = 2166136261
  for i = 1, #s do
    local b = byte(s, i)
    -- h XOR b: b touches the low 8 bits only.
    local low = h % 256
    local x, bit, l, bb = 0, 1, low, b
    for _ = 1, 8 do
      if (l % 2) ~= (bb % 2) then x = x + bit end
      l, bb, bit = floor(l / 2), floor(bb / 2), bit * 2
    end
    h = h - low + x
    -- h * 16777619 (2^24 + 403) mod 2^32, in pieces that stay exact.
    h = (h * 403 + (h % 256) * 16777216) % 4294967296
  end
  return h
end
_M.fnv1a32 = fnv1a32

--- fingerprint(fields) -> "fnv1a32:xxxxxxxx" of a { name = value } table,
-- in sorted order. The caller passes no secret (bulk: the template, the
-- subject, the kind, the caller number, the provider, the phone column).
function _M.fingerprint(fields)
  local names, parts = {}, {}
  for k in pairs(fields) do names[#names + 1] = k end
  table.sort(names)
  for i, k in ipairs(names) do parts[i] = k .. "=" .. tostring(fields[k]) end
  return format("fnv1a32:%08x", fnv1a32(table.concat(parts, "\0")))
end

_M.OUTCOMES = { pending = true, ok = true, failed = true, maybe_sent = true }

--- The state of a journal that does not exist yet (no rows).
-- @treturn table
function _M.empty()
  return { ok = bitset.new(), failed = bitset.new(), unknown = bitset.new(), pending = bitset.new(),
    lines = 0, exists = false }
end

-- The lines of f, each cut to its first max bytes: a journal is a file
-- anyone may have edited, and f:lines() would hold a line of any length.
-- Only a line's start matters here (its row, outcome and, for the columns
-- comment, the CSV header, which the CSV reader bounds the same way).
local CHUNK, MAX_LINE = 64 * 1024, 1024 * 1024
local find = string.find
local function bounded_lines(f, max)
  local buf, pos = "", 1
  return function()
    local parts, len = {}, 0
    while true do
      if pos > #buf then
        buf, pos = f:read(CHUNK), 1
        if not buf then
          buf = ""
          if len > 0 or #parts > 0 then return table.concat(parts) end
          return nil
        end
      end
      local nl = find(buf, "\n", pos, true)
      local stop = nl and nl - 1 or #buf
      if len < max then
        local piece = sub(buf, pos, math.min(stop, pos + (max - len) - 1))
        parts[#parts + 1] = piece
        len = len + #piece
      end
      pos = stop + 1
      if nl then
        pos = nl + 1
        local line = table.concat(parts)
        return line
      end
    end
  end
end
_M.bounded_lines = bounded_lines

--- load(path) -> state | nil, message. A missing file is an empty state.
-- state: ok, failed, unknown, pending (bitsets), lines, columns (the CSV
-- header the journal was written for, if recorded), template (the last
-- fingerprint recorded).
function _M.load(path)
  local state = _M.empty()
  local f = io_open(path, "rb")
  if not f then return state end
  state.exists = true
  local ok, failed, unknown, pending = state.ok, state.failed, state.unknown, state.pending
  for line in bounded_lines(f, MAX_LINE) do
    state.lines = state.lines + 1
    if sub(line, 1, 1) == "#" then
      local columns = line:match("^# columns\t(.*)$")
      if columns then state.columns = columns end
      local fp = line:match("^# template\t(%S+)")
      if fp then state.template = fp end
    else
      local row, outcome = line:match("^(%d+)\t[^\t]*\t([%a_]+)")
      row = tonumber(row)
      -- A line cut by a kill (no outcome) is ignored: the pending line
      -- before it already marks the row.
      if row and _M.OUTCOMES[outcome] then
        if outcome == "ok" then
          ok:add(row); failed:remove(row); unknown:remove(row); pending:remove(row)
        elseif outcome == "failed" then
          failed:add(row); ok:remove(row); unknown:remove(row); pending:remove(row)
        else
          unknown:add(row); ok:remove(row); failed:remove(row)
          if outcome == "pending" then pending:add(row) else pending:remove(row) end
        end
      end
    end
  end
  f:close()
  return state
end

local Writer = {}
Writer.__index = Writer

--- open(path, out) -> writer | nil, message: appends. Lines are written
-- through out (ksms.cli.output), masked like every other output: an error
-- detail may quote a server that echoed a secret.
function _M.open(path, out)
  if type(out) ~= "table" or not out.write then error("journal.open: the output (for masking) expected", 2) end
  local f, err = io_open(path, "ab")
  if not f then return nil, err end
  return setmetatable({ f = f, path = path, out = out }, Writer)
end

-- Tabs and line breaks would break the line format.
local function clean(s)
  return (gsub(tostring(s or ""), "[\t\r\n]+", " "))
end

local NL = verbatim("\n")

--- Writes a `# ` comment line.
-- @tparam string s
function Writer:comment(s)
  self.out:write(self.f, verbatim("# "), clean(s), NL)
end

--- Records the fingerprint of the template and options (# template).
-- @tparam string fp
function Writer:template(fp)
  self.out:write(self.f, verbatim("# template\t"), clean(fp), NL)
end

--- Records the CSV's header line in the journal.
-- @tparam string header_line
function Writer:columns(header_line)
  self.out:write(self.f, verbatim("# columns\t"), clean(header_line), NL)
end

--- One line, flushed at once: a kill right after leaves it on disk. The row
-- number and the outcome are written as they are, the rest masked.
function Writer:record(row, to, outcome, detail)
  if not _M.OUTCOMES[outcome] then error("journal: unknown outcome " .. tostring(outcome), 2) end
  self.out:write(self.f, verbatim(format("%d\t", row)), clean(to), verbatim("\t" .. outcome .. "\t"), clean(detail), NL)
end

--- Closes the journal file (again is harmless).
function Writer:close()
  if self.f then self.f:close() end
  self.f = nil
end

return _M
