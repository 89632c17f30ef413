#!/bin/bash
# A measurement of issue 17 for BENCHMARKS.md; serveload is this directory's
# program (go build -o serveload ./scripts/serveload), found through $SERVELOAD or $PATH.
# usage: hold.sh BIN FDLIMIT N FOR [serve flags...]
BIN=$1; L=$2; N=$3; F=$4; shift 4
S=${TMPDIR:-/tmp}/h.$$.sock
( ulimit -n $L; exec $BIN serve --uds $S --workload idle "$@" ) 2>${TMPDIR:-/tmp}/serve-hold.err &
P=$!
for i in $(seq 100); do [ -S $S ] && break; sleep 0.05; done
sleep 0.5
${SERVELOAD:-serveload} hold -uds $S -n $N -for $F &
H=$!
sleep 4; echo "serve's open fds 4 s in: $(ls /proc/$P/fd 2>/dev/null | wc -l)"
sleep 8; echo "serve's open fds 12 s in: $(ls /proc/$P/fd 2>/dev/null | wc -l)"
wait $H
if kill -0 $P 2>/dev/null; then echo "serve alive"; kill $P; wait $P; echo "serve exit on SIGTERM: $?"; else wait $P; echo "serve DEAD, exit status $?"; fi
[ -e $S ] && echo "socket still there" || echo "socket removed"
echo "--- serve stderr:"; tail -5 ${TMPDIR:-/tmp}/serve-hold.err
