-- ksms.cli.csv: an RFC 4180 CSV reader that streams, one record at a time:
-- a file of any length is never held in memory, only the current record.
--
--   local r = csv.open(path)            -- or nil, err
--   local fields, line = r:next()       -- nil at the end; nil, err on bad CSV
--   r:close()
--
-- Fields are separated by commas; a field in double quotes may hold commas,
-- line breaks and "" (one quote). CRLF or LF line ends; a UTF-8 byte order
-- mark at the start is dropped; blank lines between records are skipped.

local io_open = io.open
local find, sub, byte, format, concat = string.find, string.sub, string.byte, string.format, table.concat
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }

-- A quoted field longer than this is a missing closing quote, not data.
_M.MAX_FIELD = 64 * 1024

local Reader = {}
Reader.__index = Reader

function _M.open(path)
  local f, err = io_open(path, "rb")
  if not f then return nil, err end
  return setmetatable({ f = f, line = 0, path = path }, Reader)
end

function Reader:_read()
  local line = self.f:read("l")
  if line == nil then return nil end
  self.line = self.line + 1
  if self.line == 1 and sub(line, 1, 3) == "\239\187\191" then line = sub(line, 4) end
  if byte(line, -1) == 13 then line = sub(line, 1, -2) end
  return line
end

-- next() -> fields, first_line | nil (end of file) | nil, message
function Reader:next()
  local line
  repeat
    line = self:_read()
    if line == nil then return nil end
  until line ~= ""
  local first = self.line
  local fields, n, pos = {}, 0, 1
  while true do
    if byte(line, pos) == 34 then -- a quoted field
      local buf, size = {}, 0
      pos = pos + 1
      while true do
        local q = find(line, '"', pos, true)
        if not q then
          local piece = sub(line, pos)
          buf[#buf + 1] = piece
          buf[#buf + 1] = "\n"
          size = size + #piece + 1
          if size > _M.MAX_FIELD then
            return nil, format("line %d: a quoted field runs past %d bytes (a closing quote missing?)", first, _M.MAX_FIELD)
          end
          line = self:_read()
          if line == nil then return nil, format("line %d: a quoted field is not closed before the end of the file", first) end
          pos = 1
        elseif byte(line, q + 1) == 34 then
          buf[#buf + 1] = sub(line, pos, q)
          pos = q + 2
        else
          buf[#buf + 1] = sub(line, pos, q - 1)
          pos = q + 1
          break
        end
      end
      n = n + 1
      fields[n] = concat(buf)
      local c = byte(line, pos)
      if c == nil then break end
      if c ~= 44 then
        return nil, format("line %d: unexpected %q after a closing quote (quotes inside a field are doubled: \"\")",
          self.line, sub(line, pos, pos))
      end
      pos = pos + 1
      if pos > #line then n = n + 1; fields[n] = ""; break end
    else
      local comma = find(line, ",", pos, true)
      n = n + 1
      if comma then
        fields[n] = sub(line, pos, comma - 1)
        pos = comma + 1
      else
        fields[n] = sub(line, pos)
        break
      end
    end
  end
  return fields, first
end

function Reader:close()
  if self.f then self.f:close() end
  self.f = nil
end

return _M
