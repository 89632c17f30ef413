#!/usr/bin/env bash
# A FuzzWorld campaign from an empty corpus and cache: every failure's class
# (Finding.Class) joins VSOCKLAB_KNOWN_CLASSES, the triage list the target
# skips, and fuzzing goes on until the budget of fuzzing time is spent.
# Prints each class with the fuzzing time at which it first failed.
#   scripts/world-campaign.sh [budget-seconds]     (default 300)
set -uo pipefail
budget=${1:-300}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$src" "$work/clone" && cd "$work/clone" || exit 1
go test -c -fuzz=FuzzWorld -o "$work/fuzz.test" ./fuzz || exit 1
cd fuzz && rm -rf testdata/fuzz/FuzzWorld testdata/findings
known="" used=0
while [ "$(echo "$used < $budget" | bc)" = 1 ]; do
  left=$(echo "$budget - $used" | bc)
  start=$(date +%s.%N)
  out=$(VSOCKLAB_KNOWN_CLASSES="$known" "$work/fuzz.test" -test.run='^$' -test.fuzz='^FuzzWorld$' \
    -test.fuzztime="${left}s" -test.fuzzcachedir="$work/cache" 2>&1)
  used=$(echo "$used + $(date +%s.%N) - $start" | bc)
  class=$(echo "$out" | grep -m1 -o 'class: [^ ]*' | cut -d' ' -f2)
  if [ -z "$class" ]; then
    echo "no further failure; $(echo "$out" | grep '^fuzz: elapsed' | tail -1)"
    break
  fi
  printf '%s after %.1fs\n' "$class" "$used"
  known="$known $class"
done
echo "findings (traces): $work/clone/fuzz/testdata/findings"
