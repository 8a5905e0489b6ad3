--- ksms.cli.template: "{column}" placeholders in a bulk message, filled from
-- each CSV row. "{{" and "}}" stand for literal braces. Compiled once into
-- pieces, so rendering a row is one table.concat.
--
--   local render, err = template.compile("{name}님, {item} 발송", columns)
--   render(fields) -> "홍길동님, 책 발송"
-- @module ksms.cli.template
-- @alias _M

local trim = require("ksms.cli.input").trim

local find, sub, format, concat = string.find, string.sub, string.format, table.concat
local ipairs, pairs = ipairs, pairs

local _M = { _VERSION = "0.2.0" }

--- compile(text, columns) -> render, fixed | nil, message. columns:
-- { name -> index }. fixed: the template's constant text, as a list of
-- { text = s, at = byte position in the template } (what every row sends
-- whatever its fields: bulk checks it before the first row).
function _M.compile(text, columns)
  local pieces, slots, fixed = {}, {}, {}
  local pos, literal = 1, {}
  local function keep(s, at) if s ~= "" then fixed[#fixed + 1] = { text = s, at = at } end end
  while true do
    local a = find(text, "[{}]", pos)
    if not a then
      literal[#literal + 1] = sub(text, pos)
      keep(sub(text, pos), pos)
      break
    end
    literal[#literal + 1] = sub(text, pos, a - 1)
    keep(sub(text, pos, a - 1), pos)
    local c, nxt = sub(text, a, a), sub(text, a + 1, a + 1)
    if c == nxt then -- {{ or }}
      literal[#literal + 1] = c
      keep(c, a)
      pos = a + 2
    elseif c == "}" then
      return nil, format("a lone '}' at character %d (write }} for a literal brace)", a)
    else
      local close = find(text, "}", a + 1, true)
      if not close then return nil, format("'{' at character %d is not closed (write {{ for a literal brace)", a) end
      local name = trim(sub(text, a + 1, close - 1))
      local index = columns[name]
      if not index then
        local names = {}
        for k in pairs(columns) do names[#names + 1] = k end
        table.sort(names)
        return nil, format("placeholder {%s} is not a column (columns: %s)", name, concat(names, ", "))
      end
      pieces[#pieces + 1] = concat(literal)
      literal = {}
      pieces[#pieces + 1] = false
      slots[#pieces] = index
      pos = close + 1
    end
  end
  pieces[#pieces + 1] = concat(literal)
  local n = #pieces
  return function(fields)
    local out = {}
    for i = 1, n do
      local idx = slots[i]
      if idx then out[i] = fields[idx] or "" else out[i] = pieces[i] end
    end
    return concat(out)
  end, fixed
end

--- The column indexes of a header row: { name -> index }, or nil, message.
function _M.columns(header)
  local columns = {}
  for i, name in ipairs(header) do
    name = trim(name)
    if columns[name] then return nil, format("column %q appears twice in the header", name) end
    columns[name] = i
  end
  return columns
end

return _M
