#!/bin/sh
# run-specs.sh INTERPRETER BUILD_DIR LOG [subset|sanitized|nonginx]: the
# specs under one interpreter: every spec, or the sets described below.
# Output goes to the terminal and to LOG (tools/summary.sh reads it).
interp="$1"; build="$2"; log="$3"; which="${4:-all}"
mkdir -p "$(dirname "$log")"

# The subset `make test` runs under Lua 5.1, 5.2 and 5.3 (the whole suite
# runs under 5.4 and LuaJIT), about 35 s each: the C core and its codecs,
# its HTTP client (its TCP client through the OneShot session), every
# provider's client against its fake, the OneShot client and session
# against the fake, on_event, ksms.metrics and the logger, the CLI (all of
# cli_spec but its large-file memory check and its kill and Ctrl-C runs;
# busted's --filter-out takes Lua patterns), streaming send_many, the
# outbox and the RESP codec. (ksms.redis, Lua over the same socket
# adapters as the OneShot session, runs in the 5.4 and LuaJIT passes.)
SUBSET="aes base64 frame json text zlib core_module errors rules
oneshot_codec oneshot_message oneshot_protocol http
senders ppurio messageme cafe24 client_boundary
oneshot_session oneshot_client events metrics logger cli cli_json
send_many_stream outbox resp"
SUBSET_OUT="keeps memory flat on a large file"
SUBSET_OUT2="a run killed mid%-send resumes"
SUBSET_OUT3="Ctrl%-C %(SIGINT%) mid%-send"

# The sanitizer passes (make asan-run) leave out the specs whose ksms code
# runs in a process that never loads the sanitized core: nginx (always
# build/luajit) and the rock build (luarocks compiles its own); and the
# outbox fault spec, which is about processes and files (kill -9 a hundred
# times, a full disk, corrupted files): it loads the core, but the sanitized
# interpreters would make its ~40 s several minutes and its kills find no
# more there. The outbox worker and tracking specs go too: they are Lua
# logic over SQLite and the fakes, waiting on latency; the C they reach
# (request_many's streaming callbacks) is under the sanitizers through
# send_many_stream and http. So do the CLI spec (the ksms command is Lua
# over the core; the C it reaches is in the codec, HTTP and OneShot specs,
# and it is the longest spec), ksms.redis's (Lua over the RESP codec,
# which resp_spec puts under the sanitizers) and the Redis store's (worker
# processes, nginx, Redis killed). The ordinary passes run them. So does
# the fleet's fault spec (binder and producer processes killed, paused
# and restarted, Redis restarted: ~25 s of processes and sockets, pacing
# checked at the fake, which the sanitizers' slowdown would only upset),
# the fleet demo's (processes again) and fleet_claims (Redis paused with
# SIGSTOP past a timeout: a wait, not C).
NOT_SANITIZED="nginx_oneshot nginx_fleet nginx_metrics nginx_rate nginx_router install outbox_faults fleet_faults fleet_demo fleet_claims outbox_worker outbox_track outbox_redis cli redis"

# The nginx specs whose every ksms line runs inside nginx, which loads
# build/luajit whatever the spec's interpreter: the LuaJIT pass runs them,
# the Lua 5.4 pass ("nonginx") would only repeat it. (nginx_http stays in
# both: half of it is ksms.transport.http1 run by the spec's interpreter.)
NGINX_ONLY="nginx_oneshot nginx_fleet nginx_metrics nginx_rate nginx_router"

# The fleet's process specs run once too, in the LuaJIT pass: their ksms
# code runs in binder and producer processes of one interpreter, and what
# differs between interpreters (the fleet's Lua, ksms.redis, the outbox's
# Redis store) the 5.4 pass runs in fleet, fleet_reports, redis and
# outbox_redis. (~35 s saved of the 15-minute budget.) So does the
# outbox's fault spec (~40 s: worker processes killed a hundred times, two
# racing, a full disk, damaged files): what it finds is about processes
# and SQLite, and the outbox's Lua under both interpreters is in outbox,
# outbox_worker and outbox_track, which both passes run.
ONE_PASS="$NGINX_ONLY fleet_faults fleet_demo outbox_faults"

# Every spec file but those named in $1 (names without _spec.lua).
specs_without() {
  for f in spec/*_spec.lua; do
    name=$(basename "$f" _spec.lua); skip=""
    for n in $1; do [ "$name" = "$n" ] && skip=1; done
    [ -z "$skip" ] && echo "$f"
  done
}

if [ "$which" = nonginx ]; then
  files=$(specs_without "$ONE_PASS")
  echo "== specs under $interp ($build), but those the LuaJIT pass alone runs (inside nginx, or fleet and outbox processes): $ONE_PASS"
  set -- $files
elif [ "$which" = sanitized ]; then
  files=$(specs_without "$NOT_SANITIZED")
  echo "== specs under $interp ($build), but those left out of the sanitizer passes: $NOT_SANITIZED"
  # The CLI's large-file memory check measures the Lua heap, not C, and
  # takes long under the sanitizers.
  set -- --filter-out="$SUBSET_OUT" $files
elif [ "$which" = subset ]; then
  files=""
  for s in $SUBSET; do files="$files spec/${s}_spec.lua"; done
  echo "== specs under $interp ($build): the subset"
  set -- --filter-out="$SUBSET_OUT" --filter-out="$SUBSET_OUT2" --filter-out="$SUBSET_OUT3" $files
else
  echo "== specs under $interp ($build)"
  set -- spec
fi
LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="$build/?.so;;" \
KSMS_TEST_LUA="$interp" KSMS_TEST_BUILD="$build" \
  "$interp" /usr/bin/busted --helper=spec/helper.lua -o utfTerminal "$@" 2>&1 | tee "$log"
# busted's exit status is lost in the pipe; its summary line tells.
grep -Eq '^[0-9]+ success(es)? / 0 failures / 0 errors' "$log"
