--- ksms.cli.input: text arguments that may come from stdin or a file, and
-- trimming what a file or the command line gives.
-- @module ksms.cli.input
-- @alias _M

local status = require "ksms.cli.status"

local io_open, io_read, error = io.open, io.read, error

local _M = { _VERSION = "0.2.0" }

-- s without leading and trailing white space, in linear time (a file or
-- argv may hold a long run of spaces): the library's one trim.
_M.trim = require("ksms.providers.common").trim

-- Text from "-" (stdin) or a literal; one trailing newline (what echo and
-- editors add) is dropped from stdin and files.
local function chomp(s) return (s:gsub("\r?\n$", "")) end

--- Reads all of stdin, one trailing newline dropped (`--text -`).
-- @treturn string
function _M.stdin()
  return chomp(io_read("*a") or "")
end

--- text(opts, name) -> the --NAME value, or stdin for "-", or --NAME-file.
function _M.text(value, file, flag)
  if value ~= nil and file ~= nil then
    error(status.usage(("give --%s or --%s-file, not both"):format(flag, flag)), 0)
  end
  if value == "-" then return _M.stdin() end
  if file ~= nil then
    local f, err = io_open(file, "rb")
    if not f then error(status.usage(("--%s-file: %s"):format(flag, err)), 0) end
    local s = f:read("*a")
    f:close()
    return chomp(s)
  end
  return value
end

--- Returns value, or raises a usage error (exit 2) naming what is missing.
-- @param value
-- @tparam string what
-- @return value
function _M.need(value, what)
  if value == nil or value == "" then error(status.usage(what), 0) end
  return value
end

return _M
