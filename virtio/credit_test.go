package virtio

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Free space toward the peer, docs/sources.md#linux-credit: the spec formula in u32, the
// s64 underflow fix (CVE-2026-23069) and current Linux's min over both
// buffers (CVE-2026-23086, c0e42fb0e054).
func TestFreeCreditByFormula(t *testing.T) {
	const k = 1024
	tests := []struct {
		name                                string
		peerBufAlloc, bufAlloc, tx, peerFwd uint32
		inFlight, spec, s64, linux          uint32
	}{
		{"nothing sent", 256 * k, 256 * k, 0, 0, 0, 256 * k, 256 * k, 256 * k},
		{"half in flight", 64 * k, 256 * k, 32 * k, 0, 32 * k, 32 * k, 32 * k, 32 * k},
		{"window full", 64 * k, 256 * k, 64 * k, 0, 64 * k, 0, 0, 0},
		{"counters wrapped", 64 * k, 256 * k, 10, 0xffff_fff0, 26, 64*k - 26, 64*k - 26, 64*k - 26},
		{"peer shrank its buffer below what is in flight", 4 * k, 256 * k, 64 * k, 0, 64 * k, 0xffff_0000 + 4*k, 0, 0}, // u32 wrap: 4 KiB - 64 KiB
		{"own buffer smaller than the peer's", 256 * k, 64 * k, 16 * k, 0, 16 * k, 240 * k, 240 * k, 48 * k},
		{"own buffer smaller and exhausted", 256 * k, 64 * k, 100 * k, 0, 100 * k, 156 * k, 156 * k, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.inFlight, InFlight(tc.tx, tc.peerFwd))
			require.Equal(t, tc.spec, SpecFree(tc.peerBufAlloc, tc.tx, tc.peerFwd))
			require.Equal(t, tc.s64, S64Free(tc.peerBufAlloc, tc.tx, tc.peerFwd))
			require.Equal(t, tc.linux, LinuxFree(tc.peerBufAlloc, tc.bufAlloc, tc.tx, tc.peerFwd))
		})
	}
}
