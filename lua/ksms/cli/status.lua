--- ksms.cli.status: the command's exit codes, and which one an error means.
--
--   0  success
--   1  the provider refused (auth, balance, caller number, ...), a check
--      found text a provider cannot carry, or some bulk rows failed
--   2  usage or invalid input: nothing was sent
--   3  network, timeout or unknown outcome: the message may have been sent
--      (bulk: rows whose outcome is unknown)
--   4  network failure before anything left: not sent, safe to retry
--      (DNS, connect refused, TLS handshake, connect timeout, OneShot not
--      connected; bulk: the only failures were of this kind)
-- @module ksms.cli.status
-- @alias _M

local type, tonumber, setmetatable, getmetatable, require = type, tonumber, setmetatable, getmetatable, require

local _M = { _VERSION = "0.2.0" }

_M.OK, _M.REFUSED, _M.USAGE, _M.UNKNOWN, _M.NOT_SENT = 0, 1, 2, 3, 4

local UNCERTAIN = { network = true, timeout = true, protocol = true, unknown = true }
_M.UNCERTAIN = UNCERTAIN

-- The codes of a failure before the request was written (ksms.transport:
-- maybe_sent is false only for these; OneShot's not_connected: a message
-- never written because no connection came).
local CONNECT_PHASE = { dns = true, connect = true, tls = true, timeout = true, not_connected = true }
_M.CONNECT_PHASE = CONNECT_PHASE

--- not_sent(err [, sent]) -> true when nothing left, for certain: the
-- category is network or timeout, the code a connect-phase one, no part
-- was accepted, and maybe_sent is false -- or absent while the caller saw
-- nothing leave (sent == false: OneShot's connect error, raised before a
-- session existed, does not say maybe_sent).
function _M.not_sent(err, sent)
  if type(err) ~= "table" or err.partial then return false end
  if err.category ~= "network" and err.category ~= "timeout" then return false end
  if CONNECT_PHASE[err.code] ~= true then return false end
  return err.maybe_sent == false or (err.maybe_sent == nil and sent == false)
end

-- An error raised by the command itself: a usage mistake (exit 2).
local Usage = {}
Usage.__index = Usage
Usage.__tostring = function(u) return u.message end

--- A usage error (exit 2), raised with error().
-- @tparam string message
-- @treturn table
function _M.usage(message)
  return setmetatable({ message = message, exit = _M.USAGE }, Usage)
end

--- Whether v is a usage error.
-- @param v
-- @treturn boolean
function _M.is_usage(v) return getmetatable(v) == Usage end

--- The exit code for a ksms error. sent: whether any request left (HTTP:
-- counted by the transport). For a session provider (OneShot,
-- capabilities.session) the error itself tells: the server answered with
-- a number.
function _M.for_error(err, sent)
  if type(err) ~= "table" then return _M.USAGE end
  if _M.not_sent(err, sent and true or false) then return _M.NOT_SENT end
  if err.maybe_sent or UNCERTAIN[err.category] then return _M.UNKNOWN end
  local info = type(err.provider) == "string" and require("ksms.client").info(err.provider)
  if info and info.capabilities.session then sent = tonumber(err.code) ~= nil end
  if sent then return _M.REFUSED end
  return _M.USAGE
end

return _M
