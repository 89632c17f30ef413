#!/bin/bash
# A measurement of issue 17 for BENCHMARKS.md; serveload is this directory's
# program (go build -o serveload ./scripts/serveload), found through $SERVELOAD or $PATH.
# usage: rss.sh BIN TOTAL_BYTES [serve flags...]
BIN=$1; T=$2; shift 2
S=${TMPDIR:-/tmp}/r.$$.sock
${SERVELOAD:-serveload} sink -path ${S}_10001 -bytes $T &
K=$!
sleep 0.3
/usr/bin/time -v $BIN serve --uds $S --workload "writer total=$T size=${SIZE:-64KiB} every=0s" "$@" 2>${TMPDIR:-/tmp}/serve-rss.err &
P=$!
sleep 1
grep VmHWM /proc/$(pgrep -P $P)/status 2>/dev/null | sed 's/^/at 1s: /'
wait $K
C=$(pgrep -P $P); grep -E 'VmHWM|VmRSS' /proc/$C/status
kill $C; wait $P
grep -E 'Maximum resident|Elapsed|Exit status' ${TMPDIR:-/tmp}/serve-rss.err
