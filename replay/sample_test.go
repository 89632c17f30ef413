package replay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/internal/testscope"
	"github.com/vsocklab/vsocklab/trace"
)

// The tests that replay the library more than once (20 determinism runs,
// the tshark captures) take a sample by default: quickScenarios, one or two
// short scenarios of every file. With VSOCKLAB_FULL=1 (testscope) they take
// the whole library; TestIncidentsReplayAsWritten always does. Under the
// race detector the sample is raceScenarios, as before.
var quickScenarios = map[string]bool{
	"ch34-linux-5.15":    true, // ch-rx-single-descriptor: its wedge loops 13,000 times a second
	"main-leaky-init":    true, // device-reset-ports
	"fc1.13-6.12.68":     true, // fc-partial-write-dup
	"rcvlowat-7.1-rc3":   true, // rx-queue-limit-credit-leak
	"unread-7.0-reset":   true, // enobufs-reset
	"vd-6.17-stream-32k": true, // vd-nonlinear-tx
	"fc1.5-5.15":         true, // fc-rx-single-descriptor
	"fc1.14-restore":     true, // restore-stale-socket
	"fc1.14-quiet":       true, // close-tail-loss
}

func isQuick(name string) bool { return quickScenarios[name] || raceScenarios[name] }

// tsharkScenarios are the default run's sample for the tshark check, whose
// cost is tshark's start (seconds on a loaded machine, twice a scenario):
// a wedge (RW, CREDIT_UPDATE, SHUTDOWN, RST) and resumes (transport resets,
// REQUEST and RESPONSE again).
var tsharkScenarios = map[string]bool{
	"wedge-ch50-6.12.68-notimeout-64kib": true,
	"resume-persisted-leak-sessionfirst": true,
}

// only keeps the scenarios of f that keep says to.
func only(f *trace.File, keep func(start int, name string) bool) *trace.File {
	sub := *f
	sub.Directives = nil
	for start, end := range scenarioBounds(f) {
		_, name, _ := worldConfig(f.Directives[start])
		if keep(start, name) {
			sub.Directives = append(sub.Directives, f.Directives[start:end]...)
		}
	}
	return &sub
}

// sampled is f's sample: all of it under VSOCKLAB_FULL, else its quick
// scenarios (raceScenarios under -race, whatever VSOCKLAB_FULL says).
func sampled(f *trace.File, quick func(name string) bool) *trace.File {
	switch {
	case raceEnabled:
		return underRace(f)
	case testscope.Full():
		return f
	}
	return only(f, func(_ int, name string) bool { return quick(name) })
}

// replaySample replays the sample of the file at path, quick deciding by
// scenario name; it is empty (and the result has no scenarios) when none of
// the file's scenarios is in it.
func replaySample(t *testing.T, path string, quick func(name string) bool, opts Options) *Result {
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := Parse(filepath.Base(path), string(text))
	require.NoError(t, err)
	return RunFile(lab.T(t), sampled(f, quick), opts)
}

// Every file of the library has a scenario in the sample, and every
// sampled scenario is in the library: a renamed one would silently drop
// out of the default run.
func TestSampleCoversEveryFile(t *testing.T) {
	found := map[string]bool{}
	for _, path := range incidentFiles(t) {
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		f, err := Parse(path, string(text))
		require.NoError(t, err)
		n := 0
		for start := range scenarioBounds(f) {
			_, name, _ := worldConfig(f.Directives[start])
			found[name] = true
			if isQuick(name) {
				n++
			}
		}
		require.NotZero(t, n, "%s has no scenario in quickScenarios or raceScenarios", path)
	}
	for _, m := range []map[string]bool{quickScenarios, tsharkScenarios} {
		for name := range m {
			require.True(t, found[name], "sampled scenario %s is not in the library", name)
		}
	}
}
