#!/usr/bin/env bash
# Time-to-first-failure of the system fuzz targets with the historical
# profiles, from an empty corpus, next to a blind random search with the same
# oracle. Results go to standard output; BENCHMARKS.md records them.
#   scripts/rediscover.sh [runs] [budget-seconds]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
budget=${2:-120}
export VSOCKLAB_PROFILE=historical
stash=$(mktemp -d)
restore() { for d in "$stash"/*; do [ -e "$d" ] && mv "$d" fuzz/testdata/fuzz/; done; rmdir "$stash"; }
trap restore EXIT
bin=$(mktemp)
go test -c -o "$bin" ./fuzz || exit 1
for target in FuzzSystem FuzzSuspendResume; do
  [ -d "fuzz/testdata/fuzz/$target" ] && mv "fuzz/testdata/fuzz/$target" "$stash/"
  for i in $(seq 1 "$runs"); do
    cache=$(mktemp -d)
    start=$(date +%s.%N)
    (cd fuzz && "$bin" -test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="${budget}s" -test.fuzzcachedir="$cache" >/dev/null 2>&1)
    status=$?
    end=$(date +%s.%N)
    rm -rf "$cache"
    # The failing input lands in testdata; it is not part of the empty corpus.
    rm -rf "fuzz/testdata/fuzz/$target"
    printf '%s run %d: %s after %.1fs\n' "$target" "$i" "$([ $status -ne 0 ] && echo failure || echo 'no failure')" "$(echo "$end - $start" | bc)"
  done
done
for target in system suspendresume; do
  for i in $(seq 1 "$runs"); do
    VSOCKLAB_BLIND=$target VSOCKLAB_BLIND_BUDGET=${budget}s go test -count=1 -run '^TestBlindSearch$' -v ./fuzz 2>&1 | grep -o 'blind search.*' | sed "s/^/$target run $i: /"
  done
done
