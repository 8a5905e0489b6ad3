-- nginx_control.lua - start and stop a real nginx (Debian's nginx-light,
-- with the Lua module when asked) on 127.0.0.1 with a generated
-- configuration and prefix under a temp directory. Used by the benchmarks
-- (a server that is not the bottleneck) and by the OpenResty specs.
--
--   local nginx = require("nginx_control").start{ http = "<server-level config>",
--     lua = true, workers = 1 }
--   nginx.port, nginx.base_url, nginx.prefix; nginx:stop()
--
-- With ksms = true (implies lua = true) the Lua module finds ksms: absolute
-- lua_package_path to the repository's lua/ and lua_package_cpath to
-- build/luajit/ (nginx's Lua is always LuaJIT). nginx_control.available()
-- tells whether nginx and its Lua module are installed.
local socket = require "socket"
local H = require "helper"

local free_port, exec_ok, write = H.free_port, H.exec_ok, H.write_file

local _M = {}

local NGINX = "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules/"

local Nginx = {}
Nginx.__index = Nginx

-- true, or false and why nginx with the Lua module cannot run here.
function _M.available()
  local f = io.open(NGINX, "r")
  if not f then return false, NGINX .. " is not installed (Debian: nginx-light)" end
  f:close()
  f = io.open(MODULES .. "ngx_http_lua_module.so", "r")
  if not f then return false, "the nginx Lua module is not installed (Debian: libnginx-mod-http-lua)" end
  f:close()
  return true
end

-- true, or false and why the ksms specs that run inside nginx cannot
-- (nginx and its Lua module, and build/luajit's core, which nginx loads).
function _M.ready()
  local ok, why = _M.available()
  if not ok then return false, why end
  local f = io.open(_M.repo_root() .. "/build/luajit/ksms/core.so", "r")
  if not f then return false, "build/luajit/ksms/core.so is not built" end
  f:close()
  return true
end

-- The repository's root (this file is spec/nginx_control.lua).
function _M.repo_root()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")
  if not here or here:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    local cwd = p:read("*l")
    p:close()
    here = here and (cwd .. "/" .. here) or cwd
  end
  return here
end

local root_checked, root
local function is_root()
  if not root_checked then
    local p = io.popen("id -u")
    root = p and p:read("*l") == "0"
    if p then p:close() end
    root_checked = true
  end
  return root
end

-- lua_package_path / lua_package_cpath lines for ksms (absolute paths);
-- extra_path: more "dir/?.lua" entries before ksms's.
function _M.ksms_paths(extra_path)
  local root = _M.repo_root()
  return ('lua_package_path "%s%s/lua/?.lua;%s/lua/?/init.lua;;";\n  lua_package_cpath "%s/build/luajit/?.so;;";\n')
    :format(extra_path and (extra_path .. ";") or "", root, root, root)
end

-- opts.locations: text placed inside the server block; opts.http: text
-- placed in the http block; opts.main: text at the top level (env, ...);
-- opts.lua: load the Lua module (and NDK); opts.ksms: lua = true plus
-- ksms's package paths (opts.lua_path: more path entries first);
-- opts.workers: worker processes (default 1); opts.log_level (warn);
-- opts.reuseport: the listen socket is one per worker, so the kernel
-- spreads connections over every worker (specs of shared state).
-- opts.conf: a whole configuration instead (paths relative to the prefix;
-- it runs with -g "daemon off;"), with opts.port the port it listens on.
function _M.start(opts)
  local prefix = os.tmpname()
  os.remove(prefix)
  assert(exec_ok("mkdir -p " .. prefix .. "/logs " .. prefix .. "/conf"))
  local port = opts.port or free_port()
  local modules = ""
  local http = opts.http or ""
  if opts.ksms then http = _M.ksms_paths(opts.lua_path) .. "  " .. http end
  if opts.lua or opts.ksms then
    modules = ("load_module %sndk_http_module.so;\nload_module %sngx_http_lua_module.so;\n"):format(MODULES, MODULES)
  end
  local conf = modules .. (opts.main or "") .. ([[

worker_processes %d;
daemon off;
master_process on;
error_log %s/logs/error.log %s;
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
    listen 127.0.0.1:%d%s;
    %s
  }
}
]]):format(opts.workers or 1, prefix, opts.log_level or "warn", prefix, prefix, prefix, prefix, prefix, prefix,
    http, port, opts.reuseport and " reuseport" or "", opts.locations or "")
  local globals = ""
  if opts.conf then
    conf, globals = opts.conf, "daemon off;"
  end
  -- As root, nginx would run its workers as nobody, who cannot read a
  -- checkout under a private (0700) directory such as a CI's mktemp -d:
  -- keep them the master's user.
  if is_root() then globals = globals .. " user root;" end
  local flags = globals ~= "" and (" -g '" .. globals .. "'") or ""
  write(prefix .. "/conf/nginx.conf", conf)
  -- Without LD_PRELOAD: under `make asan` the sanitizer runtime is
  -- preloaded for the interpreters; nginx is not built for it. Without
  -- LUA_PATH / LUA_CPATH: the Lua module would append the spec runner's
  -- (relative, Lua 5.4) paths to its own.
  local cmd = ("env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s -p %s -c conf/nginx.conf%s >%s/logs/stdout.log 2>&1 & echo $!")
    :format(NGINX, prefix, flags, prefix)
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
  local text = log and log:read("*a") or ""
  self:stop()
  error("nginx did not start: " .. text)
end

function Nginx:reload()
  assert(exec_ok(("env -u LD_PRELOAD %s -p %s -c conf/nginx.conf -s reload"):format(NGINX, self.prefix)))
end

function Nginx:error_log()
  local f = io.open(self.prefix .. "/logs/error.log")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

function Nginx:stop()
  if not self.pid then return end
  os.execute(("kill -QUIT %d 2>/dev/null"):format(self.pid))
  for _ = 1, 100 do
    if not exec_ok(("kill -0 %d 2>/dev/null"):format(self.pid)) then break end
    socket.sleep(0.05)
  end
  os.execute(("kill -9 %d 2>/dev/null"):format(self.pid))
  os.execute("rm -rf " .. self.prefix)
  self.pid = nil
end

return _M
