package replay

import (
	"os"
	"testing"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// RewriteEnv names the environment variable that makes RunTest write the
// actual output back into the file instead of comparing:
//
//	VSOCKLAB_REWRITE=1 go test ./...
const RewriteEnv = "VSOCKLAB_REWRITE"

// TestConfig changes how RunTestWith replays a file.
type TestConfig struct {
	// Rewrite writes the actual output back into the file (for a test's own
	// -rewrite flag); RunTest sets it from RewriteEnv.
	Rewrite bool
	// Options are the replay's options (seed, limits); Progress is unused.
	Options Options
}

// RunTest replays the trace file at path as a Go test, the way
// cockroachdb/datadriven's RunTest runs a test file: every directive's
// output must equal the file's, byte for byte, and a mismatch fails t with
// each differing directive's position, its expected lines (-) and actual
// ones (+). With RewriteEnv set, it writes the actual output back instead:
// write the directives, leave their outputs empty, run once with
// VSOCKLAB_REWRITE=1, read what the file now says, commit it.
//
// A file that does not parse fails t with every problem, file:line each,
// before anything runs; a scenario stopped by a limit fails t too.
func RunTest(t *testing.T, path string) {
	t.Helper()
	RunTestWith(t, path, TestConfig{Rewrite: os.Getenv(RewriteEnv) != ""})
}

// RunTestWith is RunTest with a configuration.
func RunTestWith(t *testing.T, path string, c TestConfig) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := c.Options
	opts.Progress = nil
	f, err := ParseWith(path, string(text), opts)
	if err != nil {
		t.Fatalf("%s does not parse:\n%v", path, err)
	}
	res := RunFile(lab.T(t), f, opts)
	for _, sc := range res.Scenarios {
		if sc.Err != nil {
			t.Errorf("%s: scenario %s: %v", path, sc.Report.Name, sc.Err)
		}
	}
	if c.Rewrite {
		if err := os.WriteFile(path, []byte(res.Text()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if d := res.Diff(); d != "" {
		t.Errorf("replay differs from %s (%s=1 go test to accept the actual output):\n%s", path, RewriteEnv, d)
	}
}
