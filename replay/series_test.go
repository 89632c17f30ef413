package replay

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/trace"
)

// TestSeriesLeaveTheReplayAlone: with Options.Plot the scenarios print the
// same output and log the same events (hash for hash), and the wedge's
// series tell its story: 128 KiB written, nothing delivered, the write
// blocked ever longer, the log stream's in-flight bytes at the device's
// whole 64 KiB buffer.
func TestSeriesLeaveTheReplayAlone(t *testing.T) {
	path := "../testdata/incidents/stdout-wedge.trace"
	// The wedge, a clean run and a degraded one: the rest of the file
	// adds time, not cases.
	three := []string{"wedge-ch50-6.12.68-notimeout-64kib", "wedge-ch51-6.12.68-notimeout-64kib", "wedge-ch50-6.12.68-timeout-4kib"}
	run := func(opts Options) *Result {
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		f, err := Parse(filepath.Base(path), string(text))
		require.NoError(t, err)
		return RunFile(lab.T(t), onlyScenarios(f, three...), opts)
	}
	plain := run(Options{})
	plotted := run(Options{Plot: true})
	require.Len(t, plotted.Scenarios, 3)
	require.Equal(t, plain.Outputs, plotted.Outputs)
	for i, sc := range plotted.Scenarios {
		require.Equal(t, plain.Scenarios[i].Report.LogSHA256, sc.Report.LogSHA256, "scenario %s", sc.Report.Name)
		require.NotNil(t, sc.Series)
		require.NotEmpty(t, sc.Series.Stdout, "scenario %s", sc.Report.Name)
		require.NotEmpty(t, sc.Series.Credit, "scenario %s", sc.Report.Name)
		last := sc.Series.Stdout[len(sc.Series.Stdout)-1]
		require.Equal(t, sc.Report.Stdout.Written, last.Written, "scenario %s", sc.Report.Name)
		require.Equal(t, sc.Report.Stdout.Delivered, last.Delivered, "scenario %s", sc.Report.Name)
		require.Nil(t, plain.Scenarios[i].Series)
	}
	wedge := scenarioNamed(t, plotted, "wedge-ch50-6.12.68-notimeout-64kib")
	s := wedge.Series.Stdout
	require.Equal(t, int64(131072), s[len(s)-1].Written)
	require.Zero(t, s[len(s)-1].Delivered)
	require.Greater(t, s[len(s)-1].Blocked, 59*time.Second)
	var maxInFlight uint32
	for _, c := range wedge.Series.Credit {
		maxInFlight = max(maxInFlight, c.InFlight())
	}
	require.Equal(t, uint32(65536), maxInFlight)

	again := run(Options{Plot: true})
	require.Equal(t, wedge.Series, scenarioNamed(t, again, wedge.Report.Name).Series, "the series are deterministic")
}

// onlyScenarios keeps the named scenarios of f.
func onlyScenarios(f *trace.File, names ...string) *trace.File {
	sub := *f
	sub.Directives = nil
	for start, end := range scenarioBounds(f) {
		_, name, _ := worldConfig(f.Directives[start])
		if slices.Contains(names, name) {
			sub.Directives = append(sub.Directives, f.Directives[start:end]...)
		}
	}
	return &sub
}

func scenarioNamed(t *testing.T, r *Result, name string) *Scenario {
	for _, sc := range r.Scenarios {
		if sc.Report.Name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %s", name)
	return nil
}
