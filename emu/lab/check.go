package lab

import (
	"fmt"
	"strings"
	"testing"
)

// Deterministic runs scenario n times with the same configuration and fails
// t unless every run produced the same event log. On a mismatch it prints
// the first differing line of the two logs. It returns the first run's
// result.
func Deterministic(t *testing.T, n int, cfg Config, scenario func(l *Lab)) *Result {
	t.Helper()
	first := Run(t, cfg, scenario)
	for i := 1; i < n; i++ {
		again := Run(t, cfg, scenario)
		if again.Hash != first.Hash {
			t.Fatalf("run %d of %d diverged from run 1 (log %s vs %s): %s", i+1, n, again.Hash[:12], first.Hash[:12], FirstDifference(first.Log, again.Log))
		}
	}
	return first
}

// FirstDifference describes where two logs first differ.
func FirstDifference(a, b string) string {
	al := strings.Split(a, "\n")
	bl := strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  first: %q\n  other: %q", i+1, x, y)
		}
	}
	return "no difference"
}
