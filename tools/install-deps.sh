#!/bin/sh
# Installs the Debian packages ksms needs to build and test, when any is
# missing. Run as root it uses apt-get; otherwise it names what is missing.
set -e
PKGS="build-essential pkg-config lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev
lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev
libcurl4-openssl-dev libssl-dev zlib1g-dev openssl lua-cjson lua-busted
lua-socket lua-sec lua-expat lua-zlib luarocks valgrind libc-bin binutils
nginx-light libnginx-mod-http-lua curl clang libclang-rt-14-dev"
# make docs (the LDoc API reference)
PKGS="$PKGS lua-ldoc lua-dbi-sqlite3"
# the Redis client (hiredis reader) and the real Redis server the specs start
PKGS="$PKGS redis-server libhiredis-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ksms: missing Debian packages:$missing (run 'make deps' as root)" >&2
  exit 1
fi
echo "ksms: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
