package fuzz

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/virtio"
)

func FuzzHeader(f *testing.F) {
	h := virtio.Header{SrcCID: 3, DstCID: 2, SrcPort: 1024, DstPort: 1 << 30, Len: 4096, Type: virtio.TypeStream, Op: virtio.OpRW, BufAlloc: 262144}
	f.Add(h.Append(nil))
	f.Add([]byte{})
	f.Add(make([]byte, 43))
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, CheckHeader(data))
	})
}

// chainImage builds a CheckChain input: queue size 8, a chain of the given
// descriptors made available at slot 0.
func chainImage(features byte, descs []virtio.Desc) []byte {
	l, n := virtio.ContiguousLayout(0, 8)
	img := make([]byte, n+256)
	for i, d := range descs {
		b := img[16*i:]
		binary.LittleEndian.PutUint64(b, d.Addr)
		binary.LittleEndian.PutUint32(b[8:], d.Len)
		binary.LittleEndian.PutUint16(b[12:], d.Flags)
		binary.LittleEndian.PutUint16(b[14:], d.Next)
	}
	binary.LittleEndian.PutUint16(img[l.Avail+4:], 0)
	return capped(append([]byte{3, features, 1, 0}, img...), chainMaxInput)
}

func FuzzChain(f *testing.F) {
	f.Add(chainImage(0, []virtio.Desc{{Addr: 0x200, Len: 44, Flags: virtio.DescFNext, Next: 1}, {Addr: 0x240, Len: 64}}))
	f.Add(chainImage(0, []virtio.Desc{{Addr: 0x200, Len: 44, Flags: virtio.DescFNext, Next: 0}}))
	f.Add(chainImage(1, []virtio.Desc{{Addr: 0x200, Len: 32, Flags: virtio.DescFIndirect}}))
	f.Add(chainImage(0, []virtio.Desc{{Addr: 0xfffffff0, Len: 44}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, CheckChain(data))
	})
}
