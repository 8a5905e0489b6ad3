#!/bin/sh
# run-specs.sh INTERPRETER BUILD_DIR LOG: every spec under one interpreter.
# Output goes to the terminal and to LOG (tools/summary.sh reads it).
interp="$1"; build="$2"; log="$3"
mkdir -p "$(dirname "$log")"
echo "== specs under $interp ($build)"
LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="$build/?.so;;" \
KSMS_TEST_LUA="$interp" KSMS_TEST_BUILD="$build" \
  "$interp" /usr/bin/busted --helper=spec/helper.lua -o utfTerminal spec 2>&1 | tee "$log"
# busted's exit status is lost in the pipe; its summary line tells.
grep -Eq '^[0-9]+ success(es)? / 0 failures / 0 errors' "$log"
