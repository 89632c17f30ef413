#!/usr/bin/env bash
# One FuzzWorld campaign from an empty corpus and cache, or a blind random
# search over the same space with the same budget, on a clean clone of this
# checkout. Either way every finding's class (fuzz.Finding.Class) is logged
# with its time (VSOCKLAB_FINDINGS_LOG) and the search goes on: the fuzzer
# skips a logged input instead of stopping at it, so one run of the whole
# budget finds every class it can. One process, one worker (-parallel=1).
#   scripts/world-campaign.sh [budget-seconds] [fuzz|blind] [out-file]
# (defaults 300, fuzz, stdout). Prints "SECONDS CLASS" for the first
# finding of each class, seconds since the search started (the build is
# not counted). scripts/world-incidents.sh maps classes to incidents.
set -uo pipefail
budget=${1:-300}
mode=${2:-fuzz}
out=${3:-/dev/stdout}
src=$(cd "$(dirname "$0")/.." && pwd)
# A fixed path per mode, cloned afresh each run: the same sources at the
# same path hit Go's build cache, so a series of runs builds once.
work=${TMPDIR:-/tmp}/vsocklab-world-campaign-$mode-$(id -u)
rm -rf "$work" && mkdir -p "$work" || exit 1
git clone -q "$src" "$work/clone" && cd "$work/clone" || exit 1
case $mode in
  fuzz) go test -c -fuzz=FuzzWorld -o "$work/fuzz.test" ./fuzz || exit 1 ;;
  blind) go test -c -o "$work/fuzz.test" ./fuzz || exit 1 ;;
  *) echo "mode: fuzz or blind, not $mode" >&2; exit 2 ;;
esac
cd fuzz && rm -rf testdata/fuzz/FuzzWorld testdata/findings
log=$work/findings.log
: >"$log"
start=$(date +%s%N)
if [ "$mode" = fuzz ]; then
  VSOCKLAB_FINDINGS_LOG=$log "$work/fuzz.test" -test.run='^$' -test.fuzz='^FuzzWorld$' -test.parallel=1 \
    -test.fuzztime="${budget}s" -test.fuzzcachedir="$work/cache" >"$work/run.out" 2>&1
else
  VSOCKLAB_BLIND=world VSOCKLAB_BLIND_BUDGET="${budget}s" VSOCKLAB_FINDINGS_LOG=$log \
    "$work/fuzz.test" -test.run='^TestBlindWorld$' -test.v -test.timeout=0 >"$work/run.out" 2>&1
fi
status=$?
# First line of each class, in time order.
awk -v s="$start" '!seen[$2]++ { printf "%.1f %s\n", ($1 - s) / 1e9, $2 }' "$log" >"$out"
echo "$mode: exit $status, $(grep -c . "$log") findings logged, $(grep -c . "$out" 2>/dev/null || true) classes; $(grep -E '^fuzz: elapsed|blind search' "$work/run.out" | tail -1)" >&2
[ "$status" = 0 ] || tail -20 "$work/run.out" >&2
