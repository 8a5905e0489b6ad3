-- examples/nginx/messageme_mo.lua: MessageMe's MO (inbound message)
-- webhook as an nginx content handler.
--
--   location = /mo {
--     client_max_body_size 64k;
--     client_body_buffer_size 64k;     # keep the body in memory
--     content_by_lua_block { require("messageme_mo").handle() }
--   }
--
-- handle(opts): opts.on_message(mo) gets each message as parse_mo returns
-- it, { from, text, subject, images }; the default logs it as one JSON line
-- at notice level ("messageme MO: {...}"). opts.image_base as parse_mo's.
-- Answers 200 "OK", 400 for a post that is not an MO (a missing, repeated
-- or bare field: parse_mo refuses each), 413 (nginx) over 64k, 405 for other
-- methods, 500 when on_message raises (MessageMe may then post it again).
-- Keep on_message quick: hand the message to a queue, a shared dict or a
-- timer (ngx.timer.at(0, ...)) rather than doing slow work before answering.
local messageme = require "ksms.providers.messageme"
local cjson = require "cjson.safe"

local ngx = ngx
local pcall, tostring = pcall, tostring

local _M = { _VERSION = "0.1.0" }

-- One JSON line; lua-cjson writes an empty table as {}, so the image list
-- is written by hand.
function _M.to_json(mo)
  local images = #mo.images > 0 and cjson.encode(mo.images) or "[]"
  return ('{"from":%s,"text":%s,"subject":%s,"images":%s}'):format(cjson.encode(mo.from),
    cjson.encode(mo.text), mo.subject and cjson.encode(mo.subject) or "null", images)
end

local function log_message(mo)
  ngx.log(ngx.NOTICE, "messageme MO: ", _M.to_json(mo))
end

local function answer(status, text)
  ngx.status = status
  ngx.header.content_type = "text/plain"
  ngx.print(text)
  return ngx.exit(ngx.HTTP_OK) -- the status is set; this ends the handler
end

function _M.handle(opts)
  opts = opts or {}
  if ngx.req.get_method() ~= "POST" then return answer(405, "POST only") end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    if ngx.req.get_body_file() then
      -- Reading the temp file would block the worker: size the buffer instead.
      ngx.log(ngx.ERR, "messageme MO: the body went to a file; set client_body_buffer_size",
        " to client_max_body_size")
      return answer(500, "error")
    end
    body = ""
  end
  local mo, err = messageme.parse_mo(body, { image_base = opts.image_base })
  if not mo then
    ngx.log(ngx.WARN, "messageme MO refused: ", tostring(err))
    return answer(400, "bad MO")
  end
  local ok, herr = pcall(opts.on_message or log_message, mo)
  if not ok then
    ngx.log(ngx.ERR, "messageme MO handler failed: ", tostring(herr))
    return answer(500, "error")
  end
  return answer(200, "OK")
end

return _M
