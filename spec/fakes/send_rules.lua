-- send_rules.lua - the checks Senders and MessageMe share (one company runs
-- both APIs; their documents describe the same fields and codes). Each check
-- returns true when the input passes.
--
-- Where the documents give a return code, the fake answers it. Where input
-- is wrong in a way no documented code covers (send_reserve "2", a PNG image,
-- msg in EUC-KR bytes...), the fake refuses loudly with HTTP 400 and
-- {"fake_error": "..."}: a client bug then fails a test instead of passing.
local korean = require "fakes.korean"

local _M = {}

local MAX_BYTES = 2000      -- "건당 최대 2,000 bytes"

function _M.result(code)
  return 200, { result = code }
end

function _M.undocumented(message)
  return 400, { fake_error = message }
end

-- The clock the provider judges reservations by: state.now (epoch seconds)
-- when a test pinned it, else the real time.
function _M.now(state)
  return state.now or os.time()
end

-- 155 covers both a wrong key and a member who may not send.
function _M.key_ok(state, f)
  return f.api_key ~= nil and f.api_key == state.api_key and not state.account_blocked
end

function _M.callback_ok(state, f)
  for _, n in ipairs(state.senders) do
    if n == f.callback then return true end
  end
  return false
end

-- The recipients of dstaddr (split on state.separator), or nil when there
-- are none, more than state.max_recipients, or one is not a phone number.
function _M.recipients(state, f)
  if not f.dstaddr or f.dstaddr == "" then return nil end
  local list = korean.split(f.dstaddr, state.separator)
  if #list > state.max_recipients then return nil end
  for _, n in ipairs(list) do
    if not korean.is_phone(n) then return nil end
  end
  return list
end

-- send_reserve: "0" sends now; "1" needs send_reserve_date, a real Korea
-- time in the future. Returns true, or false (415), or nil, message when
-- send_reserve itself is not 0 or 1.
function _M.reserve_ok(state, f)
  if f.send_reserve == "0" then return true end
  if f.send_reserve ~= "1" then return nil, "send_reserve must be 0 or 1" end
  local at = korean.parse_kst(f.send_reserve_date, state.separator)
  return at ~= nil and at > _M.now(state)
end

function _M.flag_ok(value)
  return value == "0" or value == "1"
end

function _M.is_url(s)
  return type(s) == "string" and (s:match("^https?://[^%s]+$")) ~= nil
end

-- "image 확장자는 반드시 JPG": the path part of the URL ends in .jpg.
function _M.is_jpg(s)
  local path = s:match("^[^?#]*")
  return path:lower():match("%.jpg$") ~= nil
end

-- A message field: present, UTF-8 (the documents say URL Encoding UTF-8).
-- Returns nil, message when it is not UTF-8.
function _M.text_ok(s, name)
  if s ~= nil and not korean.is_utf8(s) then
    return nil, name .. " is not UTF-8"
  end
  return true
end

-- SMS up to 90 CP949 bytes, LMS beyond; MMS when an image is attached.
function _M.message_kind(msg, image)
  if image and image ~= "" then return "mms" end
  return korean.cp949_len(msg) > 90 and "lms" or "sms"
end

-- Takes cost from the balance if it is there; false (185) when it is not.
function _M.charge(state, cost)
  if state.balance < cost then return false end
  state.balance = state.balance - cost
  return true
end

-- The text-message send both documents describe: SMS up to 90 bytes, LMS
-- up to 2,000, MMS with an image; each recipient costs state.costs[kind].
-- Senders also requires call_block ("0" or "1").
function _M.sms_send(state, f, with_call_block)
  if not _M.key_ok(state, f) then return _M.result("155") end
  for _, name in ipairs({ "msg", "subject" }) do
    local ok, err = _M.text_ok(f[name], name)
    if not ok then return _M.undocumented(err) end
  end
  if not f.msg or f.msg == "" or korean.cp949_len(f.msg) > MAX_BYTES then
    return _M.result("225")
  end
  if not _M.callback_ok(state, f) then return _M.result("315") end
  local to = _M.recipients(state, f)
  if not to then return _M.result("325") end
  local reserve_ok, reserve_err = _M.reserve_ok(state, f)
  if reserve_ok == nil then return _M.undocumented(reserve_err) end
  if not reserve_ok then return _M.result("415") end
  if with_call_block and not _M.flag_ok(f.call_block) then
    return _M.undocumented("call_block must be 0 or 1")
  end
  if f.image and f.image ~= "" and not _M.is_jpg(f.image) then
    return _M.undocumented("image must be a .jpg URL (the document: JPG only)")
  end
  local cost = state.costs[_M.message_kind(f.msg, f.image)] * #to
  if not _M.charge(state, cost) then return _M.result("185") end
  return _M.result("100")
end

-- Amounts are integers in the answers ("1000", never "1000.0").
function _M.amount(n)
  if n == math.floor(n) then return string.format("%d", n) end
  return tostring(n)
end

return _M
