package fuzz

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
)

// TestWorldStartFailedTraceIsThePartThatRan: a start sequence that never
// finished decides the finding, so CheckWorld stops there
// (replay.Options.StopAtError), and the finding's trace, which ends at
// that directive, replays to the same outputs and the same finding.
func TestWorldStartFailedTraceIsThePartThatRan(t *testing.T) {
	// Cloud Hypervisor v34 rejects the single-descriptor receive buffers of
	// Linux 6.6 (testdata/incidents/ch-rx-single-descriptor.trace): hostd
	// never starts. Cycles, probes and a stream follow in the full trace.
	c := Choices{ChoiceDevice: profileIndex("cloud-hypervisor-34"), ChoiceKernel: kernelIndex("linux-6.6"),
		ChoiceCycles: 3, ChoiceDwell: 5, ChoiceProbes: 2, ChoiceStream: 1, ChoiceStreamTotal: 3}
	w := DecodeWorld(c)
	require.Equal(t, "linux-6.6", w.Kernel)
	require.Contains(t, w.Trace(), "\ncycles n=3 ")
	require.Contains(t, w.Trace(), "\nstream from=host ")

	err := CheckWorld(lab.T(t), c)
	var finding *Finding
	require.ErrorAs(t, err, &finding)
	require.Equal(t, "start-failed", finding.Oracle, "%v", err)
	require.Equal(t, "wait-started: error: cycle 0 did not finish within 10s", finding.Why)

	f, perr := replay.Parse("finding.trace", finding.Trace)
	require.NoError(t, perr)
	last := f.Directives[len(f.Directives)-1]
	require.Equal(t, "wait-started", last.Cmd, "the trace ends at the directive that decided")
	for _, d := range f.Directives {
		require.NotContains(t, []string{"cycles", "connect", "stream", "run", "report", "verdict"}, d.Cmd)
	}

	// As vsocklab replay --check runs it: the same outputs, no limit hit.
	res := replay.RunFile(lab.T(t), f, replay.Options{})
	require.Empty(t, res.Diff())
	require.False(t, res.Failed())
	// As CheckWorld runs it: the same finding.
	res = replay.RunFile(lab.T(t), f, replay.Options{StopAtError: true})
	require.Empty(t, res.Diff())
	var again *Finding
	require.True(t, errors.As(judgeWorld(w, res), &again))
	require.Equal(t, finding.Oracle, again.Oracle)
	require.Equal(t, finding.Why, again.Why)
	require.Equal(t, finding.Trace, again.Trace)
}
