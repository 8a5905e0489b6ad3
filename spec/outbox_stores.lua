-- outbox_stores.lua - the stores every outbox spec runs against, as a list,
-- so another store (Redis, next) joins by adding an entry. Each entry:
--   name        shown in the spec's describe
--   new()       -> store spec for ksms.outbox.open, and a cleanup function
--   file        true when the store lives in a file another process can open
local M = {}

local function tmp_path()
  local p = os.tmpname() -- creates the file: the outbox wants its own name
  os.remove(p)
  return p .. ".outbox.db"
end

M.list = {
  { name = "memory", new = function() return "memory", function() end end },
  { name = "sqlite", file = true, new = function()
      local path = tmp_path()
      return "sqlite:" .. path, function()
        for _, s in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(path .. s) end
      end, path
    end },
}

return M
