-- nginx_control.lua - start and stop a real nginx (Debian's nginx-light,
-- with the Lua module when asked) on 127.0.0.1 with a generated
-- configuration and prefix under a temp directory. Used by the benchmarks
-- (a server that is not the bottleneck) and by the OpenResty specs.
--
--   local nginx = require("nginx_control").start{ http = "<server-level config>",
--     lua = true, workers = 1 }
--   nginx.port, nginx.base_url, nginx.prefix; nginx:stop()
local socket = require "socket"

local _M = {}

local NGINX = "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules/"

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local function write(path, data)
  local f = assert(io.open(path, "w"))
  f:write(data)
  f:close()
end

local Nginx = {}
Nginx.__index = Nginx

-- opts.locations: text placed inside the server block; opts.http: text
-- placed in the http block; opts.lua: load the Lua module (and NDK);
-- opts.workers: worker processes (default 1).
function _M.start(opts)
  local prefix = os.tmpname()
  os.remove(prefix)
  assert(os.execute("mkdir -p " .. prefix .. "/logs " .. prefix .. "/conf"))
  local port = opts.port or free_port()
  local modules = ""
  if opts.lua then
    modules = ("load_module %sndk_http_module.so;\nload_module %sngx_http_lua_module.so;\n"):format(MODULES, MODULES)
  end
  local conf = modules .. ([[
worker_processes %d;
daemon off;
master_process on;
error_log %s/logs/error.log warn;
pid %s/logs/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path %s/tmp_body;
  proxy_temp_path %s/tmp_proxy;
  fastcgi_temp_path %s/tmp_fastcgi;
  uwsgi_temp_path %s/tmp_uwsgi;
  scgi_temp_path %s/tmp_scgi;
  %s
  server {
    listen 127.0.0.1:%d;
    %s
  }
}
]]):format(opts.workers or 1, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
    opts.http or "", port, opts.locations or "")
  write(prefix .. "/conf/nginx.conf", conf)
  local cmd = ("%s -p %s -c conf/nginx.conf >%s/logs/stdout.log 2>&1 & echo $!"):format(NGINX, prefix, prefix)
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("*l"))
  p:close()
  local self = setmetatable({ pid = pid, port = port, prefix = prefix,
    base_url = "http://127.0.0.1:" .. port }, Nginx)
  -- Wait until it accepts connections.
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then
      c:close()
      return self
    end
    c:close()
    socket.sleep(0.05)
  end
  local log = io.open(prefix .. "/logs/error.log") 
  local text = log and log:read("a") or ""
  self:stop()
  error("nginx did not start: " .. text)
end

function Nginx:reload()
  assert(os.execute(("%s -p %s -c conf/nginx.conf -s reload"):format(NGINX, self.prefix)))
end

function Nginx:error_log()
  local f = io.open(self.prefix .. "/logs/error.log")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function Nginx:stop()
  if not self.pid then return end
  os.execute(("kill -QUIT %d 2>/dev/null"):format(self.pid))
  for _ = 1, 100 do
    if not os.execute(("kill -0 %d 2>/dev/null"):format(self.pid)) then break end
    socket.sleep(0.05)
  end
  os.execute(("kill -9 %d 2>/dev/null"):format(self.pid))
  os.execute("rm -rf " .. self.prefix)
  self.pid = nil
end

return _M
