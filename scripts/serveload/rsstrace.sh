#!/bin/bash
# A measurement of issue 17 for BENCHMARKS.md; serveload is this directory's
# program (go build -o serveload ./scripts/serveload), found through $SERVELOAD or $PATH.
# usage: rsstrace.sh BIN TOTAL_BYTES : prints VmRSS every 5 s while streaming
BIN=$1; T=$2; shift 2
S=${TMPDIR:-/tmp}/t.$$.sock
${SERVELOAD:-serveload} sink -path ${S}_10001 -bytes $T &
K=$!
sleep 0.3
$BIN serve --uds $S --workload "writer total=$T size=${SIZE:-4KiB} every=0s" "$@" 2>/dev/null &
P=$!
while kill -0 $K 2>/dev/null; do sleep 5; grep -h VmRSS /proc/$P/status | tr -s ' \t' ' ' | tr '\n' ' '; done; echo
grep -E 'VmHWM|VmRSS' /proc/$P/status | tr -s ' \t' ' ' | tr '\n' ' '; echo
kill $P; wait $P
