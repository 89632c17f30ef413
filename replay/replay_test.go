package replay

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/trace"
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
	return RunFile(lab.T(t), underRace(f), opts)
}

// raceScenarios are what the tests replay under the race detector: one
// scenario of each kind (a bounded resume matrix entry with the leaking init,
// the wedge, a clean run, the fault), short ones. The race detector looks at
// code paths, which these cover; the whole library replays without it, in
// the same tests of the plain "go test" run, and through the CLI in CI.
var raceScenarios = map[string]bool{
	"resume-persisted-leak-sessionfirst": true,
	"wedge-ch50-6.12.68-notimeout-64kib": true,
	"wedge-ch51-6.12.68-timeout-4kib":    true,
	"lost-64kib-packet-timeout":          true,
}

// underRace keeps only raceScenarios when the race detector is on.
func underRace(f *trace.File) *trace.File {
	if !raceEnabled {
		return f
	}
	sub := *f
	sub.Directives = nil
	for start, end := range scenarioBounds(f) {
		_, name, _ := worldConfig(f.Directives[start])
		if raceScenarios[name] {
			sub.Directives = append(sub.Directives, f.Directives[start:end]...)
		}
	}
	return &sub
}

// TestIncidentsReplayAsWritten replays the incident library and compares every directive's
// output with the file; -rewrite writes the actual output back.
func TestIncidentsReplayAsWritten(t *testing.T) {
	for _, path := range incidentFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			require.False(t, *rewrite && raceEnabled, "-rewrite under -race would write back only raceScenarios")
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
	if testing.Short() || raceEnabled {
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

// Every scenario the race run replays is in the library: a renamed one
// would silently drop out of it.
func TestRaceScenariosExist(t *testing.T) {
	found := map[string]bool{}
	for _, path := range incidentFiles(t) {
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		f, err := Parse(path, string(text))
		require.NoError(t, err)
		for start := range scenarioBounds(f) {
			_, name, _ := worldConfig(f.Directives[start])
			found[name] = true
		}
	}
	for name := range raceScenarios {
		require.True(t, found[name], "race scenario %s is not in the library", name)
	}
}
