package fuzz

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/programs"
)

// The system targets take fixed-width integers, not a []byte. Go minimizes
// only []byte and string arguments (internal/fuzz/minimize.go,
// isMinimizable), and minimizing an input of n bytes costs about n²/2 execs;
// at several milliseconds per exec (each one boots init and hostd in a
// bubble) that held both workers for seconds at 0 execs/s. Integers give
// the programs' Check functions the same bytes, in a fixed number, and no
// minimization: a failing input is already small.

// words packs integers into the little-endian bytes the Check functions
// decode, without the trailing zero bytes: unused high words are no
// operations, not zero-sized writes or immediate suspends.
func words(ws ...uint64) []byte {
	var b []byte
	for _, w := range ws {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return bytes.TrimRight(b, "\x00")
}

// FuzzSystem: fuzzer-chosen stdout write sizes and timings of the workload
// (up to 8 writes, 4 bytes each: programs.DecodeWrites), with init and hostd
// in the lab. With the current setup (Cloud Hypervisor 51, init with its
// write timeout) the oracles must hold; with VSOCKLAB_PROFILE=historical
// (Cloud Hypervisor 50, Linux 6.12.68, init without the timeout) the fuzzer
// rediscovers seed 000's wedge.
func FuzzSystem(f *testing.F) {
	f.Add(uint64(0x0a001000), uint64(0), uint64(0), uint64(0))                   // one 4 KiB write after 10 ms
	f.Add(uint64(0x01001000_01001000), uint64(0x05000200), uint64(0), uint64(0)) // 4 KiB, 4 KiB, 512 bytes
	p := programs.SetupFromEnv(programs.CurrentWedge, programs.HistoricalWedge)
	f.Fuzz(func(t *testing.T, w0, w1, w2, w3 uint64) {
		require.NoError(t, programs.CheckSystem(lab.T(t), p, words(w0, w1, w2, w3)))
	})
}

// FuzzSuspendResume: fuzzer-chosen sequences of up to 16 operations
// (suspend/resume cycles, host connections held open and closed, pauses;
// one byte each), with init and hostd in the lab. With the current setup
// (an init that closes reset sockets) no socket survives a reset and every
// resume starts within 5 s; with VSOCKLAB_PROFILE=historical (an init that
// keeps reset session sockets, fixed-start ports, session first) the
// fuzzer rediscovers seed 003's leak.
func FuzzSuspendResume(f *testing.F) {
	f.Add(uint64(0x020103), uint64(0))   // a pause, a connection opened and closed
	f.Add(uint64(0x03020701), uint64(0)) // connections opened and closed, pauses
	p := programs.SetupFromEnv(programs.CurrentResume, programs.HistoricalResume)
	f.Fuzz(func(t *testing.T, ops0, ops1 uint64) {
		require.NoError(t, programs.CheckSuspendResume(lab.T(t), p, words(ops0, ops1)))
	})
}
