package fuzz

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
)

// worldBenchChoices is BenchmarkCheckWorld's fixed workload: uniformly
// random choices from a fixed seed, the distribution a blind search and a
// young fuzzing corpus see.
func worldBenchChoices(n int) []Choices {
	rng := rand.New(rand.NewPCG(14, 5))
	cs := make([]Choices, n)
	for i := range cs {
		for j := range cs[i] {
			cs[i][j] = byte(rng.UintN(256))
		}
	}
	return cs
}

// TestCheckWorldBench is BenchmarkCheckWorld: a benchmark cannot enter a
// synctest bubble (synctest.Test takes a *testing.T), so the test runs
// testing.Benchmark with its own T for the bubbles. Run with
// VSOCKLAB_BENCH=1 go test -run TestCheckWorldBench -v ./fuzz (add
// -cpuprofile to profile); recorded in BENCHMARKS.md.
// VSOCKLAB_BENCH_WORLD=<42 hex digits> measures that one configuration
// (its Choices) instead: 000000000000000000000000000000000000000000 is
// the all-zero configuration, the cheapest boot.
func TestCheckWorldBench(t *testing.T) {
	if os.Getenv("VSOCKLAB_BENCH") == "" {
		t.Skip("set VSOCKLAB_BENCH=1 to measure")
	}
	cs := worldBenchChoices(64)
	if h := os.Getenv("VSOCKLAB_BENCH_WORLD"); h != "" {
		b, err := hex.DecodeString(h)
		require.NoError(t, err, "VSOCKLAB_BENCH_WORLD")
		require.Len(t, b, NumChoices, "VSOCKLAB_BENCH_WORLD: one byte (two hex digits) per choice")
		cs = []Choices{Choices(b)}
		t.Logf("one configuration: %s", DecodeWorld(cs[0]))
	}
	findings := 0
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			err := CheckWorld(lab.T(t), cs[i%len(cs)])
			var f *Finding
			if errors.As(err, &f) {
				findings++
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Logf("BenchmarkCheckWorld\t%s\t%s (%d findings)", r.String(), r.MemString(), findings)
}
