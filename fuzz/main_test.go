package fuzz

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain). 1000 execs: the TX chain target's
// costliest, about half a millisecond each on a loaded 2-core machine (the
// system targets take integers, which Go does not minimize).
func TestMain(m *testing.M) { fuzzmain.Main(m, 1000) }
