package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

func writeCapture(t *testing.T, name string, guestPort uint32, lens ...uint32) string {
	t.Helper()
	var ps []replay.Packet
	for _, n := range lens {
		ps = append(ps, replay.Packet{Hdr: virtio.Header{SrcCID: 3, DstCID: 2, SrcPort: guestPort, DstPort: 7000, Op: virtio.OpRW, Type: virtio.TypeStream, Len: n}, Payload: make([]byte, n)})
	}
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, replay.WritePcap(f, ps))
	require.NoError(t, f.Close())
	return p
}

func TestCapdiffExitCodes(t *testing.T) {
	a := writeCapture(t, "a.pcap", 40000, 1, 4096)
	same := writeCapture(t, "same.pcap", 1234, 1, 4096)
	other := writeCapture(t, "other.pcap", 1234, 1, 4097)
	require.Equal(t, 0, capdiffMain([]string{a, same}), "the guest's port is normalised")
	require.Equal(t, 1, capdiffMain([]string{a, other}))
	require.Equal(t, 2, capdiffMain([]string{a}))
	require.Equal(t, 2, capdiffMain([]string{a, filepath.Join(t.TempDir(), "missing.pcap")}))
}
