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
// this package and nothing else.
func TestProgramsImportNothingOfTheEmulator(t *testing.T) {
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
		require.Equal(t, map[string]bool{"vsockport": true}, seen, "%s imports of this module", prog)
	}
}
