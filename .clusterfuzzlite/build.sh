#!/bin/bash -eu
# Builds every native fuzz target of ./fuzz as a libFuzzer binary with
# compile_native_go_fuzzer (go-118-fuzz-build under the hood) and ships each
# target's committed corpus as <fuzzer>_seed_corpus.zip: OSS-Fuzz and
# ClusterFuzzLite ignore f.Add seeds. fuzz/libfuzzer-smoke.sh does the same
# for chosen targets outside the container.
#
# FuzzWorld runs whole systems in synctest bubbles: its harness takes its
# bubbles from lab.Hosted (fuzz/runner.go), which starts Go's testing
# framework inside the libFuzzer binary. It finds buggy historical
# configurations within seconds, by design: set VSOCKLAB_KNOWN_CLASSES
# (classes to skip, "*" for all) or VSOCKLAB_FINDINGS_LOG in the fuzzing
# environment to go past them (fuzz/README.md).

cd "$SRC/vsocklab"
export CXX="${CXX} -lresolv" # the Go runtime's resolver, as quic-go's build does

go118=v0.0.0-20250520111509-a70c2aa677fa
# The rewritten harnesses import go-118-fuzz-build's testing package.
go get "github.com/AdamKorcz/go-118-fuzz-build/testing@$go118"

targets="FuzzHeader FuzzChain FuzzTXChain FuzzCredit FuzzHybridConnect FuzzTrace FuzzWorld"

# Seed corpora first, with a plain Go build: the committed "go test fuzz v1"
# files converted to the inputs the libFuzzer harness decodes.
for t in $targets; do
  CGO_ENABLED=0 go run ./fuzz/internal/libfuzzercorpus \
    -o "$OUT/${t}_seed_corpus.zip" "fuzz/testdata/fuzz/$t"
done
# FuzzWorld reads one byte per choice (21): longer inputs mean the same.
printf '[libfuzzer]\nmax_len = 21\n' >"$OUT/FuzzWorld.options"

# compile_native_go_fuzzer finds a target's file with grep -r over the
# package directory and wants exactly one match: move the documents that
# name the targets out of the way (the Go files are kept unique by
# TestTargetNamesUnique).
mkdir -p /tmp/vsocklab-fuzz-docs
mv fuzz/README.md fuzz/libfuzzer-smoke.sh /tmp/vsocklab-fuzz-docs/

for t in $targets; do
  compile_native_go_fuzzer github.com/vsocklab/vsocklab/fuzz "$t" "$t"
done

mv /tmp/vsocklab-fuzz-docs/* fuzz/
