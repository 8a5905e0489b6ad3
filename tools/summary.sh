#!/bin/sh
# summary.sh DIR: adds up busted's summary lines in DIR/*.log and prints the
# plain closing line "N passed, N failed".
passed=0; failed=0
for f in "$1"/*.log; do
  line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' "$f" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$(basename "$f"): no summary (the run died)"; failed=$((failed + 1)); continue
  fi
  s=$(echo "$line" | sed -E 's#^([0-9]+) .*#\1#')
  fl=$(echo "$line" | sed -E 's#^[0-9]+ success(es)? / ([0-9]+) failures? / ([0-9]+) errors?.*#\2 \3#')
  echo "$(basename "$f" .log): $line"
  passed=$((passed + s)); failed=$((failed + ${fl% *} + ${fl#* }))
done
echo "$passed passed, $failed failed"
