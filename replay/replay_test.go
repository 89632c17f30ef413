package replay

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
)

var rewrite = flag.Bool("rewrite", false, "write the actual output back into the trace files")

// incidentFiles lists the incident library and the fault scenarios.
func incidentFiles(t *testing.T) []string {
	var files []string
	for _, dir := range []string{"incidents", "faults"} {
		found, err := filepath.Glob("../testdata/" + dir + "/*.trace")
		require.NoError(t, err)
		require.NotEmpty(t, found, "no trace files in testdata/%s", dir)
		files = append(files, found...)
	}
	return files
}

func replayFile(t *testing.T, path string, opts Options) *Result {
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := Parse(filepath.Base(path), string(text))
	require.NoError(t, err)
	return RunFile(lab.T(t), f, opts)
}

// TestIncidentsReplayAsWritten replays the incident library and compares every directive's
// output with the file; -rewrite writes the actual output back.
func TestIncidentsReplayAsWritten(t *testing.T) {
	for _, path := range incidentFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			res := replayFile(t, path, Options{})
			if *rewrite {
				require.NoError(t, os.WriteFile(path, []byte(res.Text()), 0o644))
				return
			}
			require.Empty(t, res.Diff(), "replay differs from %s (go test ./replay -rewrite to accept)", path)
		})
	}
}

// TestIncidentsAreDeterministic replays the library 20 times: every
// scenario's event log must hash the same every time.
func TestIncidentsAreDeterministic(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 3
	}
	for _, path := range incidentFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			first := replayFile(t, path, Options{})
			for i := 1; i < runs; i++ {
				again := replayFile(t, path, Options{})
				for j, sc := range again.Scenarios {
					require.Equal(t, first.Scenarios[j].Report.LogSHA256, sc.Report.LogSHA256,
						"run %d, scenario %s: %s", i+1, sc.Report.Name, lab.FirstDifference(first.Scenarios[j].Log, sc.Log))
				}
			}
		})
	}
}
