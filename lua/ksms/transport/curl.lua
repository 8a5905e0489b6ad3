--- ksms.transport.curl: the libcurl transport (see ksms.transport for the
-- interface). The core's http client already has the interface's methods
-- (request, request_many, close, __gc, __close), so this returns it as is:
-- no wrapper between the caller and C.
-- @module ksms.transport.curl
-- @alias _M

local http_client = require("ksms.core").http_client

local _M = { _VERSION = "0.2.0" }

--- new(opts) -> transport; opts as in ksms.transport.
function _M.new(opts)
  return http_client(opts)
end

return _M
