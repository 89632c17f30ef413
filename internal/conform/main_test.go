package conform

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain bounds minimization and keeps the fuzz coordinator out of
// golang/go#75804 (see internal/fuzzmain); FuzzParse's execs are cheap.
func TestMain(m *testing.M) { fuzzmain.Main(m, 250) }
