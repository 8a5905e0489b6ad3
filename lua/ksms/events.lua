--- ksms.events: the on_event hook every client takes (ksms.client's HTTP
-- providers, ksms.client("oneshot") and ksms.oneshot.session, the nginx
-- binder ksms.ngx.oneshot). The hook is called once per provider
-- operation with one table (docs/metrics.md):
--
--   provider    "senders", "messageme", "ppurio", "cafe24", "oneshot"
--   operation   "send", "send_many" (one event per message of the batch),
--               "balance", "alimtalk", "friendtalk", "report",
--               "sender_numbers", "register_sender", "history"; OneShot
--               also "report", "spam", "change_phone" (pushed by the
--               server), "bind" (each connect and bind attempt) and
--               "disconnect" (a bound connection lost)
--   kind        "sms", "lms", "mms", "alimtalk", ... when known, else nil
--   recipients  a count (never a number: no phone number is in an event)
--   status      "ok" | "failed" | "maybe_sent"
--   category    the error category (ksms.errors) or nil when ok
--   code        the provider's or ksms's code (a long digit run in it is
--               masked to its last four digits; an odd string becomes
--               "other")
--   duration    seconds (monotonic clock) the operation took
--   attempt     1 for HTTP (ksms never resends); OneShot: the MsgSendReq's
--               write count, or the connect attempt since the last bind
--   reconnect   (OneShot "bind" only) true when a bound session came before
--
-- An operation refused before anything was sent (bad input, misuse) is no
-- event. A hook that raises is logged (ngx.log inside nginx, else stderr,
-- at most once a second) and ignored: it never breaks a send.
--
-- @module ksms.events
-- @alias _M

local core = require "ksms.core"

local type, pcall, tostring = type, pcall, tostring
local find, gsub, sub, rep = string.find, string.gsub, string.sub, string.rep
local monotonic = core.monotonic

local _M = { _VERSION = "0.2.0", monotonic = monotonic }

--- status_of(outcome) -> "ok" | "maybe_sent" | "failed"
function _M.status_of(out)
  if type(out) ~= "table" then return "failed" end
  if out.ok then return "ok" end
  if out.maybe_sent then return "maybe_sent" end
  return "failed"
end

--- A code fit for an event (and a metrics label): numbers as they are; a
-- string of at most 32 word characters, with any run of 5 or more digits
-- masked but its last four (a server may put a phone number in a code);
-- any other string "other".
function _M.code_of(code)
  local t = type(code)
  if t == "number" then return code end
  if t ~= "string" then return nil end
  if #code > 32 or find(code, "[^%w_%.%-:]") then return "other" end
  return (gsub(code, "%d%d%d%d%d+", function(run) return rep("*", #run - 4) .. sub(run, -4) end))
end

--- recipients_of(to) -> a count: a list's length, a string's comma-
-- separated numbers, 0 otherwise.
function _M.recipients_of(to)
  if type(to) == "table" then return #to end
  if type(to) == "string" then
    local n = 1
    for _ in to:gmatch(",") do n = n + 1 end
    return n
  end
  return 0
end

local last_logged, unlogged = nil, 0

local NGX_LEVEL = { error = "ERR", warn = "WARN", notice = "NOTICE", info = "INFO" }

-- Where ksms's few log lines go without a logger: ngx.log inside nginx,
-- else stderr.
local function default_log(level, msg)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.log) == "function" and ngx.ERR then
    ngx.log(ngx[NGX_LEVEL[level] or "ERR"], msg)
  else
    io.stderr:write(msg, "\n")
  end
end
_M.default_log = default_log

--- logger(fn) -> log(level, message [, fields]): the `logger` option every
-- client, the OneShot session and the nginx binder take, made safe: fn is
-- called as fn(level, message, fields) with level "error" | "warn" |
-- "notice" | "info", message a masked one-line text and fields a table
-- ({ provider =, event = "callback_error" | "protocol_error" |
-- "bind_refused" | "disconnect" | "hook_error" | "lock_acquired" | ... });
-- a logger that raises is ignored (ksms goes on, silently). Without fn,
-- the default (ngx.log inside nginx, else stderr).
-- @tparam[opt] function fn
-- @treturn function
function _M.logger(fn)
  if fn == nil then return default_log end
  return function(level, message, fields)
    pcall(fn, level, message, fields or {})
  end
end

--- emit(hook, ev [, log]): calls hook(ev) under pcall; a raise is logged
-- through log(level, message) (default: ngx.log or stderr), at most once
-- a second with a count of those left out.
function _M.emit(hook, ev, log)
  if not hook then return end
  local ok, err = pcall(hook, ev)
  if ok then return end
  local now = monotonic()
  if last_logged and now - last_logged < 1 then
    unlogged = unlogged + 1
    return
  end
  local skipped = unlogged
  last_logged, unlogged = now, 0
  ;(log or default_log)("error", "ksms: on_event raised (ignored): " .. tostring(err)
    .. (skipped > 0 and (" (" .. skipped .. " more not logged)") or ""), { event = "hook_error" })
end

--- event(provider, operation, out, duration, kind, recipients, attempt) ->
-- the event table for an outcome (a result or an error object); kind is
-- the outcome's own when it has one.
function _M.event(provider, operation, out, duration, kind, recipients, attempt)
  local ok = type(out) == "table" and out.ok
  return {
    provider = provider, operation = operation,
    kind = (type(out) == "table" and type(out.kind) == "string" and out.kind) or kind,
    recipients = recipients or 0,
    status = _M.status_of(out),
    category = (not ok and type(out) == "table" and out.category) or nil,
    code = type(out) == "table" and _M.code_of(out.code) or nil,
    duration = duration or 0, attempt = attempt or 1,
  }
end

--- check(what, fn [, name]): misuse unless fn (the option name, default
-- on_event) is nil or a function.
function _M.check(what, fn, name)
  if fn ~= nil and type(fn) ~= "function" then
    require("ksms.errors").misuse(what .. ": " .. (name or "on_event") .. " must be a function")
  end
  return fn
end

return _M
