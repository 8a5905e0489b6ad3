--- ksms.providers.ppurio: KTH API Store "ppurio" v1 (the provider's document).
-- SMS, LMS and MMS (JPEG files as multipart `file` parts), delivery
-- reports by cmid, and caller-number registration and listing. The key goes
-- in the header "x-waple-authorization" (sent in exactly that case), the
-- client id in the path. Text must fit KS C 5601 (strict EUC-KR): the
-- document warns that other characters do not arrive.
-- @module ksms.providers.ppurio
-- @alias P

local common = require "ksms.providers.common"
local codes = require "ksms.providers.ppurio_codes"
local errors = require "ksms.errors"
local message = require "ksms.message"
local phone = require "ksms.rules.phone"
local schedule = require "ksms.rules.schedule"
local text_rules = require "ksms.rules.text"
local core = require "ksms.core"

local type, ipairs, pairs, tostring, error = type, ipairs, pairs, tostring, error
local format, concat, byte, sub = string.format, table.concat, string.byte, string.sub
local io_open = io.open
local cp949_len, urlencode_form = core.cp949_len, core.urlencode_form
local str = common.str
local misuse = errors.misuse

local P = { name = "ppurio", _VERSION = "0.2.0", codes = codes.result }

P.limits = {
  charset = "euc-kr",
  sms = 90,     -- "90byte가 넘을 경우 LMS로 자동 변환"
  lms = 1999,   -- "2000byte 미만"
  mms = 1999,
  subject = 59, -- "60byte 미만"
  name = 31,    -- send_name, dest_name "32byte 미만"
  images = 3, image_bytes = 20 * 1024, images_bytes = 40 * 1024,
}
P.capabilities = {
  sms = true, lms = true, mms = true, reservation = true, balance = false,
  alimtalk = false, friendtalk = false, report = true, sender_numbers = true,
  register_sender = true, history = false, image = "file",
  max_recipients_per_request = 1000,
}

local PREFIX = "/ppurio/1"

-- The options configure reads (ksms.client adds its own and refuses any
-- other).
P.options = { client_id = "string", api_key = "string", base_url = "string", max_recipients_per_request = "number" }
P.required = { "client_id", "api_key" } -- ksms.client raises without them

--- Checks ppurio's options (client_id, api_key, base_url).
-- @tparam table o
-- @treturn table cfg
function P.configure(o)
  local base = o.base_url or "http://api.apistore.co.kr"
  if type(base) ~= "string" or not base:match("^https?://") then
    errors.misuse("ksms.client: base_url must be scheme://host[:port]")
  end
  base = common.strip_slashes(base)
  local id = o.client_id
  return {
    client_id = id, api_key = o.api_key, base_url = base,
    urls = {
      sms = format("%s%s/message/sms/%s", base, PREFIX, id),
      lms = format("%s%s/message/lms/%s", base, PREFIX, id),
      mms = format("%s%s/message/mms/%s", base, PREFIX, id),
      report = format("%s%s/message/report/%s", base, PREFIX, id),
      save = format("%s%s/sendnumber/save/%s", base, PREFIX, id),
      list = format("%s%s/sendnumber/list/%s", base, PREFIX, id),
    },
    -- A list: the header name goes out in lower case, as documented.
    headers = { { "x-waple-authorization", o.api_key } },
    max_per_request = o.max_recipients_per_request or 1000,
  }
end

local function invalid(code, fmt, ...) return common.invalid("ppurio", code, fmt, ...) end

-- The last part of a path, scanned from the end: "[^/\\]+$" is quadratic
-- on long parts between slashes.
local function basename(path)
  local i = #path
  while i > 0 do
    local c = byte(path, i)
    if c == 47 or c == 92 then break end
    i = i - 1
  end
  return sub(path, i + 1)
end

-- MMS images: a path, a list of paths, or { data =, filename = } tables.
-- Each must be a JPEG; at most 3, each at most 20 KB, 40 KB in all.
local function load_images(image)
  local list = (type(image) == "string" or (type(image) == "table" and image.data)) and { image } or image
  if type(list) ~= "table" then misuse("ksms: ppurio 'image' is a file path, a list of them, or { data, filename }") end
  local files, total = {}, 0
  if #list == 0 then return invalid("image", "no image given") end
  if #list > P.limits.images then return invalid("image", "%d images; ppurio takes at most %d", #list, P.limits.images) end
  for i, item in ipairs(list) do
    local data, filename
    if type(item) == "string" then
      local f, err = io_open(item, "rb")
      if not f then return invalid("image", "image %d cannot be read: %s", i, tostring(err)) end
      data = f:read("*a")
      f:close()
      filename = basename(item)
    elseif type(item) == "table" and type(item.data) == "string" then
      data, filename = item.data, item.filename or ("image" .. i .. ".jpg")
    else
      misuse("ksms: ppurio image " .. i .. " must be a path or { data =, filename = }")
    end
    if data:sub(1, 3) ~= "\255\216\255" then return invalid("image", "image %d (%s) is not a JPEG", i, filename) end
    if #data > P.limits.image_bytes then
      return invalid("image", "image %d (%s) is %d bytes; ppurio takes at most %d", i, filename, #data, P.limits.image_bytes)
    end
    total = total + #data
    files[i] = { name = "file", data = data, filename = filename, content_type = "image/jpeg" }
  end
  if total > P.limits.images_bytes then
    return invalid("image", "images are %d bytes in all; ppurio takes at most %d", total, P.limits.images_bytes)
  end
  return files
end

local function check_bytes(value, limit, field)
  if value == nil then return true end
  if type(value) ~= "string" then misuse(format("ksms: '%s' must be a string", field)) end
  local ok, err = text_rules.check_charset(value, "euc-kr", field)
  if not ok then return nil, err end
  local n = cp949_len(value)
  if n > limit then
    return nil, errors.new { category = "message_length", code = "too_long", provider = "ppurio",
      message = format("%s is %d bytes; ppurio takes at most %d", field, n, limit) }
  end
  return true
end

local send_spec = {
  limits = P.limits, extra_fields = { from_name = true, to_name = true },
  check_image = function(image) return load_images(image) end,
}

local function parse_send(kind)
  return function(res)
    local doc, err = common.parse_json("ppurio", res)
    if not doc then return nil, err end
    local cmid = str(doc.cmid)
    local r, oerr = common.outcome(P, doc.result_code, res.body, { kind = kind, id = cmid, cmid = cmid })
    local detail = str(doc.result_msg)
    if oerr and detail then oerr.message = errors.bound(oerr.message .. ": " .. detail, errors.MESSAGE_MAX) end
    return r, oerr
  end
end

--- Plans a send (SMS/LMS/MMS with JPEG uploads).
-- @tparam table cfg
-- @tparam table msg
-- @param ctx
-- @return a plan, or nil, err
function P.plan_send(cfg, msg, ctx)
  local m, err = message.normalize_send(msg, send_spec, ctx)
  if not m then return nil, err end
  local ok
  ok, err = check_bytes(m.subject, P.limits.subject, "subject")
  if ok then ok, err = check_bytes(m.from_name, P.limits.name, "from_name") end
  if ok then ok, err = check_bytes(m.to_name, P.limits.name, "to_name") end
  if not ok then return nil, err end
  local files = m.image_data -- loaded and checked by load_images
  local parts = common.chunk(m.to, cfg.max_per_request)
  local reqs = {}
  for i, rcpts in ipairs(parts) do
    -- The document's field order.
    local fields = {}
    if m.at then fields[#fields + 1] = { "send_time", schedule.format(m.at, "YYYYMMDDhhmmss") } end
    fields[#fields + 1] = { "send_phone", m.from }
    fields[#fields + 1] = { "dest_phone", concat(rcpts, ",") }
    if m.from_name then fields[#fields + 1] = { "send_name", m.from_name } end
    if m.to_name then fields[#fields + 1] = { "dest_name", m.to_name } end
    if m.kind ~= "sms" and m.subject and m.subject ~= "" then fields[#fields + 1] = { "subject", m.subject } end
    fields[#fields + 1] = { "msg_body", m.text }
    local req = { method = "POST", url = cfg.urls[m.kind], headers = cfg.headers }
    if files then
      local mp = {}
      for k, f in ipairs(fields) do mp[k] = { name = f[1], value = f[2] } end
      for _, f in ipairs(files) do mp[#mp + 1] = f end
      req.multipart = mp
    else
      req.form = fields
    end
    reqs[i] = req
  end
  local extra = message.ad_extra({ kind = m.kind, bytes = m.bytes, recipients = #m.to, reserved_at = m.at }, m)
  return { requests = reqs, checked = message.checked(m), finish = function(outs)
    return common.combine(P, parts, outs, parse_send(m.kind), extra)
  end }
end

--- client:report(cmid) -> { ok = true, delivered, status = "delivered" |
-- "failed", call_status, category (when failed), description,
-- description_ko, dest_phone, report_time, umid, raw } | nil, err
function P.plan_report(cfg, cmid)
  if type(cmid) ~= "string" or cmid == "" then misuse("ksms: report needs the cmid a send returned") end
  local url = cfg.urls.report .. "?" .. urlencode_form { { "cmid", cmid } }
  return { requests = { { method = "GET", url = url, headers = cfg.headers } }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    local doc, err = common.parse_json("ppurio", o)
    if not doc then return nil, err end
    if doc.call_status == nil then
      return common.outcome(P, doc.result_code, o.body)
    end
    local status = str(doc.call_status)
    if not status then
      return nil, errors.new { category = "protocol", code = "bad_response", provider = "ppurio",
        message = format("the report's call_status is %s, not a code", common.show(doc.call_status)),
        raw = o.body }
    end
    local info = codes.report[status]
    local r = { ok = true, provider = "ppurio", cmid = cmid, call_status = status,
      dest_phone = str(doc.dest_phone), report_time = str(doc.report_time), umid = str(doc.umid), raw = o.body }
    if not info then
      r.delivered, r.status, r.category = false, "failed", "unknown"
      r.description, r.description_ko = "undocumented report code " .. status, ""
    elseif info.ok then
      r.delivered, r.status = true, "delivered"
      r.description, r.description_ko = info.en, info.ko
    else
      r.delivered, r.status, r.category = false, "failed", info.category
      r.description, r.description_ko = info.en, info.ko
    end
    return r
  end }
end

-- sendnumber/save's rules (document section 5): 8 to 11 digits, a landline
-- with its area code, a mobile number, or a 15xx/16xx/18xx number.
local function registrable(number)
  local d, err = phone.normalize(number, "from")
  if not d then return nil, err end
  if #d < 8 or #d > 11 then
    return nil, errors.new { category = "sender_number", code = "invalid_number", provider = "ppurio",
      message = format("caller number %q must have 8 to 11 digits to be registered", number) }
  end
  return d
end

--- Plans a caller-number registration.
-- @tparam table cfg
-- @param number
-- @tparam string comment
-- @return a plan, or nil, err
function P.plan_register_sender(cfg, number, comment)
  if type(comment) ~= "string" or comment == "" then
    misuse("ksms: register_sender needs a comment (the document requires one, up to 200 characters)")
  end
  local d, err = registrable(number)
  if not d then return nil, err end
  if text_rules.chars(comment) > 200 then return invalid("comment", "comment is over 200 characters") end
  local req = { method = "POST", url = cfg.urls.save, headers = cfg.headers,
    form = { { "sendnumber", d }, { "comment", comment } } }
  return { requests = { req }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    local doc, perr = common.parse_json("ppurio", o)
    if not doc then return nil, perr end
    return common.outcome({ name = "ppurio", codes = codes.register }, doc.result_code, o.body,
      { number = str(doc.sendnumber) or d })
  end }
end

--- Plans the list of registered caller numbers.
-- @tparam table cfg
-- @param[opt] number one number to look up
-- @return a plan, or nil, err
function P.plan_sender_numbers(cfg, number)
  local url = cfg.urls.list
  if number ~= nil then
    local d, err = phone.normalize(number, "from")
    if not d then return nil, err end
    url = url .. "?" .. urlencode_form { { "sendnumber", d } }
  end
  return { requests = { { method = "GET", url = url, headers = cfg.headers } }, finish = function(outs)
    local o = outs[1] -- a response: the client keeps transport errors
    local doc, err = common.parse_json("ppurio", o)
    if not doc then return nil, err end
    local r, oerr = common.outcome(P, doc.result_code, o.body)
    if not r then return nil, oerr end
    local numbers = {}
    for _, item in ipairs(type(doc.numberList) == "table" and doc.numberList or {}) do
      local number = type(item) == "table" and str(item.sendnumber)
      if number then numbers[#numbers + 1] = { number = number, comment = str(item.comment) } end
    end
    r.numbers = numbers
    return r
  end }
end

return P
