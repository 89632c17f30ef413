package virtio

import (
	"testing"
)

func BenchmarkHeaderDecode(b *testing.B) {
	h := Header{SrcCID: 3, DstCID: 2, SrcPort: 1024, DstPort: 1 << 30, Len: 4096, Type: TypeStream, Op: OpRW, BufAlloc: 262144, FwdCnt: 77}
	buf := h.Append(nil)
	b.SetBytes(HeaderLen)
	var sink Header
	for b.Loop() {
		sink, _ = DecodeHeader(buf)
	}
	_ = sink
}

func BenchmarkHeaderEncode(b *testing.B) {
	h := Header{SrcCID: 3, DstCID: 2, SrcPort: 1024, DstPort: 1 << 30, Len: 4096, Type: TypeStream, Op: OpRW, BufAlloc: 262144, FwdCnt: 77}
	buf := make([]byte, HeaderLen)
	b.SetBytes(HeaderLen)
	for b.Loop() {
		_ = h.Encode(buf)
	}
}

// BenchmarkChain64K pits the device's work on a 64 KiB packet laid out as
// 6.12.68+ kernels do (header + 32 KiB + 32 KiB, docs/sources.md#linux-tx-layout) against a
// plain copy of the same bytes. Run both in one invocation and compare MB/s.
func BenchmarkChain64K(b *testing.B) {
	b.Run("walk+copy", func(b *testing.B) {
		r := newRing(b, 256, 3*32768, 0)
		bufs := []Buffer{{Addr: r.data, Len: HeaderLen}, {Addr: r.data + 32768, Len: 32768}, {Addr: r.data + 65536, Len: 32768}}
		out := make([]byte, HeaderLen+65536)
		b.SetBytes(int64(len(out)))
		for b.Loop() {
			if _, err := r.drv.Add(bufs); err != nil {
				b.Fatal(err)
			}
			c, _, err := r.dev.Pop()
			if err != nil {
				b.Fatal(err)
			}
			if n, err := c.ReadOut(r.mem, 0, out); err != nil || n != len(out) {
				b.Fatal(n, err)
			}
			if err := r.dev.Push(c.Head, 0); err != nil {
				b.Fatal(err)
			}
			if _, _, _, err := r.drv.PopUsed(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain-copy", func(b *testing.B) {
		src := make([]byte, HeaderLen+65536)
		out := make([]byte, len(src))
		b.SetBytes(int64(len(out)))
		for b.Loop() {
			copy(out, src)
		}
	})
}
