--- ksms.cli.csv: an RFC 4180 CSV reader that streams, one record at a time:
-- a file of any length is never held in memory, only the current record.
--
--   local r = csv.open(path)            -- or nil, err
--   local fields, line = r:next()       -- nil at the end; nil, err on bad CSV
--   r:close()
--
-- Fields are separated by commas; a field in double quotes may hold commas,
-- line breaks and "" (one quote). CRLF or LF line ends; a UTF-8 byte order
-- mark at the start is dropped; blank lines between records are skipped.
--
-- The file is someone else's: every field, record and line is bounded
-- (MAX_FIELD, MAX_RECORD, MAX_FIELDS) and read in fixed-size chunks, so a
-- hostile file costs linear time and at most about two records of memory.
-- Going past a bound is an error naming the line; the reader then stays
-- stopped (next() repeats the error). It never raises on what a file holds.
-- @module ksms.cli.csv
-- @alias _M

local io_open = io.open
local find, sub, byte, format, concat = string.find, string.sub, string.byte, string.format, table.concat
local setmetatable, tostring = setmetatable, tostring

local _M = { _VERSION = "0.2.0" }

-- A field longer than this is a missing closing quote, not data (a
-- message is at most 2000 bytes).
_M.MAX_FIELD = 64 * 1024
-- A record (one row, all its lines) longer than this is not a CSV of
-- messages; this also bounds a line.
_M.MAX_RECORD = 1024 * 1024
_M.MAX_FIELDS = 10000

local CHUNK = 64 * 1024 -- bytes read at a time

local Reader = {}
Reader.__index = Reader

--- Opens a CSV file (UTF-8, RFC 4180) for streaming reads.
-- @tparam string path
-- @return a reader, or nil, message
function _M.open(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  return setmetatable({ f = f, line = 0, path = path, buf = "", pos = 1 }, Reader)
end

-- The next line without its line end, or nil at the end of the file, or
-- nil, line_number when the line runs past budget bytes, or nil,
-- line_number, message when the file cannot be read. Reads chunks; only
-- the line itself is ever joined.
function Reader:_read(budget)
  local parts, size, line = nil, 0, nil
  while true do
    local buf, pos = self.buf, self.pos
    local nl = find(buf, "\n", pos, true)
    local piece = sub(buf, pos, nl and nl - 1 or -1)
    size = size + #piece
    if size > budget then
      self.buf, self.pos = "", 1
      return nil, self.line + 1
    end
    if nl then
      self.pos = nl + 1
      if parts then parts[#parts + 1] = piece; line = concat(parts) else line = piece end
      break
    end
    if piece ~= "" then
      parts = parts or {}
      parts[#parts + 1] = piece
    end
    local chunk, err = self.f:read(CHUNK)
    self.buf, self.pos = chunk or "", 1
    if not chunk then
      if err then return nil, self.line + 1, err end
      if not parts then return nil end -- the end of the file
      line = concat(parts) -- a last line without a line end
      break
    end
  end
  self.line = self.line + 1
  if self.line == 1 and sub(line, 1, 3) == "\239\187\191" then line = sub(line, 4) end
  if byte(line, -1) == 13 then line = sub(line, 1, -2) end
  return line
end

-- Stops the reader: this and every later next() give message.
function Reader:_fail(fmt, ...)
  self.failed = format(fmt, ...)
  self.buf, self.pos = "", 1
  return nil, self.failed
end

--- next() -> fields, first_line | nil (end of file) | nil, message
function Reader:next()
  if self.failed then return nil, self.failed end
  local max_field, max_record = _M.MAX_FIELD, _M.MAX_RECORD
  local line, at, rerr
  repeat
    line, at, rerr = self:_read(max_record)
    if line == nil then
      if rerr then return self:_fail("line %d: cannot read %s: %s", at, self.path, tostring(rerr)) end
      if at then return self:_fail("line %d: longer than %d bytes (not a CSV of messages?)", at, max_record) end
      return nil
    end
  until line ~= ""
  local first = self.line
  local used = #line + 1 -- bytes of the record so far, line ends counted
  local fields, n, pos = {}, 0, 1
  local function too_long(at_line)
    return self:_fail("line %d: a field runs past %d bytes (a closing quote missing?)", at_line, max_field)
  end
  while true do
    if n >= _M.MAX_FIELDS then return self:_fail("line %d: more than %d fields", first, _M.MAX_FIELDS) end
    local field_line = self.line
    if byte(line, pos) == 34 then -- a quoted field
      local buf, size = {}, 0
      pos = pos + 1
      while true do
        local q = find(line, '"', pos, true)
        local piece
        if not q then
          piece = sub(line, pos) .. "\n"
        elseif byte(line, q + 1) == 34 then
          piece = sub(line, pos, q) -- up to and with the first quote of ""
        else
          piece = sub(line, pos, q - 1)
        end
        size = size + #piece
        if size > max_field then return too_long(field_line) end
        buf[#buf + 1] = piece
        if not q then
          line, at, rerr = self:_read(max_record - used)
          if line == nil then
            if rerr then return self:_fail("line %d: cannot read %s: %s", at, self.path, tostring(rerr)) end
            if at then
              return self:_fail("line %d: a record runs past %d bytes (to line %d; a closing quote missing?)",
                first, max_record, at)
            end
            return self:_fail("line %d: a quoted field is not closed before the end of the file", first)
          end
          used = used + #line + 1
          pos = 1
        elseif byte(line, q + 1) == 34 then
          pos = q + 2
        else
          pos = q + 1
          break
        end
      end
      n = n + 1
      fields[n] = concat(buf)
      local c = byte(line, pos)
      if c == nil then break end
      if c ~= 44 then
        return self:_fail("line %d: unexpected %q after a closing quote (quotes inside a field are doubled: \"\")",
          self.line, sub(line, pos, pos))
      end
      pos = pos + 1
      if pos > #line then n = n + 1; fields[n] = ""; break end
    else
      local comma = find(line, ",", pos, true)
      local stop = comma and comma - 1 or #line
      if stop - pos + 1 > max_field then return too_long(field_line) end
      n = n + 1
      fields[n] = sub(line, pos, stop)
      if not comma then break end
      pos = comma + 1
    end
  end
  return fields, first
end

--- Closes the file (again is harmless).
function Reader:close()
  if self.f then self.f:close() end
  self.f = nil
end

return _M
