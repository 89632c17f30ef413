package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSeriesLeaveTheReplayAlone: with Options.Plot the scenarios print the
// same output and log the same events (hash for hash), and the wedge's
// series tell its story: 128 KiB written, nothing delivered, the write
// blocked ever longer, the log stream's in-flight bytes at the device's
// whole 64 KiB buffer.
func TestSeriesLeaveTheReplayAlone(t *testing.T) {
	path := "../testdata/incidents/stdout-wedge.trace"
	plain := replayFile(t, path, Options{})
	plotted := replayFile(t, path, Options{Plot: true})
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

	again := replayFile(t, path, Options{Plot: true})
	require.Equal(t, wedge.Series, scenarioNamed(t, again, wedge.Report.Name).Series, "the series are deterministic")
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
