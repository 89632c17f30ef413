package fuzz

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
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
// campaign goes on to the next class.
//
// Three uint64 words, not a []byte: Go does not minimize integers
// (internal/fuzz/minimize.go), and each exec runs a whole system.
func FuzzWorld(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint64(0))
	f.Add(uint64(0x0100_0002_0000), uint64(6|3<<3|10<<6), uint64(3|20<<3|5<<8))
	known := strings.Fields(strings.ReplaceAll(os.Getenv("VSOCKLAB_KNOWN_CLASSES"), ",", " "))
	f.Fuzz(func(t *testing.T, w0, w1, w2 uint64) {
		err := CheckWorld(lab.T(t), w0, w1, w2)
		var finding *Finding
		if errors.As(err, &finding) {
			if slices.Contains(known, finding.Class()) {
				t.Skipf("known class %s", finding.Class())
			}
			if path, werr := WriteFinding("testdata/findings", finding); werr == nil {
				t.Logf("trace written to %s", path)
			}
		}
		require.NoError(t, err)
	})
}

func TestWorldTraceParses(t *testing.T) {
	for _, ws := range [][3]uint64{{0, 0, 0}, {^uint64(0), ^uint64(0), ^uint64(0)}, {0x0100_0002_0000, 6 | 3<<3 | 10<<6, 3 | 20<<3 | 5<<8}} {
		w := DecodeWorld(ws[0], ws[1], ws[2])
		_, err := replay.Parse("w.trace", w.Trace())
		require.NoError(t, err, "%s", w)
	}
}

func TestWorldFindsTheWedge(t *testing.T) {
	// Seed 000's configuration, chosen through the words: Cloud Hypervisor
	// 50, Linux 6.12.68, init without its write timeout, 64 KiB writes.
	w0 := uint64(profileIndex("cloud-hypervisor-50")) | 1<<16
	dev := DecodeWorld(w0, 0, 0)
	for k := uint64(0); k < 256 && dev.Kernel != "linux-6.12.68"; k++ {
		dev = DecodeWorld(w0|k<<8, 0, 0)
		if dev.Kernel == "linux-6.12.68" {
			w0 |= k << 8
		}
	}
	require.Equal(t, "linux-6.12.68", dev.Kernel)
	err := CheckWorld(lab.T(t), w0, 6|6<<3|10<<6, 0)
	var finding *Finding
	require.ErrorAs(t, err, &finding)
	require.Equal(t, "stdout-blocked", finding.Oracle, "%v", err)

	// The finding's trace replays to the same outputs.
	f, perr := replay.Parse("finding.trace", finding.Trace)
	require.NoError(t, perr)
	res := replay.RunFile(lab.T(t), f, replay.Options{})
	require.Empty(t, res.Diff())
}
