#!/usr/bin/env bash
# The plain 30-second runs of every fuzz target, round after round, as a
# user runs them: go test -run='^$' -fuzz='^X$' -fuzztime=30s PKG, default
# flags, on a fresh clone of HEAD. Per run it prints the exit status, the
# longest stretch of "0/sec" status lines after the baseline (the final
# summary line excluded; each line covers 3 s) and the last status line.
# FuzzWorld, which fails by design, starts from an empty corpus and cache
# each time and reports its time to first failure and the oracle.
#   scripts/fuzz-series.sh [rounds]        (BENCHMARKS.md has the results)
set -uo pipefail
rounds=${1:-10}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$src" "$work/clone" && cd "$work/clone" || exit 1
git log --oneline -1
cache=$(go env GOCACHE)/fuzz/github.com/vsocklab/vsocklab/fuzz/FuzzWorld
for r in $(seq 1 "$rounds"); do
  for spec in fuzz:FuzzHeader fuzz:FuzzChain fuzz:FuzzTXChain fuzz:FuzzCredit fuzz:FuzzHybridConnect \
      fuzz:FuzzTrace fuzz:FuzzSystem fuzz:FuzzSuspendResume emu/lab:FuzzYamuxBubbles fuzz:FuzzWorld; do
    pkg=${spec%%:*} t=${spec##*:}
    [ "$t" = FuzzWorld ] && rm -rf fuzz/testdata/fuzz/FuzzWorld fuzz/testdata/findings "$cache"
    start=$(date +%s.%N)
    out=$(go test -run='^$' -fuzz="^$t\$" -fuzztime=30s "./$pkg" 2>&1); rc=$?
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    zero=$(echo "$out" | grep '^fuzz: elapsed' | grep -v baseline | sed '$d' |
      awk '/\(0\/sec\)/{r++; if(r>m)m=r; next}{r=0}END{print m+0}')
    last=$(echo "$out" | grep '^fuzz: elapsed' | tail -1 | sed 's/fuzz: //')
    extra=""
    if [ "$t" = FuzzWorld ]; then
      extra="wall=${wall}s $(echo "$out" | grep -m1 -o 'oracle [a-z-]* failed') $(echo "$out" | grep -m1 'configuration:' | sed 's/^ *//')"
    fi
    echo "round $r $t rc=$rc zero-run=$zero | $last | $(echo "$out" | grep -m1 'deadline exceeded') $extra"
  done
done
rm -rf "$work"
