// Package testscope says how much of its slowest work a test does: a quick
// sample by default, so that `go test ./...` stays under a minute on a
// 2-core machine, or everything when the environment variable
// VSOCKLAB_FULL is set (.ci/run runs the complete suite that way; README's
// "Two commands" names both).
//
// What the sample leaves out is repetition (20 determinism runs become 3)
// and breadth over the incident library (one scenario of each file instead
// of all of them) — never a kind of check: every test still runs.
package testscope

import (
	"os"
	"testing"
)

// Env is the variable that asks for the complete suite.
const Env = "VSOCKLAB_FULL"

// Full reports whether the complete suite was asked for.
func Full() bool { return os.Getenv(Env) != "" }

// Runs returns full when the complete suite was asked for, else quick, and
// logs the choice so that a reader of -v output knows which it got.
func Runs(t testing.TB, quick, full int) int {
	t.Helper()
	if Full() {
		return full
	}
	if quick < full {
		t.Logf("%d runs, not %d: set %s=1 for the complete suite", quick, full, Env)
	}
	return quick
}
