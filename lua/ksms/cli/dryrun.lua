--- ksms.cli.dryrun: --dry-run. A recording transport takes the place of
-- libcurl (ksms.client(provider, { transport = recorder })): the adapters
-- build their requests as always, the recorder keeps them and answers each
-- with an error, so nothing leaves the machine. For OneShot, the MsgSendReq
-- a session would write is built by the protocol without connecting.
--
--   local rec = dryrun.recorder(function(req) ... end)
--   dryrun.is_dry(err)                 -> the outcome of a recorded request
--   dryrun.describe(req, provider)     -> { method, url, headers, body, fields, wire }
--   dryrun.wire(p [, masker])          -> p.head .. p.body, secrets masked
--
-- d.wire is every byte the transport would write for the request
-- (ksms.transport.http1.prepare, the one request writer of both
-- transports), secrets masked: the request line, the headers in their
-- order, Content-Length, and the body; a multipart body with the boundary
-- this preparation chose (a real send draws its own from core.random).
--   dryrun.oneshot_frames(options, msgs) -> { { json =, body = }, ... } | nil, err
-- @module ksms.cli.dryrun
-- @alias _M

local core = require "ksms.core"
local errors = require "ksms.errors"
local secrets = require "ksms.secrets"
local http1 = require "ksms.transport.http1"

local type, ipairs, pairs, tostring, pcall = type, ipairs, pairs, tostring, pcall
local format, concat, sort = string.format, table.concat, table.sort
local find, gsub, byte = string.find, string.gsub, string.byte

local _M = { _VERSION = "0.2.0" }

local function dry_error()
  return errors.new { category = "invalid_input", code = "dry_run", provider = "ksms",
    message = "dry run: not sent", maybe_sent = false }
end

--- A transport (request, request_many, close) that sends nothing.
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

--- Whether an error is the dry-run recorder's "nothing sent" marker.
-- @param err
-- @treturn boolean
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

-- The values of a request's secret-named headers, form fields and
-- multipart value parts, added to masker m.
local function add_secrets(m, req)
  for _, hp in ipairs(header_list(req.headers)) do
    if secrets.is_secret(hp[1]) then m:add(hp[2]) end
  end
  for _, f in ipairs(type(req.form) == "table" and req.form or {}) do
    if type(f) == "table" and secrets.is_secret(f[1]) and f[2] ~= nil then m:add(tostring(f[2])) end
  end
  for _, part in ipairs(type(req.multipart) == "table" and req.multipart or {}) do
    if type(part) == "table" and part.value ~= nil and secrets.is_secret(part.name) then
      m:add(tostring(part.value))
    end
  end
end

-- Whether s is UTF-8 text without control bytes other than TAB, LF, CR
-- (what a terminal shows as it is).
local function is_text(s)
  if find(s, "[%z\1-\8\11\12\14-\31\127]") then return false end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c < 0xE0) and 2 or (c >= 0xE0 and c < 0xF0) and 3
      or (c >= 0xF0 and c < 0xF5) and 4 or nil
    if not len then return false end
    for k = i + 1, i + len - 1 do
      local b = byte(s, k)
      if not b or b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- The wire bytes as text: exact when they are text; a multipart part
-- whose content is binary (an image) shown by its size. Second result:
-- whether something was left out.
local function text_wire(w)
  if is_text(w) then return w, false end
  local head_end = find(w, "\r\n\r\n", 1, true)
  local boundary = head_end and w:sub(1, head_end):match("\r\nContent%-Type: multipart/[^\r]-boundary=([^\r;]+)")
  if not boundary then
    return head_end and (w:sub(1, head_end + 3) .. format("<%d bytes of binary body, not shown>", #w - head_end - 3))
      or w, true
  end
  local head, body = w:sub(1, head_end + 3), w:sub(head_end + 4)
  local delim = "--" .. boundary
  local out, pos = { head }, 1
  while true do
    local s = find(body, delim, pos, true)
    if not s then out[#out + 1] = body:sub(pos); break end
    local hdr_end = find(body, "\r\n\r\n", s, true)
    local nxt = hdr_end and find(body, "\r\n" .. delim, hdr_end, true)
    if not nxt then out[#out + 1] = body:sub(s); break end
    local content = body:sub(hdr_end + 4, nxt - 1)
    out[#out + 1] = body:sub(s, hdr_end + 3)
    if not is_text(content) then
      out[#out + 1] = format("<%d bytes of binary content, not shown>", #content)
    else
      out[#out + 1] = content
    end
    out[#out + 1] = "\r\n"
    pos = nxt + 2
  end
  return concat(out), true
end

--- The bytes a prepared request puts on the wire, masked with m (if given).
function _M.wire(p, m)
  local bytes = p.head .. (p.body or "")
  return m and m:mask(bytes) or bytes
end

--- A recorded request as plain data: what would go on the wire (d.wire,
-- exact and masked). Fields Cafe24 sends in Base64 are also shown decoded
-- (fields_decoded).
function _M.describe(req, provider)
  local d = { method = req.method or ((req.form or req.body or req.multipart) and "POST" or "GET"),
    url = req.url }
  local m = secrets.masker()
  add_secrets(m, req)
  local ok, p = pcall(http1.prepare, req, { user_agent = "ksms/" .. core._VERSION })
  if ok and p.head then
    d.wire, d.wire_elided = text_wire(_M.wire(p, m))
    d.wire_bytes = #p.head + #(p.body or "")
  end
  local headers = masked_pairs(header_list(req.headers))
  if req.form then
    headers[#headers + 1] = { "Content-Type", "application/x-www-form-urlencoded" }
    local masked = masked_pairs(req.form)
    d.body = core.urlencode_form(masked)
    d.fields = masked
    local mode
    for _, f in ipairs(req.form) do if f[1] == "mode" then mode = f[2] end end
    if provider == "cafe24" and mode == core.b64encode("1") then
      local decoded = {}
      for i, f in ipairs(masked) do
        local plain = f[2] ~= secrets.MASK and core.b64decode(f[2]) or nil
        decoded[i] = { f[1], plain or f[2] }
      end
      d.fields_decoded = decoded
    end
  elseif req.multipart then
    local ctype = ok and p.head and p.head:match("\r\nContent%-Type: (multipart/[^\r]*)")
    headers[#headers + 1] = { "Content-Type", ctype or "multipart/form-data" }
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
    d.body = m:mask(req.body)
  end
  d.headers = headers
  return d
end

--- The request as text: a heading with the method and the whole URL, then
-- every byte the transport would write, the request line first (CRLF
-- shown as line breaks, binary multipart contents by their size), then a
-- form's fields decoded. d.wire (in --json) holds the exact bytes.
function _M.render(d)
  local lines = { d.method .. " " .. d.url }
  if d.wire then
    lines[#lines + 1] = format("# on the wire, %d bytes (CRLF line ends shown as line breaks%s):",
      d.wire_bytes, d.wire_elided and "; binary contents by their size" or "")
    lines[#lines + 1] = (gsub(d.wire, "\r\n", "\n"))
  else
    for _, h in ipairs(d.headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
    lines[#lines + 1] = ""
    if d.body then lines[#lines + 1] = d.body end
  end
  local shown = d.fields_decoded or d.fields
  if shown then
    lines[#lines + 1] = d.fields_decoded and "# fields (Base64 decoded):" or "# fields:"
    for _, f in ipairs(shown) do lines[#lines + 1] = format("#   %s = %s", f[1], f[2]) end
  end
  if d.parts and not d.wire then
    for _, part in ipairs(d.parts) do
      if part.value ~= nil then
        lines[#lines + 1] = format("part %s = %s", part.name, part.value)
      else
        lines[#lines + 1] = format("part %s: file %s (%s, %s bytes)", part.name, tostring(part.filename),
          tostring(part.content_type), tostring(part.bytes))
      end
    end
  end
  return concat(lines, "\n")
end

--- The MsgSendReq frames a OneShot session would write for msgs, built and
-- checked by ksms.oneshot.message (what the protocol's submit runs),
-- without a connection or a state machine. Messages without an id get
-- the one the session would give them: <id_prefix>-<n>.
function _M.oneshot_frames(options, msgs)
  local client = require "ksms.oneshot.client"
  local message = require "ksms.oneshot.message"
  local codec = require "ksms.oneshot.codec"
  errors.check_options("ksms.client(\"oneshot\")", options, client.options) -- as the real run
  local limits = message.limits_of(options)
  local prefix = options.id_prefix or "<id_prefix>"
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
    local body, err = message.build(m, limits)
    if not body then return nil, err, i end
    body.UserMsgId = body.UserMsgId or (prefix .. "-" .. i)
    frames[i] = { json = codec.encode("MsgSendReq", body), body = body }
  end
  return frames
end

return _M
