#!/bin/sh
# examples/nginx/demo.sh (make demo-nginx): the bundled fake Senders server
# and a real nginx with examples/nginx/nginx.conf, as it is, on 127.0.0.1;
# one SMS sent through the /notify handler with curl, the answer and the
# metrics printed, both stopped. Needs build/luajit/ksms/core.so (make
# LUA=luajit), nginx-light + libnginx-mod-http-lua, lua5.4 with LuaSocket
# and lua-cjson (the fake), and curl: `make demo-nginx` installs them first.
#
# KSMS_DEMO_PORT (8080): nginx's port. Another port runs a copy of the
# configuration with only its listen line changed, under build/nginx/.
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
port=${KSMS_DEMO_PORT:-8080}
fake_lua=${KSMS_DEMO_LUA:-lua5.4}
NGINX=/usr/sbin/nginx

[ -x "$NGINX" ] || { echo "demo-nginx: $NGINX is missing (Debian: nginx-light)" >&2; exit 1; }
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
  { echo "demo-nginx: the nginx Lua module is missing (Debian: libnginx-mod-http-lua)" >&2; exit 1; }
[ -f build/luajit/ksms/core.so ] || { echo "demo-nginx: build/luajit/ksms/core.so is missing (make LUA=luajit)" >&2; exit 1; }
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null
  else
    echo "demo-nginx: curl is missing (Debian: curl)" >&2; exit 1
  fi
fi

mkdir -p build/nginx
conf=examples/nginx/nginx.conf
if [ "$port" != 8080 ]; then
  sed "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$port;/" $conf > build/nginx/nginx-port.conf
  conf=build/nginx/nginx-port.conf
fi

fake_pid= nginx_pid=
cleanup() {
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.2; done
  [ -n "$nginx_pid" ] && kill -9 "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The fake prints "LISTENING <port>" once it accepts connections.
rm -f build/nginx/fake.out
"$fake_lua" spec/fakes/run.lua senders --port 0 --idle-exit 60 > build/nginx/fake.out 2> build/nginx/fake.log &
fake_pid=$!
fake_port=
for _ in $(seq 1 100); do
  fake_port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' build/nginx/fake.out 2>/dev/null)
  [ -n "$fake_port" ] && break
  kill -0 "$fake_pid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$fake_port" ] || { echo "demo-nginx: the fake provider did not start:" >&2; cat build/nginx/fake.log >&2; exit 1; }
echo "fake Senders server on 127.0.0.1:$fake_port"

# As root nginx would run its workers as nobody, who may not read the checkout.
globals="daemon off;"
[ "$(id -u)" = 0 ] && globals="$globals user root;"
: > build/nginx/error.log
env -u LUA_PATH -u LUA_CPATH -u LD_PRELOAD \
  KSMS_SENDERS_API_KEY=test-senders-key KSMS_SENDERS_BASE_URL="http://127.0.0.1:$fake_port" \
  "$NGINX" -p "$root/" -e build/nginx/error.log -c "$conf" -g "$globals" > build/nginx/stdout.log 2>&1 &
nginx_pid=$!
up=
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; then up=1; break; fi
  kill -0 "$nginx_pid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$up" ] || { echo "demo-nginx: nginx did not start:" >&2; cat build/nginx/stdout.log build/nginx/error.log >&2; exit 1; }
echo "nginx (examples/nginx/nginx.conf) on 127.0.0.1:$port"
echo
echo "\$ curl 'http://127.0.0.1:$port/notify?to=01012345678'"
status=$(curl -sS -o build/nginx/answer.txt -w '%{http_code}' "http://127.0.0.1:$port/notify?to=01012345678")
echo "HTTP $status: $(cat build/nginx/answer.txt)"
echo "\$ curl 'http://127.0.0.1:$port/notify'   # no ?to="
miss=$(curl -sS -o build/nginx/missing.txt -w '%{http_code}' "http://127.0.0.1:$port/notify")
echo "HTTP $miss: $(cat build/nginx/missing.txt)"
echo "\$ curl http://127.0.0.1:$port/metrics"
curl -sS "http://127.0.0.1:$port/metrics" | grep -v '^#' | grep -v '_bucket' || true
[ "$status" = 200 ] && [ "$miss" = 400 ] || { echo "demo-nginx: unexpected answers; build/nginx/error.log:" >&2; cat build/nginx/error.log >&2; exit 1; }
echo
echo "demo-nginx: ok"
