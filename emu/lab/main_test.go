package lab

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain). 50 execs: FuzzYamuxBubbles runs
// a bubble per exec, 10-30 ms each on a loaded 2-core machine, and reads
// at most 7 bytes of its input.
func TestMain(m *testing.M) { fuzzmain.Main(m, 50) }
