#!/usr/bin/env bash
# libFuzzer smoke test: build ONE native Go fuzz target of this package into
# a libFuzzer binary the way OSS-Fuzz / ClusterFuzzLite do (go-118-fuzz-build,
# then clang -fsanitize=fuzzer), seed it with the committed corpus converted
# to libFuzzer inputs, and run it for a while.
#
# Usage: fuzz/libfuzzer-smoke.sh [target] [seconds]   (default: the TX
# chain target, 30 s). Environment: GO118_VERSION (module version of
# github.com/AdamKorcz/go-118-fuzz-build), WORK (scratch directory).
#
# Tools: clang comes from the distribution (apt-get install -y clang, tried
# when running as root), go-118-fuzz-build from the Go module proxy. When
# either cannot be had the script prints "skipped: <reason>" and exits 0.
# It exits non-zero when the build breaks or libFuzzer finds a crash.
# The repository is never modified: the build runs on a copy.
set -euo pipefail

target=${1:-FuzzTXChain}
seconds=${2:-30}
go118=${GO118_VERSION:-v0.0.0-20250520111509-a70c2aa677fa}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-${TMPDIR:-/tmp}/vsocklab-libfuzzer}

skip() { echo "skipped: $*"; exit 0; }
now() { date +%s; }
t0=$(now)
step() { printf '== %s (%ds)\n' "$*" $(( $(now) - t0 )); }

command -v go >/dev/null || skip "no go toolchain in PATH"
[ -d "$root/fuzz/testdata/fuzz/$target" ] || { echo "no corpus for $target under fuzz/testdata/fuzz"; exit 2; }

step "clang"
if ! command -v clang >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q clang >"$work.apt.log" 2>&1; then
      apt-get update -q >>"$work.apt.log" 2>&1 || true
      apt-get install -y -q clang >>"$work.apt.log" 2>&1 || skip "clang not installable with apt-get (log: $work.apt.log)"
    fi
  else
    skip "clang not found and not root with apt-get to install it"
  fi
fi
clang --version | head -1

rm -rf "$work"
mkdir -p "$work/bin" "$work/src" "$work/corpus"

step "go-118-fuzz-build $go118"
GOBIN="$work/bin" go install "github.com/AdamKorcz/go-118-fuzz-build@$go118" >"$work/install.log" 2>&1 ||
  skip "go-118-fuzz-build@$go118 not installable from the module proxy (log: $work/install.log)"

step "staging a copy of the module in $work/src"
tar --exclude=.git -C "$root" -cf - . | tar -C "$work/src" -xf -
cd "$work/src"
# The rewritten harness imports go-118-fuzz-build's testing package.
go get "github.com/AdamKorcz/go-118-fuzz-build/testing@$go118" >"$work/get.log" 2>&1 ||
  skip "github.com/AdamKorcz/go-118-fuzz-build/testing@$go118 not fetchable (log: $work/get.log)"

step "go-118-fuzz-build -func $target"
"$work/bin/go-118-fuzz-build" -tags gofuzz -o "$work/$target.a" -func "$target" ./fuzz

step "clang -fsanitize=fuzzer"
clang -fsanitize=fuzzer "$work/$target.a" -o "$work/$target" -lpthread -lresolv

step "seed corpus"
go run ./fuzz/internal/libfuzzercorpus -o "$work/${target}_seed_corpus.zip" -raw "$work/corpus" "fuzz/testdata/fuzz/$target"

step "running $target for ${seconds}s"
set +e
"$work/$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/" \
  "$work/corpus" >"$work/run.log" 2>&1
rc=$?
set -e
grep -E '^#[0-9]+.*(INITED|DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|ERROR|panic' "$work/run.log" | tail -12 || true
step "done: exit status $rc (log: $work/run.log, binary: $work/$target)"
exit "$rc"
