#!/usr/bin/env bash
# The BENCHMARKS.md table of a series of world-campaign.sh runs:
#   scripts/world-table.sh BUDGET-SECONDS DIR
# reads DIR/fuzz-*.txt and DIR/blind-*.txt and prints, per incident of
# scripts/world-incidents.txt, every run's time to first failure (- when
# the run did not find it within BUDGET), the medians (>BUDGET when fewer
# than half the runs found it) and blind median / fuzzer median.
set -euo pipefail
budget=$1 dir=$2
here=$(dirname "$0")
row() { "$here/world-incidents.sh" "$@" | grep -v '^unclaimed' | sed 's/^[^:]*: //'; }
names=$(grep -v '^#' "$here/world-incidents.txt" | cut -f1)
paste -d'|' <(echo "$names") <(row "$dir"/fuzz-*.txt) <(row "$dir"/blind-*.txt) | awk -F'|' -v B="$budget" '
  function median(s,   a, n, i, j, t, found) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) if (a[i] == "-") a[i] = B + 1e9; else found++
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (found * 2 <= n) return ">" B
    return a[int((n + 1) / 2)]
  }
  BEGIN { print "| incident | fuzzer (s, 5 runs) | median | blind (s, 5 runs) | median | blind / fuzzer |"; print "|---|---|---|---|---|---|" }
  {
    fm = median($2); bm = median($3)
    ratio = (fm ~ />/ || bm ~ />/) ? "-" : (fm > 0 ? sprintf("%.2f", bm / fm) : "-")
    gsub(" ", ", ", $2); gsub(" ", ", ", $3)
    printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, fm, $3, bm, ratio
  }'
