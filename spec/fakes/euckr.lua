-- euckr.lua - whether UTF-8 text fits strict EUC-KR (KS X 1001): ASCII plus
-- the 8,227 characters of euckr_data.lua (generated from glibc's iconv by
-- gen_euckr.lua). CP949-only syllables such as 됬 and every emoji are not in
-- it. Used by the Cafe24 fake (code -202) and the ppurio fake (KS C 5601).
local data = require "fakes.euckr_data"

local _M = {}

local set = {}
for ch in data:gmatch("[\194-\244][\128-\191]*") do set[ch] = true end

-- The characters of s (UTF-8) that strict EUC-KR lacks, in order, as
-- { {char =, pos = character position} }; an empty list when all fit.
function _M.missing(s)
  local bad, pos = {}, 0
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    pos = pos + 1
    if #ch > 1 and not set[ch] then bad[#bad + 1] = { char = ch, pos = pos } end
  end
  return bad
end

function _M.fits(s)
  return #_M.missing(s) == 0
end

return _M
