--- ksms.cli.bulk_rows: the rows of a bulk CSV, read twice, streaming.
-- scan() is the first pass: the CSV's syntax, the phone column, every
-- {placeholder} and the template's fixed text against the provider's rules,
-- and the number of rows, so a bad file sends nothing. reader() is the
-- second: one entry per row, its message built, or why the row cannot be
-- sent (the recipient is empty or no phone number).
--
--   local info = bulk_rows.scan(path, opts, limits)     -- raises usage errors
--   local r = bulk_rows.reader(path, info, { from =, kind =, ad = })
--   local e, err = r:next()   -- { row =, to =, msg = } | { row =, to =, bad = } | nil [, err]
--   r:close()
-- @module ksms.cli.bulk_rows
-- @alias _M

local csv = require "ksms.cli.csv"
local template = require "ksms.cli.template"
local input = require "ksms.cli.input"
local status = require "ksms.cli.status"
local core = require "ksms.core"
local phone = require "ksms.rules.phone"
local text_rules = require "ksms.rules.text"

local ipairs, pairs, pcall, error, tostring, type, setmetatable = ipairs, pairs, pcall, error, tostring, type, setmetatable
local format, concat, sub, upper = string.format, table.concat, string.sub, string.upper
local trim = input.trim

local _M = { _VERSION = "0.2.0" }

local function usage(msg) error(status.usage(msg), 0) end

-- The template's fixed text (template.compile) checked against the
-- provider's rules (ksms.rules.text, the limits of ksms.client.info):
-- what no row's fields can mend stops the run before the first row.
local function check_fixed(flag, source, fixed, limits, kind, subject)
  local parts = {}
  for i, seg in ipairs(fixed) do
    parts[i] = seg.text
    local ok, bad = core.charset_check(seg.text, limits.charset)
    if not ok and type(bad) == "table" and bad[1] then
      local before = text_rules.chars(sub(source, 1, seg.at - 1))
      local named = {}
      for j, b in ipairs(bad) do named[j] = format("'%s' at %d", b.char, before + b.pos) end
      usage(format("%s: the template has characters %s cannot carry: %s (nothing was sent)", flag,
        upper(limits.charset), concat(named, ", ")))
    end
  end
  local constant = concat(parts)
  local bytes = core.cp949_len(constant) or 0
  if bytes == 0 then return end
  if subject then
    if limits.subject and bytes > limits.subject then
      usage(format("%s: the template's fixed text alone is %d bytes; the subject takes at most %d (nothing was sent)",
        flag, bytes, limits.subject))
    end
    return
  end
  local ok, chosen, err = pcall(text_rules.choose_kind, constant, kind or "auto", false, limits)
  if ok and not chosen and err and (err.code == "too_long" or err.code == "kind") then
    usage(format("%s: the template's fixed text alone: %s (nothing was sent)", flag, tostring(err.message)))
  end
end

--- Pass 1: the header, the templates, and the number of rows; a usage
-- error (exit 2) for anything that would stop the run.
-- @tparam string path the CSV
-- @tparam table o the command's options (text, text_file, subject, kind, phone_column)
-- @tparam table limits the provider's (ksms.client.info(name).limits)
-- @treturn table header, header_line, phone_index, render_text, render_subject, total, text
function _M.scan(path, o, limits)
  local r, err = csv.open(path)
  if not r then usage("cannot read " .. path .. ": " .. tostring(err)) end
  local header, herr = r:next()
  if not header then r:close(); usage(path .. ": " .. (herr or "the file is empty (a header row is needed)")) end
  local columns, cerr = template.columns(header)
  if not columns then r:close(); usage(path .. ": " .. cerr) end
  local phone_column = o.phone_column or "phone"
  local phone_index = columns[phone_column]
  if not phone_index then
    r:close()
    usage(format("%s: no column %q (use --phone-column NAME; columns: %s)", path, phone_column, concat(header, ", ")))
  end
  local text = input.text(o.text, o.text_file, "text")
  if text == nil or text == "" then r:close(); usage("give the message template: --text TEXT (with {column} placeholders)") end
  local render_text, fixed = template.compile(text, columns)
  if not render_text then r:close(); usage("--text: " .. fixed) end
  local ok, cerr = pcall(check_fixed, "--text", text, fixed, limits, o.kind)
  if not ok then r:close(); error(cerr, 0) end
  local render_subject
  if o.subject then
    render_subject, fixed = template.compile(o.subject, columns)
    if not render_subject then r:close(); usage("--subject: " .. fixed) end
    ok, cerr = pcall(check_fixed, "--subject", o.subject, fixed, limits, nil, true)
    if not ok then r:close(); error(cerr, 0) end
  end
  local total = 0
  while true do
    local fields, ferr = r:next()
    if not fields then
      if ferr then r:close(); usage(format("%s: %s (nothing was sent)", path, ferr)) end
      break
    end
    total = total + 1
  end
  r:close()
  return { header = header, header_line = concat(header, ","), phone_index = phone_index,
    render_text = render_text, render_subject = render_subject, total = total, text = text }
end

--- An error as "category code: message".
-- @param err an error object or a string
-- @treturn string
local function error_detail(err)
  if type(err) ~= "table" then return tostring(err) end
  return format("%s %s: %s", tostring(err.category), tostring(err.code), tostring(err.message))
end

_M.error_detail = error_detail

-- Why a recipient cannot be sent to, or nil: such rows are never stored.
local function bad_number(to)
  if to == "" then return "invalid_input no_phone: the phone column is empty" end
  local ok, err = phone.normalize(to, "to")
  if ok then return nil end
  return error_detail(err)
end

local Reader = {}
Reader.__index = Reader

--- The second pass: a reader of the rows, each with its message built.
-- @tparam string path the CSV
-- @tparam table info what scan returned
-- @tparam table opts from, kind, ad (the advertising fields every row's
--   message gets: ksms.cli.ad.fields)
-- @return a reader, or nil, err
function _M.reader(path, info, opts)
  local r, err = csv.open(path)
  if not r then return nil, "cannot read " .. path .. ": " .. tostring(err) end
  r:next() -- the header
  return setmetatable({ r = r, path = path, info = info, from = opts.from, kind = opts.kind, ad = opts.ad, row = 0 }, Reader)
end

--- The next row: { row, to, msg } or { row, to, bad = why }; nil at the
-- end, or nil, message when the file changed since the first pass.
function Reader:next()
  local fields, ferr = self.r:next()
  if not fields then
    -- The first pass read the file cleanly: it changed since.
    if ferr then return nil, format("%s: %s (the file changed while sending)", self.path, ferr) end
    return nil
  end
  self.row = self.row + 1
  local info = self.info
  local to = trim(fields[info.phone_index] or "")
  local bad = bad_number(to)
  if bad then return { row = self.row, to = to, bad = bad } end
  local msg = { to = to, from = self.from, text = info.render_text(fields) }
  if info.render_subject then msg.subject = info.render_subject(fields) end
  if self.kind then msg.kind = self.kind end
  if self.ad then
    for k, v in pairs(self.ad) do msg[k] = v end
  end
  return { row = self.row, to = to, msg = msg }
end

--- Closes the file.
function Reader:close() self.r:close() end

return _M
