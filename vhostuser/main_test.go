package vhostuser

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain); without it a 10 s run of
// FuzzMessages stood at 0 execs/s minimizing and then failed with
// "context deadline exceeded". 250 execs per new input: an exec replays a
// message stream against a fresh back-end, about a millisecond.
func TestMain(m *testing.M) { fuzzmain.Main(m, 250) }
