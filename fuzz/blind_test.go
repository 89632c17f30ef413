package fuzz

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/programs"
)

// TestBlindSearch is the baseline for the rediscovery measurements in
// BENCHMARKS.md: uniformly random inputs, no coverage feedback, the same
// Check function and oracle as the fuzz target, until the first failure or
// the budget. Run with VSOCKLAB_BLIND=system or suspendresume (and
// VSOCKLAB_PROFILE=historical); it reports, it does not assert.
func TestBlindSearch(t *testing.T) {
	target := os.Getenv("VSOCKLAB_BLIND")
	if target == "" {
		t.Skip("set VSOCKLAB_BLIND=system or suspendresume")
	}
	check, p := programs.CheckSystem, programs.SetupFromEnv(programs.CurrentWedge, programs.HistoricalWedge)
	if target == "suspendresume" {
		check, p = programs.CheckSuspendResume, programs.SetupFromEnv(programs.CurrentResume, programs.HistoricalResume)
	}
	budget := 120 * time.Second
	if s := os.Getenv("VSOCKLAB_BLIND_BUDGET"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			budget = d
		}
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now()
	for n := 1; time.Since(start) < budget; n++ {
		data := make([]byte, rng.IntN(65))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		if err := check(lab.T(t), p, data); err != nil {
			t.Logf("blind search (seed %d): first failure after %s and %d inputs: %v", seed, time.Since(start).Round(time.Millisecond), n, err)
			return
		}
	}
	t.Logf("blind search (seed %d): no failure within %s", seed, budget)
}
