#!/usr/bin/env bash
# libFuzzer smoke test: build native Go fuzz targets of this package into
# libFuzzer binaries the way OSS-Fuzz / ClusterFuzzLite do (go-118-fuzz-build,
# then clang -fsanitize=fuzzer), seed each with its committed corpus
# converted to libFuzzer inputs, and run each for a while.
#
# Usage: fuzz/libfuzzer-smoke.sh [target...] [seconds]   (default: the TX
# chain target, 30 s each). Several targets share one staging, one
# go get and the instrumented build cache. Environment: GO118_VERSION
# (module version of github.com/AdamKorcz/go-118-fuzz-build), WORK
# (scratch directory), VSOCKLAB_KNOWN_CLASSES (default "*": the world
# target's findings are skipped, see below).
#
# The world target searches a space holding buggy devices and inits, and
# finds some within seconds by design: a smoke of it checks that the
# binary runs inputs through its bubbles without a crash, so every finding
# is a known class (VSOCKLAB_KNOWN_CLASSES='*', which the target skips)
# unless the caller sets VSOCKLAB_KNOWN_CLASSES itself (empty: none).
#
# Tools: clang comes from the distribution (apt-get install -y clang, tried
# when running as root), go-118-fuzz-build from the Go module proxy. When
# either cannot be had the script prints "skipped: <reason>" and exits 0.
# It exits non-zero when a build breaks, libFuzzer finds a crash, or a
# target executed no input. The repository is never modified: the build
# runs on a copy.
set -euo pipefail

targets=()
seconds=30
for arg in "$@"; do
  case $arg in
    Fuzz*) targets+=("$arg") ;;
    *[!0-9]* | '') echo "usage: $0 [target...] [seconds]"; exit 2 ;;
    *) seconds=$arg ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(FuzzTXChain)
export VSOCKLAB_KNOWN_CLASSES=${VSOCKLAB_KNOWN_CLASSES-*}
go118=${GO118_VERSION:-v0.0.0-20250520111509-a70c2aa677fa}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-${TMPDIR:-/tmp}/vsocklab-libfuzzer}

skip() { echo "skipped: $*"; exit 0; }
now() { date +%s; }
t0=$(now)
step() { printf '== %s (%ds)\n' "$*" $(( $(now) - t0 )); }

command -v go >/dev/null || skip "no go toolchain in PATH"
for target in "${targets[@]}"; do
  [ -d "$root/fuzz/testdata/fuzz/$target" ] || { echo "no corpus for $target under fuzz/testdata/fuzz"; exit 2; }
done

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

rc=0
for target in "${targets[@]}"; do
  step "go-118-fuzz-build -func $target"
  "$work/bin/go-118-fuzz-build" -tags gofuzz -o "$work/$target.a" -func "$target" ./fuzz

  step "clang -fsanitize=fuzzer"
  clang -fsanitize=fuzzer "$work/$target.a" -o "$work/$target" -lpthread -lresolv

  step "seed corpus"
  mkdir -p "$work/corpus/$target"
  go run ./fuzz/internal/libfuzzercorpus -o "$work/${target}_seed_corpus.zip" -raw "$work/corpus/$target" "fuzz/testdata/fuzz/$target"

  # The world target reads one byte per choice: longer inputs mean the
  # same, shorter ones run nothing (.clusterfuzzlite/build.sh ships the
  # same bound as FuzzWorld.options).
  opts=()
  [ "$target" = FuzzWorld ] && opts+=(-max_len=21)

  step "running $target for ${seconds}s (VSOCKLAB_KNOWN_CLASSES='$VSOCKLAB_KNOWN_CLASSES')"
  set +e
  # From $work: a world finding's trace goes to ./testdata/findings.
  (cd "$work" && "./$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/$target-" \
    "${opts[@]}" "corpus/$target") >"$work/$target.log" 2>&1
  trc=$?
  set -e
  grep -E '^#[0-9]+.*(INITED|DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb|ERROR|panic' "$work/$target.log" | tail -12 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
  if [ "$trc" = 0 ] && [ "${execs:-0}" -eq 0 ]; then
    echo "$target executed no input (log: $work/$target.log)"
    trc=1
  fi
  step "$target: exit status $trc, ${execs:-no} inputs executed (log: $work/$target.log, binary: $work/$target)"
  [ "$trc" = 0 ] || rc=$trc
done
exit "$rc"
