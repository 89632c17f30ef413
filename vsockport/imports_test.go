package vsockport_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/vsocklab/vsocklab/"

// TestProgramsImportNothingOfTheEmulator: guestinit and hostd run unmodified
// on real machines, so what they import of this module (transitively) is
// this package and, for hostd, package hybrid (the hybrid vsock client it
// shares with the lab), and nothing else.
func TestProgramsImportNothingOfTheEmulator(t *testing.T) {
	allowed := map[string]map[string]bool{
		"guestinit": {"vsockport": true},
		"hostd":     {"vsockport": true, "hybrid": true},
	}
	for _, prog := range []string{"guestinit", "hostd"} {
		seen := map[string]bool{}
		var walk func(dir string)
		walk = func(dir string) {
			pkg, err := build.ImportDir(dir, 0)
			require.NoError(t, err, dir)
			for _, imp := range pkg.Imports {
				rel, ok := strings.CutPrefix(imp, module)
				if !ok || seen[rel] {
					continue
				}
				seen[rel] = true
				walk(filepath.Join("..", filepath.FromSlash(rel)))
			}
		}
		walk(filepath.Join("..", prog))
		require.Equal(t, allowed[prog], seen, "%s imports of this module", prog)
	}
}
