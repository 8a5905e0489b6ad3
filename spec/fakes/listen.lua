-- listen.lua - more ways into an httpd server, without changing httpd.lua:
--
--   listen.secure(server, ctx)      TLS on the server's own listener
--   listen.extra(server, { host =, port =, site =, ctx = })
--                                   another listening port served by the
--                                   same server (same handler, state, stats);
--                                   TLS when ctx is given. Returns the port.
--   listen.site_of(server, conn_id) the site a connection came in on
--                                   ("main" for the server's own listener)
--   listen.context(cert_file, key_file)   a LuaSec server context
--
-- TLS connections are LuaSec sockets. The handshake runs on the event loop:
-- dohandshake() is called whenever the socket is ready and never blocks, so
-- one slow or silent client holds up nobody. Once it completes, the
-- connection is handed to httpd as if its listener had accepted it, wrapped
-- so that LuaSec's "wantread"/"wantwrite" read as LuaSocket's "timeout".
-- A failed handshake (a plain-HTTP client, a client that refuses the
-- certificate) closes that connection and is logged on stderr.
local _M = {}

local site_maps = setmetatable({}, { __mode = "k" })   -- server -> { conn_id -> site }

function _M.context(cert, key)
  local ssl = require "ssl"
  local ctx, err = ssl.newcontext{ mode = "server", protocol = "any", certificate = cert,
                                   key = key, options = { "all" } }
  if not ctx then return nil, "TLS context: " .. tostring(err) end
  return ctx
end

---------------------------------------------------------------- TLS sockets

-- What httpd's connection code needs of a socket, over a LuaSec socket.
local Tls = {}
Tls.__index = Tls

local function as_timeout(err)
  if err == "wantread" or err == "wantwrite" then return "timeout" end
  return err
end

function Tls:getfd() return self.ssl:getfd() end
function Tls:dirty() return self.ssl:dirty() end      -- decrypted bytes waiting: readable now
function Tls:settimeout(t) return self.ssl:settimeout(t) end
function Tls:setoption() return true end              -- set on the TCP socket before the wrap
function Tls:close() return self.ssl:close() end

function Tls:receive(pattern)
  local data, err, partial = self.ssl:receive(pattern)
  return data, as_timeout(err), partial
end

function Tls:send(data, i, j)
  local last, err, partial = self.ssl:send(data, i, j)
  return last, as_timeout(err), partial
end

---------------------------------------------------------------- hand-over

-- Gives sock to httpd as the next accepted connection (its Server:accept
-- takes sockets from server.listener), and notes the connection's site.
local function adopt(server, sock, site)
  local real, given = server.listener, false
  server.listener = { accept = function()
    if given then return nil end
    given = true
    return sock
  end }
  local ok, err = pcall(server.accept, server)
  server.listener = real
  if not ok then error(err, 0) end
  if site then
    site_maps[server] = site_maps[server] or {}
    site_maps[server][server.next_conn_id] = site
  end
end

local function start_tls(server, raw, ctx, site)
  local ssl = require "ssl"
  raw:settimeout(0)
  raw:setoption("tcp-nodelay", true)
  local conn, err = ssl.wrap(raw, ctx)
  if not conn then
    raw:close()
    return server.log("tls: wrap failed: " .. tostring(err))
  end
  conn:settimeout(0)
  local want_write = false
  local watcher = {
    wants_read = function() return true end,
    wants_write = function() return want_write end,
  }
  local function step()
    local ok, herr = conn:dohandshake()
    if ok then
      server:unwatch(conn)
      adopt(server, setmetatable({ ssl = conn }, Tls), site)
    elseif herr == "wantread" or herr == "timeout" then
      want_write = false
    elseif herr == "wantwrite" then
      want_write = true
    else
      server:unwatch(conn)
      conn:close()
      server.log("tls: handshake failed: " .. tostring(herr))
    end
  end
  watcher.on_readable, watcher.on_writable = step, step
  server:watch(conn, watcher)
  step()
end

---------------------------------------------------------------- listeners

function _M.secure(server, ctx)
  local watcher = server.watched[server.listener]
  watcher.on_readable = function()
    while true do
      local raw = server.listener:accept()
      if not raw then return end
      start_tls(server, raw, ctx, nil)
    end
  end
  server.tls = true
end

function _M.extra(server, opts)
  local listener, err = require("fakes.httpd").listen_socket(opts.host, opts.port, opts.backlog)
  if not listener then return nil, err end
  server:watch(listener, {
    wants_read = function() return not server.stopping end,
    wants_write = function() return false end,
    on_readable = function()
      while true do
        local raw = listener:accept()
        if not raw then return end
        if opts.ctx then
          start_tls(server, raw, opts.ctx, opts.site)
        else
          adopt(server, raw, opts.site)
        end
      end
    end,
  })
  local _, port = listener:getsockname()
  return tonumber(port)
end

function _M.site_of(server, conn_id)
  local map = site_maps[server]
  return map and map[conn_id] or "main"
end

return _M
