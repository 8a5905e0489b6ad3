-- hostile.lua - answers no honest HTTP server gives, for the specs of
-- ksms's HTTP transports: a script's fault = "<kind>" (scripts.lua) makes
-- httpd.lua send one instead of the provider's answer.
--
--   local source = hostile.source(kind)   -- nil for an unknown kind
--   source.next()      -> the next piece of bytes, nil at the end (then the
--                         server closes the connection)
--   source.interval    -> seconds between pieces (drip), else nil: as fast
--                         as the client reads
--
-- Every source is finite, and the server drops it when the client goes, so
-- a fake never runs away. The kinds:
--   blank_headers      a 200 whose header values hold 60,000-byte blank runs
--                      (three lines and a folded one, 240 KB in all), body "ok"
--   long_header        one 200 KiB header line
--   many_headers       60,000 repeats of an empty header "X:", body "ok"
--   endless_1xx        "102 Processing" answers, 64 MiB of them, then a 200
--   tiny_chunks        a chunked body of 2,000,000 one-byte chunks (12 MB)
--   conflicting_length Content-Length: 2 and Content-Length: 3, body "okk"
--   conflicting_list   Content-Length: 2, 3, body "okk"
--   drip               a 200 with Content-Length 100000, then one byte every
--                      50 ms, at most 1,200 of them (a minute)
local _M = {}

local PIECE = 64 * 1024 -- bytes handed to the socket at a time

-- A source over parts: a string, or { piece, count } for piece repeated
-- count times (handed out about PIECE bytes at a time).
local function parts_source(parts, interval)
  local i, left = 0, 0
  local piece, batch, per
  local function next_piece()
    while left == 0 do
      i = i + 1
      local p = parts[i]
      if p == nil then return nil end
      if type(p) == "string" then return p end
      piece, left = p[1], p[2]
      per = interval and 1 or math.max(1, math.floor(PIECE / #piece))
      batch = piece:rep(per)
    end
    local n = math.min(left, per)
    left = left - n
    return n == per and batch or piece:rep(n)
  end
  return { next = next_piece, interval = interval }
end

local BLANKS = (" \t"):rep(30000)

local KINDS = {
  blank_headers = function()
    return parts_source { "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n",
      "X-Blank-1: a" .. BLANKS .. "b\r\n", "X-Blank-2: a" .. BLANKS .. "b\r\n",
      "X-Blank-3: a" .. BLANKS .. "b\r\n", " " .. BLANKS .. "c\r\n", "Content-Length: 2\r\n\r\nok" }
  end,
  long_header = function()
    return parts_source { "HTTP/1.1 200 OK\r\nX-Long: ", { "l", 200 * 1024 },
      "\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok" }
  end,
  many_headers = function()
    return parts_source { "HTTP/1.1 200 OK\r\nConnection: close\r\n", { "X:\r\n", 60000 },
      "Content-Length: 2\r\n\r\nok" }
  end,
  endless_1xx = function()
    local interim = "HTTP/1.1 102 Processing\r\n\r\n"
    return parts_source { { interim, math.floor(64 * 1024 * 1024 / #interim) },
      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok" }
  end,
  tiny_chunks = function()
    return parts_source { "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
      { "1\r\nx\r\n", 2000000 }, "0\r\n\r\n" }
  end,
  conflicting_length = function()
    return parts_source { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk" }
  end,
  conflicting_list = function()
    return parts_source { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2, 3\r\n\r\nokk" }
  end,
  drip = function()
    return parts_source({ "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n",
      { "x", 1200 } }, 0.05)
  end,
}

-- The kinds, for the list of faults a script may name.
_M.KINDS = {}
for kind in pairs(KINDS) do _M.KINDS[kind] = true end

function _M.source(kind)
  local make = KINDS[kind]
  return make and make()
end

return _M
