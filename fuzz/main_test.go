package fuzz

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain). 250 execs per new input: the
// credit target's execs move up to 2 MiB and took several milliseconds
// each under load, so 1000 left a 6-9 s stretch at 0 execs/s in one 30 s
// run of ten; the system targets take integers, which Go does not minimize.
func TestMain(m *testing.M) { fuzzmain.Main(m, 250) }
