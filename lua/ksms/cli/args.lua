--- ksms.cli.args: command-line flags to a table, from a declared list.
--
--   local opts, positionals = args.parse(argv, first, flags)   -- or nil, err
--
-- flags: list of { name = "dry-run", kind = "bool" | "string" | "number" |
--   "list" | "multi", arg = "NAME", help = "..." }. "list" is repeatable and
-- splits on commas (--to a,b --to c); "multi" is repeatable, kept whole
-- (--opt k=v). Accepted: --name value, --name=value, -- (ends the flags),
-- "-" as a positional (stdin). Keys in opts use underscores: opts.dry_run.
-- @module ksms.cli.args
-- @alias _M

local trim = require("ksms.cli.input").trim
local closest = require("ksms.errors").closest

local type, ipairs, tonumber = type, ipairs, tonumber
local format, sub, find, gsub = string.format, string.sub, string.find, string.gsub

local _M = { _VERSION = "0.2.0" }

local function key_of(name) return (gsub(name, "%-", "_")) end
_M.key_of = key_of

local function index(flags)
  local by_name = {}
  for _, f in ipairs(flags) do
    by_name[f.name] = f
    if f.short then by_name[f.short] = f end
  end
  return by_name
end

-- The closest flag name, for "did you mean" (the library's own rule,
-- ksms.errors.closest, as for client options).
local function suggest(name, flags)
  local names = {}
  for _, f in ipairs(flags) do names[#names + 1] = f.name end
  return closest(name, names)
end
_M.suggest = suggest

--- "unknown option --x (did you mean --y?)": the name only, never a value.
function _M.unknown_option(a, flags)
  local name = a:match("^%-%-?([^=]*)")
  local hint = name and suggest(name, flags)
  return format("unknown option %s%s", a:match("^[^=]*"), hint and (" (did you mean --" .. hint .. "?)") or "")
end

--- The first argument before the command that names no flag, or nil.
function _M.first_unknown(argv, flags)
  local by_name = index(flags)
  for _, a in ipairs(argv) do
    if a == "--" then return nil end
    if sub(a, 1, 1) == "-" and a ~= "-" and not by_name[a:match("^%-%-?([^=]+)") or ""] then return a end
  end
  return nil
end

local function split_commas(value, into)
  for item in (value .. ","):gmatch("([^,]*),") do
    item = trim(item)
    if item ~= "" then into[#into + 1] = item end
  end
end

--- parse(argv, first, flags) -> opts, positionals | nil, message
function _M.parse(argv, first, flags)
  local by_name = index(flags)
  local opts, positionals = {}, {}
  local i, only_positionals = first or 1, false
  while argv[i] ~= nil do
    local a = argv[i]
    if only_positionals or a == "-" or sub(a, 1, 1) ~= "-" then
      positionals[#positionals + 1] = a
    elseif a == "--" then
      only_positionals = true
    else
      local name, value = a:match("^%-%-?([^=]+)=(.*)$")
      if not name then name = a:match("^%-%-?(.+)$") end
      local f = by_name[name]
      -- The name only: "--api-kye=SECRET" must not print the secret.
      if not f then return nil, _M.unknown_option(a, flags) end
      local key = key_of(f.name)
      if f.kind == "bool" then
        if value ~= nil then
          if value == "true" or value == "yes" or value == "1" then opts[key] = true
          elseif value == "false" or value == "no" or value == "0" then opts[key] = false
          else return nil, format("--%s takes no value (or true/false), got %q", f.name, value) end
        else
          opts[key] = true
        end
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, format("--%s needs a value (%s)", f.name, f.arg or "VALUE") end
        end
        if f.kind == "number" then
          local n = tonumber(value)
          if not n then return nil, format("--%s needs a number, got %q", f.name, value) end
          opts[key] = n
        elseif f.kind == "list" then
          opts[key] = opts[key] or {}
          split_commas(value, opts[key])
        elseif f.kind == "multi" then
          opts[key] = opts[key] or {}
          opts[key][#opts[key] + 1] = value
        else
          opts[key] = value
        end
      end
    end
    i = i + 1
  end
  return opts, positionals
end

--- The first positional argument that is not the value of a flag: the
-- command name, wherever the global flags are.
function _M.find_command(argv, flags)
  local by_name = index(flags)
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--" then return argv[i + 1], i + 1 end
    if a == "-" or sub(a, 1, 1) ~= "-" then return a, i end
    if not find(a, "=", 1, true) then
      local f = by_name[a:match("^%-%-?(.+)$")]
      if f and f.kind ~= "bool" then i = i + 1 end
    end
    i = i + 1
  end
  return nil
end

--- argv without the element at position `at`.
function _M.without(argv, at)
  local out = {}
  for i = 1, #argv do if i ~= at then out[#out + 1] = argv[i] end end
  return out
end

return _M
