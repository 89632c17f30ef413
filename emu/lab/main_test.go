package lab

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain). 10 execs per new input: the
// yamux target runs a bubble per exec, 50-100 ms each on a loaded 2-core
// machine (50 execs took up to 5.6 s per input and 80 % of the workers'
// time), and reads at most 7 bytes of its input, which the tail cut alone
// reaches.
func TestMain(m *testing.M) { fuzzmain.Main(m, 10) }
