#!/usr/bin/env bash
# Time to first failure per incident, from world-campaign.sh outputs:
#   scripts/world-incidents.sh RUN-FILE...
# Prints, per incident of scripts/world-incidents.txt, the first time in
# each run (- when that run did not find it), then the classes no rule
# claims (with the run count that found them).
set -euo pipefail
rules=$(dirname "$0")/world-incidents.txt
awk -F'\t' -v nruns=$# '
  FNR == NR { if ($0 !~ /^#/ && NF == 2) { n++; name[n] = $1; re[n] = $2 } ; next }
  FNR == 1 { run++ }
  {
    split($0, f, " "); t = f[1]; c = f[2]; hit = 0
    for (i = 1; i <= n; i++) if (c ~ re[i]) { hit = 1; if (!((i, run) in first)) first[i, run] = t }
    if (!hit && !((c, run) in seenother)) { seenother[c, run] = 1; other[c]++ }
  }
  END {
    for (i = 1; i <= n; i++) {
      line = name[i] ":"
      for (r = 1; r <= nruns; r++) line = line " " (((i, r) in first) ? first[i, r] : "-")
      print line
    }
    for (c in other) print "unclaimed " c " (" other[c] " of " nruns " runs)"
  }' "$rules" "$@"
