-- ksms.cli.dryrun: --dry-run. A recording transport takes the place of
-- libcurl (ksms.client(provider, { transport = recorder })): the adapters
-- build their requests as always, the recorder keeps them and answers each
-- with an error, so nothing leaves the machine. For OneShot, the MsgSendReq
-- a session would write is built by the protocol without connecting.
--
--   local rec = dryrun.recorder(function(req) ... end)
--   dryrun.is_dry(err)                 -> the outcome of a recorded request
--   dryrun.describe(req, provider)     -> { method, url, headers, body, fields }
--   dryrun.oneshot_frames(options, msgs) -> { { json =, body = }, ... } | nil, err

local core = require "ksms.core"
local errors = require "ksms.errors"
local secrets = require "ksms.secrets"

local type, ipairs, pairs, tostring, pcall = type, ipairs, pairs, tostring, pcall
local format, concat, sort = string.format, table.concat, table.sort

local _M = { _VERSION = "0.1.0" }

local function dry_error()
  return errors.new { category = "invalid_input", code = "dry_run", provider = "ksms",
    message = "dry run: not sent", maybe_sent = false }
end

-- A transport (request, request_many, close) that sends nothing.
function _M.recorder(sink)
  local r = { count = 0 }
  function r.request(_, req)
    r.count = r.count + 1
    sink(req)
    return nil, dry_error()
  end
  function r.request_many(_, reqs)
    local outs = {}
    for i, req in ipairs(reqs) do
      r.count = r.count + 1
      sink(req)
      outs[i] = dry_error()
    end
    return outs
  end
  function r.close() end
  return r
end

function _M.is_dry(err)
  return type(err) == "table" and err.code == "dry_run"
end

local function header_list(h)
  local list = {}
  if type(h) ~= "table" then return list end
  if h[1] ~= nil then
    for i, pair in ipairs(h) do list[i] = { tostring(pair[1]), tostring(pair[2]) } end
  else
    for k, v in pairs(h) do list[#list + 1] = { tostring(k), tostring(v) } end
    sort(list, function(a, b) return a[1] < b[1] end)
  end
  return list
end

local function masked_pairs(list)
  local out = {}
  for i, p in ipairs(list) do
    out[i] = { p[1], secrets.is_secret(p[1]) and secrets.MASK or p[2] }
  end
  return out
end

-- A recorded request as plain data: what would go on the wire. Fields
-- Cafe24 sends in Base64 are also shown decoded (fields_decoded).
function _M.describe(req, provider)
  local d = { method = req.method or ((req.form or req.body or req.multipart) and "POST" or "GET"),
    url = req.url }
  local headers = masked_pairs(header_list(req.headers))
  if req.form then
    headers[#headers + 1] = { "Content-Type", "application/x-www-form-urlencoded" }
    local masked = masked_pairs(req.form)
    d.body = core.urlencode_form(masked)
    d.fields = masked
    local mode
    for _, p in ipairs(req.form) do if p[1] == "mode" then mode = p[2] end end
    if provider == "cafe24" and mode == core.b64encode("1") then
      local decoded = {}
      for i, p in ipairs(masked) do
        local plain = p[2] ~= secrets.MASK and core.b64decode(p[2]) or nil
        decoded[i] = { p[1], plain or p[2] }
      end
      d.fields_decoded = decoded
    end
  elseif req.multipart then
    headers[#headers + 1] = { "Content-Type", "multipart/form-data; boundary=<chosen by libcurl>" }
    local parts = {}
    for i, part in ipairs(req.multipart) do
      if part.value ~= nil then
        parts[i] = { name = part.name, value = secrets.is_secret(part.name) and secrets.MASK or part.value }
      else
        local size = part.data and #part.data
        if not size and part.file then
          local f = io.open(part.file, "rb")
          if f then size = f:seek("end"); f:close() end
        end
        parts[i] = { name = part.name, filename = part.filename or (part.file and part.file:match("[^/]+$")),
          content_type = part.content_type, bytes = size }
      end
    end
    d.parts = parts
  elseif req.body then
    d.body = req.body
  end
  d.headers = headers
  return d
end

-- The request as text, the way it would be written (the body of a form
-- exactly; a multipart body as its parts).
function _M.render(d)
  local lines = { d.method .. " " .. d.url }
  for _, h in ipairs(d.headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  lines[#lines + 1] = ""
  if d.body then lines[#lines + 1] = d.body end
  local shown = d.fields_decoded or d.fields
  if shown then
    lines[#lines + 1] = d.fields_decoded and "# fields (Base64 decoded):" or "# fields:"
    for _, p in ipairs(shown) do lines[#lines + 1] = format("#   %s = %s", p[1], p[2]) end
  end
  if d.parts then
    for _, p in ipairs(d.parts) do
      if p.value ~= nil then
        lines[#lines + 1] = format("part %s = %s", p.name, p.value)
      else
        lines[#lines + 1] = format("part %s: file %s (%s, %s bytes)", p.name, tostring(p.filename),
          tostring(p.content_type), tostring(p.bytes))
      end
    end
  end
  return concat(lines, "\n")
end

-- The MsgSendReq frames a OneShot session would write for msgs, built by
-- the protocol itself (checks included) without any connection.
function _M.oneshot_frames(options, msgs)
  local session = require "ksms.oneshot.session"
  local codec = require "ksms.oneshot.codec"
  local s = session.new(options) -- raises on bad options, like the real run
  local frames = {}
  for i, msg in ipairs(msgs) do
    local m = msg
    if msg.images ~= nil then
      -- Uploaded first in a real run; the server names the files.
      m = {}
      for k, v in pairs(msg) do if k ~= "images" then m[k] = v end end
      local list = type(msg.images) == "table" and msg.images or { msg.images }
      m.files = {}
      for k = 1, #list do m.files[k] = format("<uploaded image %d>", k) end
    end
    local rec, err = s.p:submit(m)
    if not rec then return nil, err, i end
    frames[i] = { json = codec.encode("MsgSendReq", rec.body), body = rec.body }
  end
  return frames
end

return _M
