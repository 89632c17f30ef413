package replay

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// runTestChildEnv names the file TestRunTestChild replays when this test
// binary runs itself to watch RunTest fail.
const runTestChildEnv = "VSOCKLAB_RUNTEST_CHILD"

// TestRunTestChild is RunTest on a file chosen by its parent test; alone it
// does nothing.
func TestRunTestChild(t *testing.T) {
	path := os.Getenv(runTestChildEnv)
	if path == "" {
		t.Skip("run by TestRunTestFails")
	}
	RunTest(t, path)
}

// runChild runs TestRunTestChild on text and returns its output and
// whether it passed.
func runChild(t *testing.T, text string, env ...string) (string, bool, string) {
	path := filepath.Join(t.TempDir(), "mine.trace")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunTestChild$", "-test.v")
	cmd.Env = append(os.Environ(), append(env, runTestChildEnv+"="+path)...)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil, path
}

const worldOnly = "world name=w\n----\nworld w: device firecracker-1.14, guest linux-6.12.68, seed 1\n"

func TestRunTestFails(t *testing.T) {
	t.Run("passes as written", func(t *testing.T) {
		out, ok, _ := runChild(t, worldOnly)
		require.True(t, ok, out)
	})
	t.Run("a mismatch shows the position and both lines", func(t *testing.T) {
		out, ok, path := runChild(t, "world name=w\n----\nworld w: not this\n")
		require.False(t, ok)
		require.Contains(t, out, path+":1: world: output differs")
		require.Contains(t, out, "  - world w: not this")
		require.Contains(t, out, "  + world w: device firecracker-1.14, guest linux-6.12.68, seed 1")
		require.Contains(t, out, RewriteEnv+"=1 go test")
	})
	t.Run("every parse error, file:line each", func(t *testing.T) {
		out, ok, path := runChild(t, worldOnly+"\nbogus\n----\n\nrecv name=c max=0\n----\n")
		require.False(t, ok)
		require.Contains(t, out, path+":5: unknown command \"bogus\"")
		require.Contains(t, out, path+":8: recv: max=0: expected a size")
	})
	t.Run("the rewrite variable writes the output back", func(t *testing.T) {
		out, ok, path := runChild(t, "world name=w\n----\n", RewriteEnv+"=1")
		require.True(t, ok, out)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, worldOnly, string(got))
	})
}
