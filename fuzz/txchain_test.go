package fuzz

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/virtio"
)

// txSeg is one descriptor of a seed chain: data laid out in the TX region,
// or, with addr set, n bytes of guest memory anywhere (not written).
type txSeg struct {
	data  []byte
	addr  uint64
	n     uint32
	write bool
	ind   []txSeg // an indirect descriptor whose table holds these
}

// txSeed builds CheckTXChain inputs.
type txSeed struct {
	b     []byte
	size  uint16
	avail uint16
}

// profileIndex is the index of a device profile in device.Profiles().
// (No testing.TB in this file: go-118-fuzz-build's testing package, which
// replaces the standard one when the target is built for libFuzzer, has
// only F and T.)
func profileIndex(name string) byte {
	for i, p := range device.Profiles() {
		if p.Name == name {
			return byte(i)
		}
	}
	panic("no device profile " + name)
}

func newTXSeed(profile string, flags byte, sizeLog byte, port uint32) *txSeed {
	s := &txSeed{size: 1 << sizeLog}
	s.b = append(s.b, profileIndex(profile), flags|sizeLog<<4)
	s.b = binary.LittleEndian.AppendUint32(s.b, port)
	return s
}

// round lays the chains out (descriptor table from index 0, buffers right
// after the rings), publishes them and appends the round.
func (s *txSeed) round(chains ...[]txSeg) *txSeed {
	rings := virtio.DescLen*int(s.size) + 4 + 2*int(s.size)
	img := make([]byte, (rings+15)&^15)
	desc := 0
	put := func(i int, d virtio.Desc) {
		b := img[16*i:]
		binary.LittleEndian.PutUint64(b, d.Addr)
		binary.LittleEndian.PutUint32(b[8:], d.Len)
		binary.LittleEndian.PutUint16(b[12:], d.Flags)
		binary.LittleEndian.PutUint16(b[14:], d.Next)
	}
	availRing := 16*int(s.size) + 4
	// layout returns the descriptor for seg, laying its data out.
	layout := func(seg txSeg) virtio.Desc {
		d := virtio.Desc{Addr: seg.addr, Len: seg.n}
		if seg.addr == 0 {
			d.Addr = txcRegion + uint64(len(img))
			d.Len = uint32(len(seg.data))
			img = append(img, seg.data...)
		}
		if seg.write {
			d.Flags |= virtio.DescFWrite
		}
		return d
	}
	for _, chain := range chains {
		head := desc
		for k, seg := range chain {
			var d virtio.Desc
			if seg.ind != nil {
				var tbl []byte
				for j, e := range seg.ind {
					ed := layout(e)
					if j < len(seg.ind)-1 {
						ed.Flags |= virtio.DescFNext
						ed.Next = uint16(j + 1)
					}
					tbl = binary.LittleEndian.AppendUint64(tbl, ed.Addr)
					tbl = binary.LittleEndian.AppendUint32(tbl, ed.Len)
					tbl = binary.LittleEndian.AppendUint16(tbl, ed.Flags)
					tbl = binary.LittleEndian.AppendUint16(tbl, ed.Next)
				}
				d = layout(txSeg{data: tbl})
				d.Flags |= virtio.DescFIndirect
			} else {
				d = layout(seg)
			}
			if k < len(chain)-1 {
				d.Flags |= virtio.DescFNext
				d.Next = uint16(desc + 1)
			}
			put(desc, d)
			desc++
		}
		binary.LittleEndian.PutUint16(img[availRing+2*int(s.avail%s.size):], uint16(head))
		s.avail++
	}
	s.b = binary.LittleEndian.AppendUint16(s.b, s.avail)
	s.b = binary.LittleEndian.AppendUint16(s.b, 0)
	s.b = binary.LittleEndian.AppendUint16(s.b, uint16(len(img)))
	s.b = append(s.b, img...)
	return s
}

// raw appends a round as given.
func (s *txSeed) raw(avail, off uint16, patch []byte) *txSeed {
	s.b = binary.LittleEndian.AppendUint16(s.b, avail)
	s.b = binary.LittleEndian.AppendUint16(s.b, off)
	s.b = binary.LittleEndian.AppendUint16(s.b, uint16(len(patch)))
	s.b = append(s.b, patch...)
	return s
}

func guestPkt(op virtio.Op, src, dst uint32, n int) []byte {
	h := virtio.Header{SrcCID: txcGuestCID, DstCID: virtio.CIDHost, SrcPort: src, DstPort: dst,
		Type: virtio.TypeStream, Op: op, Len: uint32(n), BufAlloc: 256 << 10}
	b := h.Append(nil)
	for i := 0; i < n; i++ {
		b = append(b, pattern.Byte(uint64(i)))
	}
	return b
}

// txcZeroes is guest memory no seed writes: the 16 KiB after the TX
// region, where payload descriptors point.
const txcZeroes = txcRegion + txcRegionLen

// segs splits a packet into descriptors of the given lengths (the rest in
// the last). A descriptor that holds only payload points at zeroed memory
// instead of carrying its bytes: the oracles count payload bytes, they do
// not read them, and a seed must stay within txChainMaxInput.
func segs(pkt []byte, lens ...int) []txSeg {
	var out []txSeg
	off := 0
	seg := func(b []byte) txSeg {
		defer func() { off += len(b) }()
		if off >= virtio.HeaderLen && len(b) > 0 {
			return txSeg{addr: txcZeroes + uint64(off-virtio.HeaderLen)%0x2000, n: uint32(len(b))}
		}
		return txSeg{data: b}
	}
	for _, n := range lens {
		out = append(out, seg(pkt[:n]))
		pkt = pkt[n:]
	}
	return append(out, seg(pkt))
}

func txChainSeeds() [][]byte {
	const port = 5000
	req := []txSeg{{data: guestPkt(virtio.OpRequest, 1234, port, 0)}}
	rw := guestPkt(virtio.OpRW, 1234, port, 60)
	rwSmall := guestPkt(virtio.OpRW, 1234, port, 8) // laid out whole, so short
	var seeds [][]byte
	// A connection's life with every common layout, on each TX parser: the
	// layouts in one seed, the close in another, so that each stays within
	// txChainMaxInput.
	for _, p := range []string{"firecracker-1.5", "firecracker-1.14", "cloud-hypervisor-50", "cloud-hypervisor-51", "vhost-device-vsock"} {
		seeds = append(seeds, newTXSeed(p, flagTXListen|flagTXDrain, 2, port).
			round(req).
			round(segs(rw, 44), segs(rwSmall, 20)).
			round(segs(rwSmall), segs(rw, 44, 30)).b)
		seeds = append(seeds, newTXSeed(p, flagTXListen|flagTXDrain, 2, port).
			round(req).
			round([]txSeg{{data: guestPkt(virtio.OpShutdown, 1234, port, 0)}}, []txSeg{{data: guestPkt(virtio.OpRST, 1234, port, 0)}}).b)
	}
	// A lone descriptor shorter than its header's len: CH < 52 crashes.
	short := guestPkt(virtio.OpRW, 1234, port, 20)
	binary.LittleEndian.PutUint32(short[24:], 4000)
	seeds = append(seeds, newTXSeed("cloud-hypervisor-50", flagTXListen, 2, port).round(req).round([]txSeg{{data: short}}).b)
	// Nonlinear 44 + 32 KiB + 32 KiB from memory outside the region.
	big := guestPkt(virtio.OpRW, 1234, port, 0)
	binary.LittleEndian.PutUint32(big[24:], 65536)
	nonlinear := []txSeg{{data: big}, {addr: txcRXBufs, n: 32768}, {addr: txcRXBufs + 32768, n: 32768}}
	for _, p := range []string{"cloud-hypervisor-50", "cloud-hypervisor-51", "firecracker-1.14"} {
		seeds = append(seeds, newTXSeed(p, flagTXListen|flagTXSmallHost, 3, port).round(req).round(nonlinear, nonlinear).b)
	}
	// The pre-v1.14 iovec bug: the host socket (4 KiB) fills exactly at
	// the end of a packet's first payload descriptor.
	first := guestPkt(virtio.OpRW, 1234, port, 2096)
	second := segs(guestPkt(virtio.OpRW, 1234, port, 4000), 44, 2000)
	seeds = append(seeds, newTXSeed("firecracker-1.13", flagTXListen|flagTXSmallHost, 3, port).round(req).round(segs(first, 44), second).b)
	// Write-only descriptor in a TX chain: returned, or leaked by vhost-device-vsock.
	bad := segs(guestPkt(virtio.OpRW, 1234, port, 10), 44)
	bad[1].write = true
	seeds = append(seeds, newTXSeed("vhost-device-vsock", 0, 2, port).round(bad, bad).b)
	// Indirect tables: a REQUEST, then an RW in two descriptors.
	seeds = append(seeds, newTXSeed("firecracker-1.14", flagTXIndirect|flagTXListen|flagTXDrain, 2, port).
		round([]txSeg{{ind: req}}).
		round([]txSeg{{ind: segs(rw, 44)}}).b)
	// A loop, a head out of range, and an available index a ring ahead.
	loop := newTXSeed("firecracker-1.16", 0, 2, port)
	loop.raw(2, 0, []byte{0: 0x00, 1: 0x50, 2: 0x01, 8: 64, 12: 1, 14: 0, 16*4 + 4: 0, 16*4 + 6: 9})
	loop.raw(200, 0, nil)
	seeds = append(seeds, loop.b)
	return seeds
}

func FuzzTXChain(f *testing.F) {
	for _, s := range txChainSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, CheckTXChain(data))
	})
}

func TestTXChainSeedsReachTheDevice(t *testing.T) {
	// The seeds must do what they say: establish a connection and move
	// bytes, so that the fuzzer starts from deep states.
	s := newTXSeed("firecracker-1.14", flagTXListen|flagTXDrain, 2, 5000)
	rw := guestPkt(virtio.OpRW, 1234, 5000, 300)
	s.round([]txSeg{{data: guestPkt(virtio.OpRequest, 1234, 5000, 0)}}).round(segs(rw, 44))
	res, err := runTXChain(s.b)
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.stats.ConnsAdded)
	require.Equal(t, uint64(300), res.stats.TXBytes)
	require.Equal(t, 300, res.hostBytes, "and the host read them")
	require.Equal(t, uint64(0), res.stats.BadTXChains)

	for _, seed := range txChainSeeds() {
		_, err := runTXChain(seed)
		require.NoError(t, err)
	}
}

func TestTXChainSeedsFitTheCap(t *testing.T) {
	// A seed past txChainMaxInput would lose its last rounds.
	for i, seed := range txChainSeeds() {
		require.LessOrEqual(t, len(seed), txChainMaxInput, "seed %d", i)
	}
}
