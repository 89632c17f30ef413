package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/programs"
)

// FuzzSystem: fuzzer-chosen stdout write sizes and timings of the workload,
// with init and hostd in the lab. With the current setup (Cloud
// Hypervisor 51, init with its write timeout) the oracles must hold; with
// VSOCKLAB_PROFILE=historical (Cloud Hypervisor 50, Linux 6.12.68, init
// without the timeout) the fuzzer rediscovers seed 000's wedge.
func FuzzSystem(f *testing.F) {
	f.Add([]byte{0x00, 0x10, 0x00, 0x0a}) // one 4 KiB write after 10 ms
	f.Add([]byte{0x00, 0x10, 0x00, 0x01, 0x00, 0x10, 0x00, 0x01, 0x00, 0x02, 0x00, 0x05})
	p := programs.SetupFromEnv(programs.CurrentWedge, programs.HistoricalWedge)
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, programs.CheckSystem(lab.T(t), p, data))
	})
}

// FuzzSuspendResume: fuzzer-chosen sequences of suspend/resume cycles, host
// connections held open and closed, and pauses, with init and hostd in the
// lab. With the current setup (an init that closes reset sockets) no
// socket survives a reset and every resume starts within 5 s; with
// VSOCKLAB_PROFILE=historical (an init that keeps reset session sockets,
// fixed-start ports, session first) the fuzzer rediscovers seed 003's leak.
func FuzzSuspendResume(f *testing.F) {
	f.Add([]byte{3, 1, 2})    // a pause, a connection opened and closed
	f.Add([]byte{1, 7, 2, 3}) // connections opened and closed, pauses
	p := programs.SetupFromEnv(programs.CurrentResume, programs.HistoricalResume)
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, programs.CheckSuspendResume(lab.T(t), p, data))
	})
}
