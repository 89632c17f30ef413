package replay

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// TestLibraryTiming measures how long the incident library takes to replay
// and, for each 50-cycle slow-resume scenario, the ratio of virtual time to
// wall time. Benchmarks cannot enter a synctest bubble (it needs a
// *testing.T), so this is a test that logs; it asserts nothing about speed.
// Run with VSOCKLAB_BENCH=1 go test ./replay -run TestLibraryTiming -v.
func TestLibraryTiming(t *testing.T) {
	if os.Getenv("VSOCKLAB_BENCH") == "" {
		t.Skip("set VSOCKLAB_BENCH=1 to measure")
	}
	start := time.Now()
	for _, path := range incidentFiles(t) {
		replayFile(t, path, Options{})
	}
	t.Logf("whole library: %s", time.Since(start).Round(time.Millisecond))
	for _, path := range incidentFiles(t) {
		if !strings.Contains(path, "resume") {
			continue
		}
		text, _ := os.ReadFile(path)
		f, _ := Parse(path, string(text))
		for i, d := range f.Directives {
			if d.Cmd != "world" {
				continue
			}
			end := i + 1
			for end < len(f.Directives) && f.Directives[end].Cmd != "world" {
				end++
			}
			sub := *f
			sub.Directives = f.Directives[i:end]
			t0 := time.Now()
			r := RunFile(lab.T(t), &sub, Options{})
			wall := time.Since(t0)
			virtual := r.Scenarios[0].End
			t.Logf("%-40s virtual %-10s wall %-8s ratio %.0fx", r.Scenarios[0].Report.Name, virtual.Round(time.Second),
				wall.Round(time.Millisecond), virtual.Seconds()/wall.Seconds())
		}
	}
}
