--- ksms.cli.progress: bulk progress on stderr. A bar redrawn in place when
-- stderr is a terminal, plain lines otherwise (logs, pipes), nothing with
-- "none". KSMS_PROGRESS=bar|lines|none overrides the terminal test.
--
--   local p = progress.new(out, { total = 1000, mode = "auto" })
--   p:update(done, "12 ok, 0 failed" [, force [, sent]])     p:finish(done, "..." [, sent])
-- The rate is of `sent` (rows actually sent) when given.
-- @module ksms.cli.progress
-- @alias _M

local core = require "ksms.core"

local format, rep, floor, max, min = string.format, string.rep, math.floor, math.max, math.min
local getenv, execute = os.getenv, os.execute
local setmetatable, tonumber = setmetatable, tonumber
local monotonic = core.monotonic

local _M = { _VERSION = "0.2.0" }

--- Whether stderr is a terminal: `test -t 2` in the shell os.execute runs
-- inherits our stderr.
function _M.stderr_is_tty()
  local a = execute("test -t 2")
  return a == true or a == 0 -- Lua 5.4 / LuaJIT (a status number)
end

--- The progress mode: KSMS_PROGRESS, else the one requested, else bar on a terminal and lines otherwise.
-- @tparam[opt] string requested
-- @treturn string "bar", "lines" or "none"
function _M.mode(requested)
  local env = getenv("KSMS_PROGRESS")
  if env == "bar" or env == "lines" or env == "none" then return env end
  if requested and requested ~= "auto" then return requested end
  return _M.stderr_is_tty() and "bar" or "lines"
end

local P = {}
P.__index = P

--- A progress display on stderr.
-- @param out the output
-- @tparam table opts total, mode
-- @return a progress object
function _M.new(out, opts)
  local mode = _M.mode(opts.mode)
  local now = monotonic()
  return setmetatable({ out = out, total = opts.total or 0, mode = mode, start = now,
    last = mode == "bar" and -1e9 or now, interval = mode == "bar" and 0.1 or (tonumber(getenv("KSMS_PROGRESS_INTERVAL")) or 2),
    label = opts.label or "ksms bulk", width = tonumber(getenv("COLUMNS")) or 80 }, P)
end

local function clock(seconds)
  if seconds ~= seconds or seconds == math.huge then return "--:--" end
  seconds = floor(seconds + 0.5)
  local h, m, s = floor(seconds / 3600), floor(seconds / 60) % 60, seconds % 60
  if h > 0 then return format("%d:%02d:%02d", h, m, s) end
  return format("%02d:%02d", m, s)
end

-- sent: the rows actually sent, for the rate (default: done; rows a
-- re-run skips are not sending speed).
function P:_stats(done, sent)
  local elapsed = max(monotonic() - self.start, 1e-6)
  local rate = (sent or done) / elapsed
  -- the ETA from every row processed: skipped rows pass too
  local left = self.total > done and (self.total - done) / max(done / elapsed, 1e-9) or 0
  return rate, left, elapsed
end

--- Shows the count done (at most a few times a second unless force); the
-- rate is of `sent` (rows actually sent) when given.
-- @tparam integer done
-- @tparam[opt] string detail
-- @tparam[opt] boolean force
-- @tparam[opt] integer sent
function P:update(done, detail, force, sent)
  if self.mode == "none" then return end
  local now = monotonic()
  if not force and now - self.last < self.interval then return end
  self.last = now
  local rate, left = self:_stats(done, sent)
  local total = self.total
  if self.mode == "bar" then
    local frac = total > 0 and min(done / total, 1) or 0
    local text = format(" %d/%d %3d%% %.0f/s ETA %s %s", done, total, floor(frac * 100), rate, clock(left), detail or "")
    local bar_width = max(10, min(40, self.width - #text - #self.label - 4))
    local filled = floor(frac * bar_width)
    local line = format("%s [%s%s]%s", self.label, rep("#", filled), rep("-", bar_width - filled), text)
    self.out:raw_err("\r" .. line .. "\27[K")
  else
    self.out:note(format("%s: %d/%d rows, %.0f rows/s, ETA %s%s", self.label, done, total, rate, clock(left),
      detail and (", " .. detail) or ""))
  end
end

--- Shows the last count and ends the bar's line.
-- @tparam integer done
-- @tparam[opt] string detail
-- @tparam[opt] integer sent
function P:finish(done, detail, sent)
  if self.mode == "none" then return end
  self:update(done, detail, true, sent)
  if self.mode == "bar" then self.out:raw_err("\n") end
end

return _M
