#!/bin/bash
# A measurement of issue 17 for BENCHMARKS.md; serveload is this directory's
# program (go build -o serveload ./scripts/serveload), found through $SERVELOAD or $PATH.
# usage: burst.sh BIN N [serve flags...]
BIN=$1; N=$2; shift 2
S=${TMPDIR:-/tmp}/b.$$.sock
ulimit -n 8192
$BIN serve --uds $S --workload idle "$@" 2>${TMPDIR:-/tmp}/serve-burst.err &
P=$!
for i in $(seq 100); do [ -S $S ] && break; sleep 0.05; done
sleep 0.5
${SERVELOAD:-serveload} burst -uds $S -n $N
kill -0 $P 2>/dev/null && echo "serve alive" || echo "serve DEAD"
kill $P; wait $P; echo "serve exit $?"
