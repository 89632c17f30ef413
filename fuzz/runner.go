package fuzz

import (
	"testing"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// runnerFor returns the lab Runner of a bubble target's t: the test's own
// T under go test, and lab.Hosted() for any other t. That other t is
// go-118-fuzz-build's stand-in testing.T, which a libFuzzer build swaps in
// for the target's file (fuzz/README.md): bubbles need the testing
// framework's T, which lab.Hosted gets from a framework started inside
// the libFuzzer binary. It takes any because the stand-in's type exists
// only in that build.
func runnerFor(t any) lab.Runner {
	if tt, ok := t.(*testing.T); ok {
		return lab.T(tt)
	}
	return lab.Hosted()
}
