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
// only []byte and string arguments (Go's src/internal/fuzz/minimize.go,
// isMinimizable), and minimizing an input of n bytes costs about n²/2 execs;
// at several milliseconds per exec (each one boots init and hostd in a
// bubble) that held both workers for seconds at 0 execs/s. Integers give
// the programs' Check functions bytes in a fixed number, and no
// minimization: a failing input is already small.
//
// Go's mutator changes an integer by adding or subtracting 1 to 100
// (Go's src/internal/fuzz/mutator.go, mutateUInt), which would leave a word's high
// bytes as the seeds set them. So each word goes through mix, a bijection
// that spreads any change over all eight bytes: a mutation redraws the
// writes (or operations) of one word and keeps the others.

// mix is SplitMix64's finalizer (Steele, Lea, Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014), a bijection of uint64.
func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// unmix inverts mix, to write seeds as the bytes they decode to.
func unmix(z uint64) uint64 {
	z ^= z>>31 ^ z>>62
	z *= 0x319642b2d24d8ec3 // the inverse of 0x94d049bb133111eb mod 2^64
	z ^= z>>27 ^ z>>54
	z *= 0x96de1b173f119089 // the inverse of 0xbf58476d1ce4e5b9
	return z ^ z>>30 ^ z>>60
}

// words packs mixed integers into the little-endian bytes the Check
// functions decode, without the trailing zero bytes (mix(0) is 0): unused
// words are no operations, not zero-sized writes or immediate suspends.
func words(ws ...uint64) []byte {
	var b []byte
	for _, w := range ws {
		b = binary.LittleEndian.AppendUint64(b, mix(w))
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
	f.Add(unmix(0x0a001000), uint64(0), uint64(0), uint64(0))                  // one 4 KiB write after 10 ms
	f.Add(unmix(0x01001000_01001000), unmix(0x05000200), uint64(0), uint64(0)) // 4 KiB, 4 KiB, 512 bytes
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
	f.Add(unmix(0x020103), uint64(0))   // a pause, a connection opened and closed
	f.Add(unmix(0x03020701), uint64(0)) // connections opened and closed, pauses
	p := programs.SetupFromEnv(programs.CurrentResume, programs.HistoricalResume)
	f.Fuzz(func(t *testing.T, ops0, ops1 uint64) {
		require.NoError(t, programs.CheckSuspendResume(lab.T(t), p, words(ops0, ops1)))
	})
}

func TestMixIsABijection(t *testing.T) {
	for _, v := range []uint64{0, 1, 0x30, 0x30312f00, 1 << 63, ^uint64(0), 0x0123456789abcdef} {
		require.Equal(t, v, unmix(mix(v)))
		require.Equal(t, v, mix(unmix(v)))
	}
	require.Equal(t, uint64(0), mix(0), "unused words stay zero")
}
