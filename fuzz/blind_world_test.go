package fuzz

import (
	"errors"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// TestBlindWorld is the baseline for the world target's time-to-first-failure in
// BENCHMARKS.md: uniformly random choices, no coverage feedback, the same
// CheckWorld and oracles, for a budget; it reports when each finding class
// (Finding.Class) first showed. Run with VSOCKLAB_BLIND=world
// (VSOCKLAB_BLIND_BUDGET, default 60s); it reports, it does not assert.
// With VSOCKLAB_FINDINGS_LOG it appends every finding to that file as
// the native target does (LogFinding), for scripts/world-campaign.sh.
func TestBlindWorld(t *testing.T) {
	if os.Getenv("VSOCKLAB_BLIND") != "world" {
		t.Skip("set VSOCKLAB_BLIND=world")
	}
	budget := 60 * time.Second
	if s := os.Getenv("VSOCKLAB_BLIND_BUDGET"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			budget = d
		}
	}
	log := os.Getenv("VSOCKLAB_FINDINGS_LOG")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now()
	first := map[string]time.Duration{}
	n := 0
	for ; time.Since(start) < budget; n++ {
		var c Choices
		for i := range c {
			c[i] = byte(rng.UintN(256))
		}
		err := CheckWorld(lab.T(t), c)
		var f *Finding
		if errors.As(err, &f) {
			if _, seen := first[f.Class()]; !seen {
				first[f.Class()] = time.Since(start)
				if log != "" {
					if err := LogFinding(log, f); err != nil {
						t.Fatal(err)
					}
				}
			}
		} else if err != nil {
			t.Fatalf("not a finding: %v", err)
		}
	}
	classes := make([]string, 0, len(first))
	for c := range first {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool { return first[classes[i]] < first[classes[j]] })
	t.Logf("blind search (seed %d): %d inputs in %s, %d classes", seed, n, budget, len(classes))
	for _, c := range classes {
		t.Logf("  %s after %s", c, first[c].Round(time.Millisecond))
	}
}
