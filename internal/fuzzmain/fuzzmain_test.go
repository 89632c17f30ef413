package fuzzmain

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	fuzzTarget = regexp.MustCompile(`(?m)^func Fuzz\w*\(f \*testing\.F\)`)
	mainCall   = regexp.MustCompile(`fuzzmain\.Main\(`)
)

// Every package with a native fuzz target runs its tests through Main:
// one without it stalls in minimization and meets golang/go#75804 under
// plain go test -fuzz, as FuzzMessages did before its package had one.
func TestEveryFuzzPackageUsesMain(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	targets, mains := map[string]bool{}, map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || (d.Name() != "." && d.Name()[0] == '.')) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		targets[dir] = targets[dir] || fuzzTarget.Match(text)
		mains[dir] = mains[dir] || mainCall.Match(text)
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, targets)
	for dir, has := range targets {
		if has {
			require.True(t, mains[dir], "%s has fuzz targets but no TestMain calling fuzzmain.Main", dir)
		}
	}
}
