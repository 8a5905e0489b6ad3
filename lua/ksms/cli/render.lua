--- ksms.cli.render: how a command's outcome is shown (text or --json) and
-- which exit code it gives. Results and errors go through the masker.
-- @module ksms.cli.render
-- @alias _M

local output = require "ksms.cli.output"
local status = require "ksms.cli.status"
local dryrun = require "ksms.cli.dryrun"
local schedule = require "ksms.rules.schedule"

local type, ipairs, tostring, pairs = type, ipairs, tostring, pairs
local format, concat, upper = string.format, table.concat, string.upper

local _M = { _VERSION = "0.2.0" }

--- A result as plain data for JSON: without the raw answer unless asked.
function _M.result_fields(res)
  local r = {}
  for k, v in pairs(res) do if type(v) ~= "function" then r[k] = v end end
  if r.reserved_at then r.reserved_at_kst = schedule.format(r.reserved_at, "YYYY-MM-DD hh:mm:ss") end
  return r
end

--- Prints a ksms error (text: stderr; JSON: stdout) and returns the exit code.
function _M.error(ctx, what, err, sent)
  local code = status.for_error(err, sent)
  local out = ctx.out
  if out.json then
    out:json_doc({ ok = false, command = what, exit_code = code, error = output.error_fields(err) })
  else
    out:note(format("ksms: %s failed: %s", what, tostring(err)))
    if type(err) == "table" then
      if err.accepted and #err.accepted > 0 then
        out:note("ksms: accepted recipients: " .. concat(err.accepted, ", "))
      end
      if err.maybe_sent then
        out:note("ksms: the provider may have accepted it; check its history before sending again")
      elseif code == status.NOT_SENT then
        out:note("ksms: nothing was sent (it failed before the request left); safe to retry")
      end
    end
  end
  return code
end

--- Prints what a dry run recorded (HTTP requests or OneShot frames).
function _M.dry_requests(ctx, h, extra)
  local out = ctx.out
  local list = {}
  for i, req in ipairs(h.recorded) do list[i] = dryrun.describe(req, h.name) end
  if out.json then
    local doc = { ok = true, dry_run = true, provider = h.name, requests = list }
    for k, v in pairs(extra or {}) do doc[k] = v end
    out:json_doc(doc)
  else
    for i, d in ipairs(list) do
      if i > 1 then out:line("") end
      out:line(dryrun.render(d))
    end
    out:note(format("ksms: dry run: %d request%s to %s, nothing sent", #list, #list == 1 and "" or "s", h.name))
  end
  return status.OK
end

--- Prints a dry run's OneShot frames (text or --json).
-- @param ctx
-- @param h the provider handle
-- @tparam table frames
function _M.dry_frames(ctx, h, frames)
  local out = ctx.out
  if out.json then
    local list = {}
    for i, f in ipairs(frames) do list[i] = f.body end
    out:json_doc({ ok = true, dry_run = true, provider = h.name, host = h.options.host, port = h.options.port,
      method = "MsgSendReq", frames = list })
  else
    out:line(format("# OneShot %s:%s, bound as %s; each frame Content-Length + zlib on the wire%s",
      tostring(h.options.host), tostring(h.options.port), tostring(h.options.id),
      h.options.encrypted and "; bodies AES-encrypted" or ""))
    for _, f in ipairs(frames) do out:line(f.json) end
    out:note(format("ksms: dry run: %d MsgSendReq, nothing sent", #frames))
  end
  return status.OK
end

--- One line about a send's result.
function _M.sent_line(res, via)
  local parts = { "sent" }
  if res.kind then parts[#parts + 1] = upper(tostring(res.kind)) end
  if res.bytes then parts[#parts + 1] = format("(%d bytes)", res.bytes) end
  if res.recipients then parts[#parts + 1] = format("to %d recipient%s", res.recipients, res.recipients == 1 and "" or "s") end
  parts[#parts + 1] = "via " .. via
  local s = concat(parts, " ")
  if res.code ~= nil then
    local code = res.code
    if type(code) == "number" and code % 1 == 0 then code = format("%d", code) end
    s = s .. format(": %s%s", tostring(code), res.description and (" " .. res.description) or "")
  end
  if res.test then s = s .. " (test mode: nothing delivered)" end
  return s
end

--- Prints a successful result (text lines or one --json document).
-- @param ctx
-- @tparam string what
-- @tparam table res
-- @tparam[opt] table lines
function _M.ok(ctx, what, res, lines)
  local out = ctx.out
  if out.json then
    local doc = _M.result_fields(res)
    doc.command = what
    out:json_doc(doc)
  else
    for _, l in ipairs(lines) do out:line(l) end
  end
  return status.OK
end

return _M
