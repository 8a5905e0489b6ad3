#!/bin/sh
# fuzz/run.sh MODE [SECONDS]: runs every libFuzzer harness and every Lua
# mutation target (make fuzz-build and make fuzz-corpus first; the Makefile
# does). Run from the repository root.
#
#   smoke   replays fuzz/regressions/, then SECONDS (2) of fuzzing per
#           harness and per Lua target; a new break is kept under
#           build/fuzz/artifacts/<name>/. Exit 1 on any crash or break.
#   long    the same for SECONDS (60) each, one at a time; a new
#           break is saved under fuzz/regressions/<name>/ and the run goes
#           on to find more (commit the reproducer with its fix).
#   replay  only the regressions.
#
# FUZZ_ONLY="frame csv ..." limits the run to those names. FUZZ_RESULTS=FILE
# also writes a summary line there ("N successes / N failures / 0 errors"). FUZZ_LUA lists
# the interpreters of the Lua targets ("lua5.4 luajit"; in a smoke pass
# LuaJIT only replays the regressions and seeds).
mode="${1:-smoke}"
case "$mode" in
  smoke) secs="${2:-2}" ;;
  long) secs="${2:-60}" ;;
  replay) secs=0 ;;
  *) echo "usage: fuzz/run.sh smoke|long|replay [SECONDS]" >&2; exit 2 ;;
esac

B=build/fuzz
LOGS=$B/logs
rm -rf "$B/artifacts" "$LOGS"
mkdir -p "$LOGS"
status=0
started=$(date +%s)

wanted() { [ -z "$FUZZ_ONLY" ] || echo " $FUZZ_ONLY " | grep -q " $1 "; }
regressions() { ls "fuzz/regressions/$1" 2>/dev/null | grep -v '\.txt$' | sed "s|^|fuzz/regressions/$1/|"; }
broke() { echo "FUZZ BREAK: $*"; status=1; unit_ok=0; }
# One unit per harness and per Lua target and interpreter, counted for
# FUZZ_RESULTS (a busted-style summary line that tools/summary.sh adds up).
passed=0; failed=0
unit_done() { if [ "$unit_ok" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi; }

# The sanitizers abort on the first report; in a long run an invariant
# break is saved and fuzzing goes on (KSMS_FUZZ_KEEP_GOING, harness.h).
export ASAN_OPTIONS="quarantine_size_mb=64:detect_leaks=0:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# ---- the libFuzzer harnesses (fuzz/fuzz_*.c) -------------------------------
for src in fuzz/fuzz_*.c; do
  h=$(basename "$src" .c); h=${h#fuzz_}
  wanted "$h" || continue
  unit_ok=1
  bin=$B/fuzz_$h
  art=$B/artifacts/$h
  mkdir -p "$art" "$B/work/$h"
  for r in $(regressions "$h"); do
    if ! "$bin" "$r" >"$LOGS/$h-replay.log" 2>&1; then
      broke "$h: regression $r still breaks:"
      grep -E 'invariant broken|runtime error|ERROR: AddressSanitizer|SUMMARY' "$LOGS/$h-replay.log" | head -3
    fi
  done
  if [ "$secs" = 0 ]; then unit_done; continue; fi
  keep=""
  if [ "$mode" = long ]; then keep="$art"; fi
  log=$LOGS/$h.log
  # UBSan keeps going in a long run too (each report once per place).
  KSMS_FUZZ_KEEP_GOING="$keep" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=$([ "$mode" = long ] && echo 0 || echo 1)" \
    "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=16384 \
      -print_final_stats=1 -artifact_prefix="$art/" "$B/work/$h" "$B/corpus/$h" >"$log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  [ -z "$runs" ] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  echo "fuzz_$h: ${runs:-?} executions in ${secs}s"
  if [ $rc -ne 0 ]; then
    broke "$h: crashed (log $log):"
    grep -E 'invariant broken|runtime error|ERROR: AddressSanitizer|SUMMARY|Test unit written' "$log" | head -4
  fi
  if grep -q 'runtime error:' "$log" && [ $rc -eq 0 ]; then
    broke "$h: UBSan reports (log $log):"
    grep 'runtime error:' "$log" | sort -u | head -5
  fi
  for f in "$art"/break-*; do
    [ -f "$f" ] || continue
    case "$f" in *.txt) continue ;; esac
    broke "$h: invariant broken: $(cat "$f.txt")"
  done
  if [ "$mode" = long ]; then
    for f in "$art"/crash-* "$art"/break-* "$art"/timeout-* "$art"/oom-*; do
      [ -f "$f" ] || continue
      mkdir -p "fuzz/regressions/$h"
      mv "$f" "fuzz/regressions/$h/" && echo "  saved fuzz/regressions/$h/$(basename "$f")"
    done
  fi
  unit_done
done

# ---- the Lua mutation targets (fuzz/lua_mutate.lua), under ASan -------------
PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
FUZZ_LUA="${FUZZ_LUA:-lua5.4 luajit}"
targets=$(LUA_CPATH="build/lua5.4/?.so;;" lua5.4 fuzz/lua_mutate.lua --list)
for interp in $FUZZ_LUA; do
  t_secs=$secs
  # In a smoke pass LuaJIT only replays the regressions.
  [ "$mode" = smoke ] && [ "$interp" != lua5.4 ] && t_secs=0
  for t in $targets; do
    wanted "$t" || continue
    unit_ok=1
    save=$B/artifacts/$t
    [ "$mode" = long ] && save=fuzz/regressions/$t
    cur=$B/current-$interp-$t
    log=$LOGS/lua-$interp-$t.log
    LD_PRELOAD="$PRELOAD" LUA_CPATH="build/asan-$interp/?.so;;" \
      "$interp" fuzz/lua_mutate.lua "$t" --seconds "$t_secs" --corpus "$B/corpus/lua/$t" \
        --replay "fuzz/regressions/$t" --save "$save" --current "$cur" >"$log" 2>&1
    rc=$?
    tail -n 1 "$log" | grep -q '^lua_mutate' && echo "$interp $(tail -n 1 "$log" | sed 's/^lua_mutate //')"
    if [ $rc -eq 1 ]; then
      broke "$t ($interp): (log $log)"
      grep -E '^lua_mutate .*BREAK' "$log" | cut -c1-300 | head -5
    elif [ $rc -ne 0 ]; then
      mkdir -p "$save"
      sum=$(sha1sum "$cur" | cut -c1-12)
      cp "$cur" "$save/crash-$sum"
      broke "$t ($interp): crashed with status $rc; the input is $save/crash-$sum (log $log):"
      grep -E 'ERROR: AddressSanitizer|SUMMARY|runtime error|Segmentation' "$log" | head -3
      echo "$interp crashed with status $rc" >"$save/crash-$sum.txt"
    fi
    unit_done
  done
done

if [ -n "$FUZZ_RESULTS" ]; then
  mkdir -p "$(dirname "$FUZZ_RESULTS")"
  echo "$passed successes / $failed failures / 0 errors (fuzz $mode: harnesses and Lua targets)" >"$FUZZ_RESULTS"
fi

echo "fuzz $mode: $(( $(date +%s) - started ))s, $([ $status = 0 ] && echo 'no breaks' || echo 'BREAKS FOUND')"
exit $status
