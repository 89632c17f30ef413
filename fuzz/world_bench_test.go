package fuzz

import (
	"errors"
	"math/rand/v2"
	"os"
	"testing"

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
func TestCheckWorldBench(t *testing.T) {
	if os.Getenv("VSOCKLAB_BENCH") == "" {
		t.Skip("set VSOCKLAB_BENCH=1 to measure")
	}
	cs := worldBenchChoices(64)
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
