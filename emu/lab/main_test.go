package lab

import (
	"testing"

	"github.com/vsocklab/vsocklab/internal/fuzzmain"
)

// TestMain keeps the fuzz coordinator out of golang/go#75804 (see
// internal/fuzzmain).
func TestMain(m *testing.M) { fuzzmain.Main(m) }
