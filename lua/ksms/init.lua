-- ksms: Korean SMS/LMS/MMS and KakaoTalk messages through five providers.
-- The unified client (ksms.client) arrives with the HTTP transport; for now
-- the facade exposes the core's text rules and the version.

local core = require "ksms.core"

local _M = { _VERSION = "0.1.0" }

_M.core = core
_M.errors = require "ksms.errors"

-- Bytes as the providers count them (Hangul 2, ASCII 1).
_M.cp949_len = core.cp949_len
-- true, or nil plus every character the charset lacks with its position.
_M.charset_check = core.charset_check

return _M
