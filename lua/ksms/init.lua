--- ksms: Korean SMS/LMS/MMS and KakaoTalk messages through five providers.
--
--   local client = ksms.client("senders", { api_key = ... })
--   local res, err = client:send{ to = "010-1234-5678", from = "02-123-4567", text = "안녕하세요" }
-- @module ksms
-- @alias _M

local core = require "ksms.core"

local _M = { _VERSION = "0.2.0" }

_M.core = core
_M.errors = require "ksms.errors"

--- ksms.router{ routes, policy, fail_over } -> a router (see ksms.router)
-- @tparam table opts
function _M.router(opts)
  return require("ksms.router").new(opts)
end

--- ksms.client(provider, options) -> client (see ksms.client)
function _M.client(provider, options)
  return require("ksms.client").new(provider, options)
end

-- Bytes as the providers count them (Hangul 2, ASCII 1).
_M.cp949_len = core.cp949_len
-- true, or nil plus every character the charset lacks with its position.
_M.charset_check = core.charset_check

return _M
