--- ksms.cli.config: a provider's client options from three places, in order
-- of precedence: command-line flags, environment variables
-- KSMS_<PROVIDER>_<OPTION>, and the config file (--config PATH, default
-- $XDG_CONFIG_HOME/ksms/config or ~/.config/ksms/config), an INI file:
--
--   [default]            ; optional: the provider and caller number to use
--   provider = senders
--   from = 02-1234-5678
--
--   [senders]
--   api_key = ...
--   base_url = http://127.0.0.1:8080
--
-- Values are converted to the option's type (numbers, booleans).
-- @module ksms.cli.config
-- @alias _M

local trim = require("ksms.cli.input").trim

local type, pairs, ipairs, tonumber, tostring = type, pairs, ipairs, tonumber, tostring
local format, upper, lower, concat, sort = string.format, string.upper, string.lower, table.concat, table.sort
local getenv, io_open = os.getenv, io.open

local _M = { _VERSION = "0.2.0" }

local client = require "ksms.client"

-- The option types a config file, an environment variable or a flag can
-- give (a transport object, a clock or a callback cannot), and the type
-- it is read as: rate is a number or a table, and from text a number.
local SCALAR = { string = "string", number = "number", boolean = "boolean", ["number|table"] = "number" }

-- Every client option of every provider with its type, as the library
-- declares them (ksms.client.info: ksms.client's own and each adapter's;
-- the OneShot session's and protocol's), the scalar ones.
_M.OPTIONS, _M.REQUIRED = {}, {}
_M.PROVIDERS = client.names
for _, name in ipairs(client.names) do
  local info = client.info(name)
  local opts = {}
  for k, t in pairs(info.options) do if SCALAR[t] then opts[k] = SCALAR[t] end end
  _M.OPTIONS[name], _M.REQUIRED[name] = opts, info.required
end

-- Options every provider section may also hold: command defaults.
local CLI_KEYS = { from = "string" }

--- Every option name, sorted: the command's provider flags.
function _M.all_option_names()
  local seen, names = {}, {}
  for _, opts in pairs(_M.OPTIONS) do
    for k in pairs(opts) do
      if not seen[k] then seen[k] = true; names[#names + 1] = k end
    end
  end
  sort(names)
  return names
end

--- The type ("string", "number", "boolean") of a provider's client option or a CLI key, nil if unknown.
-- @tparam string provider
-- @tparam string name
-- @treturn ?string
function _M.option_type(provider, name)
  local opts = _M.OPTIONS[provider]
  return opts and opts[name] or CLI_KEYS[name]
end

--- A string value to the option's type; nil, message when it does not fit.
function _M.convert(provider, name, value)
  if type(value) ~= "string" then return value end
  local t = _M.option_type(provider, name) or "string"
  if t == "number" then
    local n = tonumber(value)
    if not n then return nil, format("%s must be a number, got %q", name, value) end
    return n
  elseif t == "boolean" then
    local v = lower(value)
    if v == "1" or v == "true" or v == "yes" or v == "on" then return true end
    if v == "0" or v == "false" or v == "no" or v == "off" or v == "" then return false end
    return nil, format("%s must be true or false, got %q", name, value)
  end
  return value
end

--- The config file read without --config: $XDG_CONFIG_HOME/ksms/config, else ~/.config/ksms/config.
-- @treturn ?string
function _M.default_path()
  local xdg = getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg .. "/ksms/config" end
  local home = getenv("HOME")
  if home and home ~= "" then return home .. "/.config/ksms/config" end
  return nil
end

--- Reads an INI file: { [section] = { key = { value =, line = } } }, or
-- nil, message. A missing file is nil, nil (the default file is optional).
function _M.read_ini(path)
  local f = io_open(path, "r")
  if not f then return nil, nil end
  local sections, current, n = {}, nil, 0
  for line in f:lines() do
    n = n + 1
    line = line:gsub("\r$", "")
    local trimmed = trim(line)
    if trimmed == "" or trimmed:find("^[#;]") then
      -- comment or blank
    elseif trimmed:find("^%[") then
      local name = trimmed:match("^%[%s*([%w_%-]+)%s*%]$")
      if not name then f:close(); return nil, format("%s:%d: bad section header %q", path, n, trimmed) end
      current = lower(name)
      sections[current] = sections[current] or {}
    else
      local k, v = trimmed:match("^([%w_%-%.]+)%s*=%s*(.-)$")
      if not k then f:close(); return nil, format("%s:%d: expected key = value", path, n) end
      local quoted = v:match('^"(.*)"$') or v:match("^'(.*)'$")
      if quoted then v = quoted end
      local section = current or "default"
      sections[section] = sections[section] or {}
      sections[section][lower(k):gsub("%-", "_")] = { value = v, line = n }
    end
  end
  f:close()
  return sections
end

--- Loads the config file: explicit path (must exist) or the default one.
function _M.load(path)
  local explicit = path ~= nil
  path = path or _M.default_path()
  if not path then return { sections = {}, path = nil } end
  local sections, err = _M.read_ini(path)
  if not sections then
    if err then return nil, err end
    if explicit then return nil, format("config file %s cannot be read", path) end
    return { sections = {}, path = nil }
  end
  return { sections = sections, path = path }
end

--- The option names in the file's sections that hold secrets (api_key,
-- password, ...: ksms.secrets), "section.name" each; empty when none.
function _M.secret_keys(conf)
  local found = {}
  for section, entries in pairs(conf.sections or {}) do
    for k in pairs(entries) do
      if require("ksms.secrets").is_secret(k) then found[#found + 1] = section .. "." .. k end
    end
  end
  sort(found)
  return found
end

--- The permission bits of a file as octal digits ("600"), or nil when stat
-- cannot tell. The path goes to the shell single-quoted.
function _M.file_mode(path)
  local quoted = "'" .. (path:gsub("'", "'\\''")) .. "'"
  local p = io.popen("stat -c %a " .. quoted .. " 2>/dev/null")
  if not p then return nil end
  local mode = p:read("*l")
  p:close()
  if mode and mode:match("^%d%d%d%d?$") then return mode end
  return nil
end

--- A warning when a config file with secrets is readable by group or others
-- (nil when it is not, or the mode is unknown).
function _M.permission_warning(conf)
  if not conf.path then return nil end
  local keys = _M.secret_keys(conf)
  if #keys == 0 then return nil end
  local mode = _M.file_mode(conf.path)
  if not mode then return nil end
  local group, others = tonumber(mode:sub(-2, -2)), tonumber(mode:sub(-1))
  if group < 4 and others < 4 then return nil end
  return format("ksms: warning: %s holds secrets (%s) and is readable by %s (mode %s); chmod 600 %s",
    conf.path, concat(keys, ", "), (group >= 4 and others >= 4) and "group and others" or (group >= 4 and "its group" or "others"),
    mode, conf.path)
end

local function env_name(provider, name)
  return "KSMS_" .. upper(provider) .. "_" .. upper(name)
end
_M.env_name = env_name

--- The provider to use: --provider, KSMS_PROVIDER, [default] provider.
function _M.provider(flag_value, conf)
  if flag_value and flag_value ~= "" then return flag_value, "--provider" end
  local e = getenv("KSMS_PROVIDER")
  if e and e ~= "" then return e, "KSMS_PROVIDER" end
  local d = conf.sections.default
  if d and d.provider then return d.provider.value, conf.path .. " [default]" end
  return nil
end

--- resolve(provider, flag_options, conf) -> options, sources | nil, message
-- flag_options: { name = value } from the command line (already typed or
-- strings). sources[name] says where each value came from (never the value).
function _M.resolve(provider, flag_options, conf)
  local known = _M.OPTIONS[provider]
  if not known then
    return nil, format("unknown provider %q (known: %s)", tostring(provider), concat(_M.PROVIDERS, ", "))
  end
  local options, sources = {}, {}
  local section = conf.sections[provider] or {}
  for k, entry in pairs(section) do
    if not known[k] and not CLI_KEYS[k] then
      return nil, format("%s:%d: %s takes no option %q", conf.path, entry.line, provider, k)
    end
    local v, err = _M.convert(provider, k, entry.value)
    if v == nil then return nil, format("%s:%d: %s", conf.path, entry.line, err) end
    options[k], sources[k] = v, format("%s [%s]", conf.path, provider)
  end
  local default = conf.sections.default
  if default and default.from and options.from == nil then
    options.from, sources.from = default.from.value, conf.path .. " [default]"
  end
  for k in pairs(known) do
    local e = getenv(env_name(provider, k))
    if e ~= nil then
      local v, err = _M.convert(provider, k, e)
      if v == nil then return nil, env_name(provider, k) .. ": " .. err end
      options[k], sources[k] = v, env_name(provider, k)
    end
  end
  local from_env = getenv(env_name(provider, "from")) or getenv("KSMS_FROM")
  if from_env and from_env ~= "" then
    options.from, sources.from = from_env, getenv(env_name(provider, "from")) and env_name(provider, "from") or "KSMS_FROM"
  end
  for k, v in pairs(flag_options) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      sort(names)
      return nil, format("%s takes no option %q (it takes: %s)", provider, k, concat(names, ", "))
    end
    local cv, err = _M.convert(provider, k, v)
    if cv == nil then return nil, err end
    options[k], sources[k] = cv, "command line"
  end
  return options, sources
end

--- Names of required options still missing, with where to give them.
function _M.missing(provider, options)
  local missing = {}
  for _, k in ipairs(_M.REQUIRED[provider] or {}) do
    if options[k] == nil or options[k] == "" then missing[#missing + 1] = k end
  end
  if #missing == 0 then return nil end
  local how = {}
  for i, k in ipairs(missing) do
    how[i] = format("--%s or %s", k:gsub("_", "-"), env_name(provider, k))
  end
  return format("%s needs %s: give %s, or put them under [%s] in %s", provider, concat(missing, ", "),
    concat(how, "; "), provider, _M.default_path() or "the config file")
end

return _M
