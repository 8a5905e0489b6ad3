--- ksms.cli.output: everything the command writes goes through Out:write,
-- masked (see ksms.secrets): text lines to stdout, notes, errors,
-- --verbose and progress to stderr, JSON documents.
--
--   local out = output.new { json = false, verbose = false }
--   out:secret(value)          -- never print this value
--   out:line("...")            -- stdout
--   out:note("...")            -- stderr
--   out:debug("...")           -- stderr, only with --verbose
--   out:json_doc(tbl)          -- one JSON document on stdout
--   out:write(fh, ...)         -- any file, masked (verbatim pieces excepted)
-- @module ksms.cli.output
-- @alias _M

local cjson = require "cjson"
local core = require "ksms.core"
local secrets = require "ksms.secrets"

local setmetatable, getmetatable, tostring, type, pairs, ipairs, tonumber, select =
  setmetatable, getmetatable, tostring, type, pairs, ipairs, tonumber, select
local format, concat, sort, floor, huge = string.format, table.concat, table.sort, math.floor, math.huge
local gsub, sub, byte, rep = string.gsub, string.sub, string.byte, string.rep
local math_type = math.type -- nil in LuaJIT, where every number is a double
local cp949_len = core.cp949_len
local stdout, stderr = io.stdout, io.stderr

local _M = { _VERSION = "0.2.0" }

-- JSON out: keys sorted (stable output), an empty table as [] (the empty
-- tables ksms returns are lists: numbers, records, unknown rows), strings
-- escaped by cjson (a private instance: the caller's settings stay its
-- own). lua-cjson 2.1.0 has no empty-array setting.
local cjson_encode = cjson.new().encode

-- Bytes a server sent may not be UTF-8, and JSON is: each byte that is not
-- part of a well-formed sequence (a stray continuation byte, an overlong
-- form, a surrogate, a value past U+10FFFF, a cut sequence) becomes
-- U+FFFD, so the document stays JSON and says where bytes were lost.
local REPLACEMENT = "\239\191\189"

-- A lead byte's sequence length, and the range of its second byte.
local function sequence(lead)
  if lead >= 0xC2 and lead <= 0xDF then return 2, 0x80, 0xBF end
  if lead >= 0xE0 and lead <= 0xEF then
    return 3, lead == 0xE0 and 0xA0 or 0x80, lead == 0xED and 0x9F or 0xBF
  end
  if lead >= 0xF0 and lead <= 0xF4 then
    return 4, lead == 0xF0 and 0x90 or 0x80, lead == 0xF4 and 0x8F or 0xBF
  end
  return 0
end

-- run: a byte >= 0x80 and the continuation bytes after it.
local function repair_run(run)
  local n, low, high = sequence(byte(run, 1))
  local second = byte(run, 2)
  if n > 0 and #run >= n and second >= low and second <= high then
    if #run == n then return nil end -- well formed: kept
    return sub(run, 1, n) .. rep(REPLACEMENT, #run - n)
  end
  return rep(REPLACEMENT, #run)
end

--- s with every byte run that is not UTF-8 replaced by U+FFFD.
-- @tparam string s
-- @treturn string
function _M.utf8_repair(s)
  if cp949_len(s) then return s end -- one pass in C: valid, as nearly always
  return (gsub(s, "[\128-\255][\128-\191]*", repair_run))
end

local function json_string(s)
  -- cjson 2.1.0 writes "/" as "\/": valid, but noisy in URLs and paths.
  return (gsub(cjson_encode(_M.utf8_repair(s)), "\\/", "/"))
end

-- Numbers exactly: integers as integers, other floats with the fewest of
-- 15, 16 or 17 significant digits that read back as the same double.
local function number_text(v)
  if v ~= v or v == huge or v == -huge then return "null" end
  if (math_type and math_type(v) == "integer") or (v == floor(v) and v >= -2^53 and v <= 2^53) then
    return format("%d", v)
  end
  for digits = 15, 16 do
    local text = format("%." .. digits .. "g", v)
    if tonumber(text) == v then return text end
  end
  return format("%.17g", v)
end
_M.number_text = number_text

local function encode(v, buf)
  local t = type(v)
  if t == "string" then buf[#buf + 1] = json_string(v)
  elseif t == "number" then buf[#buf + 1] = number_text(v)
  elseif t == "boolean" then buf[#buf + 1] = v and "true" or "false"
  elseif t == "table" then
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if #keys == n then -- a list (or empty)
      buf[#buf + 1] = "["
      for i = 1, n do
        if i > 1 then buf[#buf + 1] = "," end
        encode(v[i], buf)
      end
      buf[#buf + 1] = "]"
    else
      for i, k in ipairs(keys) do keys[i] = tostring(k) end
      sort(keys)
      buf[#buf + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then buf[#buf + 1] = "," end
        buf[#buf + 1] = json_string(k)
        buf[#buf + 1] = ":"
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        encode(x, buf)
      end
      buf[#buf + 1] = "}"
    end
  elseif v == cjson.null then buf[#buf + 1] = "null"
  else buf[#buf + 1] = "null" end
end

--- JSON text of a Lua value (numbers that read back exactly).
-- @param v
-- @treturn string
function _M.encode(v)
  local buf = {}
  encode(v, buf)
  return concat(buf)
end

local Out = {}
Out.__index = Out

--- The command's one output: masks every write.
-- @tparam[opt] table opts json, verbose, stdout, stderr
-- @return an output object
function _M.new(opts)
  opts = opts or {}
  return setmetatable({ json = opts.json and true or false, verbose = opts.verbose and true or false,
    masker = secrets.masker(), stdout = opts.stdout or stdout, stderr = opts.stderr or stderr }, Out)
end

--- Adds a secret to mask in every later write.
-- @tparam string value
function Out:secret(value) self.masker:add(value) end
--- s with every known secret masked.
-- @tparam string s
-- @treturn string
function Out:mask(s) return self.masker:mask(s) end

-- Text the command itself made up, written unmasked by Out:write: the
-- frame of a JSON document written piece by piece (ksms outbox list), which
-- a short secret (a numeric password) must not turn into ******** and so
-- break the document.
local Verbatim = {}
--- Marks text the command made up, written unmasked.
-- @tparam string s
-- @return a verbatim piece
function _M.verbatim(s) return setmetatable({ s }, Verbatim) end

--- The one place the command writes bytes: every piece masked, but the
-- verbatim ones; pieces in a row are masked as one string, so a secret
-- split between them is still found. Flushed at once (a listing reaches its
-- reader line by line).
function Out:write(fh, ...)
  local buf, run = {}, {}
  for i = 1, select("#", ...) do
    local piece = select(i, ...)
    if getmetatable(piece) == Verbatim then
      if #run > 0 then buf[#buf + 1] = self.masker:mask(concat(run)); run = {} end
      buf[#buf + 1] = piece[1]
    else
      run[#run + 1] = tostring(piece)
    end
  end
  if #run > 0 then buf[#buf + 1] = self.masker:mask(concat(run)) end
  fh:write(concat(buf))
  fh:flush()
end

--- Writes a line to stdout, masked.
-- @tparam[opt] string s
function Out:line(s) self:write(self.stdout, s or "", "\n") end

--- Raw (no newline) writes to stderr: the progress bar's redraws.
function Out:raw_err(s) self:write(self.stderr, s) end

--- Writes a line to stderr, masked.
-- @tparam string s
function Out:note(s) self:write(self.stderr, s, "\n") end

--- Writes "ksms: s" to stderr under --verbose only.
-- @param s
function Out:debug(s)
  if self.verbose then self:note("ksms: " .. tostring(s)) end
end

--- A table as compact JSON, masked, on one line.
function Out:encode(tbl)
  return _M.encode(self.masker:mask_tree(tbl))
end

--- Writes one JSON document (a line) to stdout, masked.
-- @tparam table tbl
function Out:json_doc(tbl)
  self:line(self:encode(tbl))
end

--- An error object (or string) as plain fields for JSON.
function _M.error_fields(err)
  if type(err) ~= "table" then return { category = "invalid_input", code = "usage", message = tostring(err) } end
  return { category = err.category, code = err.code ~= nil and tostring(err.code) or nil, message = err.message,
    provider = err.provider, retryable = err.retryable, maybe_sent = err.maybe_sent and true or false,
    partial = err.partial, accepted = err.accepted, description_ko = err.description_ko, chars = err.chars }
end

return _M
