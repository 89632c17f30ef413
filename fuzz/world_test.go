package fuzz

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/replay"
)

// FuzzWorld: the input chooses the whole configuration (DecodeWorld: device
// and kernel profiles, init and hostd options, the workload, a TX fault,
// suspend/resume cycles) and the oracles are those that hold for any
// correct system (replay.FailedOracle). Configurations that pair a buggy
// device or init with a kernel that triggers it fail, by design; the
// failure names the oracle and the configuration, and the configuration's
// trace, outputs included, is written to testdata/findings/ (replay it with
// vsocklab replay; move it to testdata/incidents/ to keep it).
//
// VSOCKLAB_KNOWN_CLASSES (Finding.Class names, comma or space separated)
// is a triage list: findings of those classes are skipped, so that a
// campaign goes on to the next class. "*" skips every finding: a run that
// measures throughput (BENCHMARKS.md) must not stop at the first.
//
// VSOCKLAB_FINDINGS_LOG (a file) makes a campaign of it: each finding's
// class is appended to the file with the time (LogFinding) and the input
// is skipped rather than failed, so that fuzzing goes on without a restart.
//
// One byte per choice (Choices), not a []byte: Go does not minimize
// integers (Go's src/internal/fuzz/minimize.go), and each exec runs a whole system.
//
// This file is also the libFuzzer harness (go-118-fuzz-build, fuzz/README.md):
// its t may be that tool's stand-in T, so it takes its runner from runnerFor
// and uses only non-test helpers and t.Log, t.Skipf and require.
func FuzzWorld(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0),
		byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0), byte(0))
	f.Add(byte(1), byte(0), byte(2), byte(1), byte(0), byte(6), byte(3), byte(10), byte(0), byte(3), byte(20), byte(5),
		byte(0), byte(1), byte(1), byte(3), byte(3), byte(1), byte(2), byte(2), byte(0))
	known := strings.Fields(strings.ReplaceAll(os.Getenv("VSOCKLAB_KNOWN_CLASSES"), ",", " "))
	log := os.Getenv("VSOCKLAB_FINDINGS_LOG")
	f.Fuzz(func(t *testing.T, device, kernel, init, hostd, seed, total, size, every, fault, cycles, dwell, pause,
		reset, probes, stream, streamTotal, streamSize, streamEvery, readSize, readEvery, rcvlowat byte) {
		err := CheckWorld(runnerFor(t), Choices{device, kernel, init, hostd, seed, total, size, every, fault, cycles, dwell, pause,
			reset, probes, stream, streamTotal, streamSize, streamEvery, readSize, readEvery, rcvlowat})
		var finding *Finding
		if errors.As(err, &finding) {
			if slices.Contains(known, finding.Class()) || slices.Contains(known, "*") {
				t.Skipf("known class %s", finding.Class())
			}
			if path, werr := WriteFinding("testdata/findings", finding); werr == nil {
				t.Log("trace written to " + path)
			}
			if log != "" {
				// A campaign's findings log: note the class and go on
				// fuzzing, rather than stop at the first failure.
				require.NoError(t, LogFinding(log, finding))
				t.Skipf("logged class %s", finding.Class())
			}
		}
		require.NoError(t, err)
	})
}

func TestWorldTraceParses(t *testing.T) {
	var all Choices
	for i := range all {
		all[i] = 0xff
	}
	for _, c := range []Choices{{}, all, {1, 0, 2, 1, 0, 6, 3, 10, 0, 3, 20, 5}, {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 7},
		{5, 0, 8, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1, 3, 1, 7, 0, 1, 0, 7, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 6, 6, 2, 2, 2, 3}} {
		w := DecodeWorld(c)
		_, err := replay.Parse("w.trace", w.Trace())
		require.NoError(t, err, "%s", w)
	}
}
