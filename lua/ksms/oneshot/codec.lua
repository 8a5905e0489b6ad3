--- ksms.oneshot.codec: OneShot messages to and from wire bytes, sans-I/O.
--
--   codec.encode(method, body)      -> compact JSON text of the whole message
--   codec.frame(method, body)       -> wire bytes: "Content-Length:N\r\n" .. zlib
--   codec.body_json(method, body)   -> JSON of the body alone (to encrypt)
--   codec.decoder(opts)             -> object whose :feed(bytes) returns the
--                                      complete messages as Lua tables
--
-- body is a table (fields written in the schema's order), a string (an
-- encrypted body) or nil (no Body, as in AliveReq).
-- @module ksms.oneshot.codec
-- @alias _M

local core = require "ksms.core"
local cjson = require "cjson"
local schema = require "ksms.oneshot.schema"

local error, type, setmetatable = error, type, setmetatable
local compiled = schema.compiled
local oneshot_json, oneshot_frame, json_object = core.oneshot_json, core.oneshot_frame, core.json_object
local frame_decoder = core.frame_decoder
local err_mt = core.error_mt

local _M = { _VERSION = "0.2.0" }

-- A private cjson instance so settings here never leak into the caller's.
local json = cjson.new()
json.decode_invalid_numbers(false)
json.decode_max_depth(16)
local json_decode = json.decode

local function schema_for(method, body, level)
  if type(body) ~= "table" then return nil end
  local compiled_keys = compiled[method]
  if not compiled_keys then error("ksms.oneshot.codec: unknown method '" .. tostring(method) .. "'", level) end
  return compiled_keys
end

--- A message's JSON (Header and Body) in the document's field order.
-- @tparam string method
-- @tparam table body
-- @return string, or nil, err
function _M.encode(method, body)
  return oneshot_json(method, body, schema_for(method, body, 3))
end

--- (the schema looked up inline: this runs for every frame written)
function _M.frame(method, body, level)
  if type(body) ~= "table" then return oneshot_frame(method, body, nil, level) end
  return oneshot_frame(method, body, compiled[method] or schema_for(method, body, 3), level)
end

--- A Body's JSON alone, in the document's field order.
-- @tparam string method
-- @tparam table body
-- @return string, or nil, err
function _M.body_json(method, body)
  return json_object(body, schema_for(method, body, 3) or error("ksms.oneshot.codec: body must be a table", 2))
end

local function protocol_error(code, message)
  return setmetatable({
    category = "protocol", code = code, message = message,
    provider = "oneshot", retryable = false,
  }, err_mt)
end

--- Parses one JSON payload into { Header = {...}, Body = ... }.
function _M.decode(payload)
  local ok, msg = pcall(json_decode, payload)
  if not ok then return nil, protocol_error("bad_json", "invalid JSON in frame: " .. tostring(msg)) end
  if type(msg) ~= "table" or type(msg.Header) ~= "table" or type(msg.Header.Method) ~= "string" then
    return nil, protocol_error("bad_message", "frame is not a OneShot message (no Header.Method)")
  end
  return msg
end

local Decoder = {}
Decoder.__index = Decoder

--- decoder:feed(bytes) -> { message, ... } | nil, err
-- Messages that arrived whole before a bad frame are still returned, with
-- the error beside them: { message, ... }, err. Once it fails it stays
-- failed: drop the connection.
function Decoder:feed(bytes)
  if self.failed_err then return nil, self.failed_err end
  local payloads, err = self.frames:feed(bytes)
  if not payloads then
    self.failed_err = err
    return nil, err
  end
  local decode = _M.decode
  local n = #payloads
  for i = 1, n do
    local msg, derr = decode(payloads[i])
    if not msg then
      self.failed_err = derr
      for j = i, n do payloads[j] = nil end
      if i == 1 then return nil, derr end
      return payloads, derr
    end
    payloads[i] = msg
  end
  if err then
    self.failed_err = err
    if n == 0 then return nil, err end
  end
  return payloads, err
end

--- Bytes held back (an incomplete frame).
-- @treturn integer
function Decoder:buffered() return self.frames:buffered() end
--- Frees the decoder's buffers.
function Decoder:close() self.frames:close() end

--- opts: max_frame, max_payload (bytes; 1 MiB each by default)
function _M.decoder(opts)
  return setmetatable({ frames = frame_decoder(opts) }, Decoder)
end

return _M
