#!/bin/bash
# A measurement of issue 17 for BENCHMARKS.md: wall time, peak RSS (VmHWM, polled every 0.1 s)
# and exit status of one "BIN replay [flags] TRACE", killed after LIMIT_SECONDS of polling.
# usage: replaybound.sh BIN LIMIT_SECONDS TRACE [flags]
BIN=$1; L=$2; T=$3; shift 3
O=${TMPDIR:-/tmp}/out.$(basename $T).txt; E=${TMPDIR:-/tmp}/err.$(basename $T).txt
start=$(date +%s.%N)
$BIN replay "$@" $T > $O 2> $E &
P=$!
hwm=""
for i in $(seq $((L*10))); do
  kill -0 $P 2>/dev/null || break
  h=$(grep VmHWM /proc/$P/status 2>/dev/null | awk '{print $2}'); [ -n "$h" ] && hwm=$h
  sleep 0.1
done
if kill -0 $P 2>/dev/null; then kill -9 $P; wait $P 2>/dev/null; st="killed at ${L}s"; else wait $P; st="exit $?"; fi
end=$(date +%s.%N)
printf "%s: %.1f s wall, %s kB peak RSS (VmHWM), %s; stderr: %s\n" $(basename $T) $(echo "$end - $start" | bc) "$hwm" "$st" "$(grep -m1 -v '^replay:' $E | cut -c1-160)"
