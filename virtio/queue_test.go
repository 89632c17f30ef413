package virtio

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// ring is a queue laid out at address 0 of a flat memory, with a data area
// after it.
type ring struct {
	mem  *AddressSpace
	l    Layout
	drv  *Driver
	dev  *DeviceQueue
	data uint64 // first byte after the rings
}

func newRing(t testing.TB, size uint16, dataBytes int, features uint64) *ring {
	t.Helper()
	l, n := ContiguousLayout(0, size)
	data := (n + 4095) &^ 4095
	mem := NewFlatMemory(0, int(data)+dataBytes)
	drv, err := NewDriver(mem, l, features)
	require.NoError(t, err)
	dev, err := NewDeviceQueue(mem, l, features)
	require.NoError(t, err)
	return &ring{mem: mem, l: l, drv: drv, dev: dev, data: data}
}

func (r *ring) setAvailIdx(t *testing.T, idx uint16) {
	require.NoError(t, writeU16(r.mem, r.l.Avail+2, idx))
}

func (r *ring) setAvailEntry(t *testing.T, slot, head uint16) {
	require.NoError(t, writeU16(r.mem, r.l.Avail+4+2*uint64(slot%r.l.Size), head))
}

// publishRaw makes descriptor head available without the driver's help, for
// tables no correct driver would build.
func (r *ring) publishRaw(t *testing.T, head uint16) {
	r.setAvailEntry(t, 0, head)
	r.setAvailIdx(t, 1)
}

func TestContiguousLayoutFitsOrIsRefused(t *testing.T) {
	l, n := ContiguousLayout(0x1000, 256)
	require.NoError(t, l.Validate())
	require.Equal(t, Layout{Size: 256, Desc: 0x1000, Avail: 0x2000, Used: 0x2208}, l) // avail: 6+2*256 bytes, rounded up to 4
	require.Equal(t, uint64(0x2208+6+8*256-0x1000), n)
	for _, bad := range []Layout{
		{Size: 0}, {Size: 3}, {Size: 0xc000},
		{Size: 4, Desc: 8}, {Size: 4, Avail: 1}, {Size: 4, Used: 2},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
	// A layout that does not fit in memory is refused by both sides.
	mem := NewFlatMemory(0, 100)
	_, err := NewDriver(mem, l, 0)
	require.Error(t, err)
	_, err = NewDeviceQueue(mem, l, 0)
	require.Error(t, err)
}

func TestChainRoundTrip(t *testing.T) {
	r := newRing(t, 256, 128*1024, 0)
	// The nonlinear TX layout of a 64 KiB packet on 6.12.68+ guests (see
	// docs/sources.md#linux-tx-layout): header + 32 KiB + 32 KiB.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	hdr := Header{SrcCID: 3, DstCID: 2, SrcPort: 1024, DstPort: 9, Len: uint32(len(payload)), Type: TypeStream, Op: OpRW}
	hb := hdr.Append(nil)
	require.NoError(t, r.mem.WriteAt(hb, r.data))
	require.NoError(t, r.mem.WriteAt(payload[:32768], r.data+4096))
	require.NoError(t, r.mem.WriteAt(payload[32768:], r.data+4096+32768+4096))
	head, err := r.drv.Add([]Buffer{{Addr: r.data, Len: 44}, {Addr: r.data + 4096, Len: 32768}, {Addr: r.data + 4096 + 32768 + 4096, Len: 32768}})
	require.NoError(t, err)
	require.Equal(t, 253, r.drv.NumFree())

	n, err := r.dev.Pending()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	c, ok, err := r.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, head, c.Head)
	require.Equal(t, "r44 r32768 r32768", c.Shape())
	require.Equal(t, uint64(44+65536), c.ReadableLen())
	require.Zero(t, c.WritableLen())
	require.NoError(t, c.RequireReadable())

	got := make([]byte, 44+65536)
	m, err := c.ReadOut(r.mem, 0, got)
	require.NoError(t, err)
	require.Equal(t, len(got), m)
	dh, err := DecodeHeader(got)
	require.NoError(t, err)
	require.Equal(t, hdr, dh)
	require.Equal(t, payload, got[44:])
	// Reading from an offset and past the end is short, not an error.
	m, err = c.ReadOut(r.mem, 44+65530, got[:100])
	require.NoError(t, err)
	require.Equal(t, 6, m)

	_, ok, err = r.dev.Pop()
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, r.dev.Push(c.Head, 0))
	uh, ul, ok, err := r.drv.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, head, uh)
	require.Zero(t, ul)
	require.Equal(t, 256, r.drv.NumFree())
	_, _, ok, err = r.drv.PopUsed()
	require.NoError(t, err)
	require.False(t, ok)
}

func TestWritableChain(t *testing.T) {
	// The <= 6.2 RX layout (docs/sources.md#linux-rx-buffers): a 44-byte header buffer and a
	// 4096-byte data buffer, both device-writable.
	r := newRing(t, 8, 16384, 0)
	_, err := r.drv.Add([]Buffer{{Addr: r.data, Len: 44, Write: true}, {Addr: r.data + 64, Len: 4096, Write: true}})
	require.NoError(t, err)
	c, ok, err := r.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "w44 w4096", c.Shape())
	require.NoError(t, c.RequireWritable())
	require.ErrorIs(t, c.RequireReadable(), ErrWriteOnly)
	msg := bytes.Repeat([]byte{7}, 44+100)
	n, err := c.WriteIn(r.mem, 0, msg)
	require.NoError(t, err)
	require.Equal(t, len(msg), n)
	back := make([]byte, 100)
	require.NoError(t, r.mem.ReadAt(back, r.data+64))
	require.Equal(t, msg[44:], back)
	// More than the chain holds is short.
	n, err = c.WriteIn(r.mem, 4000, make([]byte, 500))
	require.NoError(t, err)
	require.Equal(t, 44+4096-4000, n)
	require.NoError(t, r.dev.Push(c.Head, 144))
	_, written, ok, err := r.drv.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint32(144), written)
}

func TestIndexWrap(t *testing.T) {
	// avail.idx and used.idx are free-running le16 counters (virtio 1.x
	// 2.7.6, 2.7.8): they wrap at 65536 while slots wrap at the queue size.
	r := newRing(t, 4, 4096, 0)
	const rounds = 70000
	for i := 0; i < rounds; i++ {
		_, err := r.drv.Add([]Buffer{{Addr: r.data + uint64(i%16), Len: 1}})
		require.NoError(t, err)
		c, ok, err := r.dev.Pop()
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, r.dev.Push(c.Head, uint32(i)))
		_, written, ok, err := r.drv.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, uint32(i), written)
	}
	avail, err := readU16(r.mem, r.l.Avail+2)
	require.NoError(t, err)
	used, err := readU16(r.mem, r.l.Used+2)
	require.NoError(t, err)
	require.Equal(t, uint16(rounds%65536), avail)
	require.Equal(t, uint16(rounds%65536), used)
	require.Equal(t, QueueState{LastAvail: uint16(rounds % 65536), UsedIdx: uint16(rounds % 65536)}, r.dev.State())
}

func TestFullRing(t *testing.T) {
	r := newRing(t, 8, 4096, 0)
	for i := 0; i < 4; i++ {
		_, err := r.drv.Add([]Buffer{{Addr: r.data, Len: 44}, {Addr: r.data + 64, Len: 10}})
		require.NoError(t, err)
	}
	require.Zero(t, r.drv.NumFree())
	_, err := r.drv.Add([]Buffer{{Addr: r.data, Len: 1}})
	require.ErrorIs(t, err, ErrQueueFull)
	n, err := r.dev.Pending()
	require.NoError(t, err)
	require.Equal(t, 4, n)
	c, _, err := r.dev.Pop()
	require.NoError(t, err)
	require.NoError(t, r.dev.Push(c.Head, 0))
	_, _, ok, err := r.drv.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 2, r.drv.NumFree())
	_, err = r.drv.Add([]Buffer{{Addr: r.data, Len: 44}, {Addr: r.data + 64, Len: 10}})
	require.NoError(t, err)
	_, err = r.drv.Add([]Buffer{{Addr: r.data, Len: 44}})
	require.ErrorIs(t, err, ErrQueueFull)
}

func TestDriverRejects(t *testing.T) {
	r := newRing(t, 8, 4096, 0)
	_, err := r.drv.Add(nil)
	require.ErrorIs(t, err, ErrEmptyChain)
	// Virtio 1.x 2.7.4.2: device-writable descriptors after readable ones.
	_, err = r.drv.Add([]Buffer{{Addr: r.data, Len: 1, Write: true}, {Addr: r.data, Len: 1}})
	require.ErrorIs(t, err, ErrOrder)
	_, err = r.drv.AddIndirect(r.data, []Buffer{{Addr: r.data, Len: 1}})
	require.ErrorIs(t, err, ErrIndirectOff)
	require.Equal(t, 8, r.drv.NumFree())
}

func TestChainFaults(t *testing.T) {
	const size = 8
	tests := []struct {
		name  string
		descs map[uint16]Desc
		head  uint16
		err   error
		index uint16
		segs  int // segments walked before the fault
	}{
		{
			name:  "self loop",
			descs: map[uint16]Desc{0: {Addr: 0x2000, Len: 1, Flags: DescFNext, Next: 0}},
			err:   ErrDescLoop, index: 0, segs: 1,
		},
		{
			name: "loop through three descriptors",
			descs: map[uint16]Desc{
				0: {Addr: 0x2000, Len: 1, Flags: DescFNext, Next: 5},
				5: {Addr: 0x2000, Len: 1, Flags: DescFNext, Next: 3},
				3: {Addr: 0x2000, Len: 1, Flags: DescFNext, Next: 5},
			},
			err: ErrDescLoop, index: 5, segs: 3,
		},
		{
			name:  "next index out of range",
			descs: map[uint16]Desc{0: {Addr: 0x2000, Len: 1, Flags: DescFNext, Next: size}},
			err:   ErrDescIndex, index: size, segs: 1,
		},
		{
			name:  "head index out of range",
			head:  0xffff,
			descs: map[uint16]Desc{},
			err:   ErrDescIndex, index: 0xffff,
		},
		{
			name:  "address past the end of memory",
			descs: map[uint16]Desc{0: {Addr: 0x10000, Len: 1}},
			err:   ErrDescMemory, index: 0,
		},
		{
			name:  "buffer running past the end of memory",
			descs: map[uint16]Desc{0: {Addr: 0x2000, Len: 0x10000}},
			err:   ErrDescMemory, index: 0,
		},
		{
			name:  "address plus length wraps the 64-bit space",
			descs: map[uint16]Desc{0: {Addr: 0xffff_ffff_ffff_fff0, Len: 0x20}},
			err:   ErrDescMemory, index: 0,
		},
		{
			name:  "indirect without the feature",
			descs: map[uint16]Desc{0: {Addr: 0x2000, Len: 16, Flags: DescFIndirect}},
			err:   ErrIndirectOff, index: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, size, 0x10000-0x1000, 0)
			for i, d := range tc.descs {
				require.NoError(t, WriteDesc(r.mem, r.l.Desc, i, d))
			}
			r.publishRaw(t, tc.head)
			c, ok, err := r.dev.Pop()
			require.True(t, ok)
			require.ErrorIs(t, err, tc.err)
			var ce *ChainError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.head, ce.Head)
			require.Equal(t, tc.index, ce.Index)
			require.Len(t, c.Segs, tc.segs)
			require.Equal(t, tc.head < size, r.dev.HeadValid(c.Head))
			// The head was consumed either way.
			n, err := r.dev.Pending()
			require.NoError(t, err)
			require.Zero(t, n)
		})
	}
}

func TestZeroLengthDescriptor(t *testing.T) {
	// Nothing in the specification forbids a zero-length buffer; the walker
	// reports it and leaves the judgement to the device profile.
	r := newRing(t, 8, 4096, 0)
	_, err := r.drv.Add([]Buffer{{Addr: r.data, Len: 44}, {Addr: r.data + 4096, Len: 0}})
	require.NoError(t, err)
	c, _, err := r.dev.Pop()
	require.NoError(t, err)
	require.Equal(t, "r44 r0", c.Shape())
}

func TestAvailOverrun(t *testing.T) {
	r := newRing(t, 8, 4096, 0)
	r.setAvailIdx(t, 9)
	_, err := r.dev.Pending()
	require.ErrorIs(t, err, ErrAvailOverrun)
	_, ok, err := r.dev.Pop()
	require.ErrorIs(t, err, ErrAvailOverrun)
	require.False(t, ok)
	r.setAvailIdx(t, 8) // exactly a full ring is legal
	n, err := r.dev.Pending()
	require.NoError(t, err)
	require.Equal(t, 8, n)
}

func TestUsedFaults(t *testing.T) {
	r := newRing(t, 8, 4096, 0)
	// A device returning a head that was never made available.
	require.NoError(t, r.dev.Push(3, 0))
	_, _, ok, err := r.drv.PopUsed()
	require.True(t, ok)
	require.ErrorIs(t, err, ErrUsedID)
	require.Equal(t, 8, r.drv.NumFree())
	// A used idx jumping by more than the size.
	require.NoError(t, writeU16(r.mem, r.l.Used+2, 20))
	_, _, _, err = r.drv.PopUsed()
	require.ErrorIs(t, err, ErrUsedOverrun)
}

func TestIndirectTablesAreWalkedAndTheirFaultsRefused(t *testing.T) {
	const size = 8
	r := newRing(t, size, 0x8000, FeatureIndirectDesc)
	table := r.data + 0x4000
	head, err := r.drv.AddIndirect(table, []Buffer{{Addr: r.data, Len: 44}, {Addr: r.data + 64, Len: 100}, {Addr: r.data + 1024, Len: 200, Write: true}})
	require.NoError(t, err)
	require.Equal(t, size-1, r.drv.NumFree())
	c, _, err := r.dev.Pop()
	require.NoError(t, err)
	require.Equal(t, head, c.Head)
	require.Equal(t, "r44 r100 w200", c.Shape())
	for i, s := range c.Segs {
		require.True(t, s.Indirect)
		require.Equal(t, uint16(i), s.Index)
	}
	require.NoError(t, r.dev.Push(c.Head, 0))
	_, _, _, err = r.drv.PopUsed()
	require.NoError(t, err)
	require.Equal(t, size, r.drv.NumFree())

	// Faults: virtio 1.x 2.7.5.3.1 forbids INDIRECT with NEXT, nested
	// tables, and chains longer than the queue.
	faults := []struct {
		name  string
		desc  Desc
		table []Desc
		err   error
	}{
		{"indirect with next", Desc{Addr: table, Len: 16, Flags: DescFIndirect | DescFNext}, []Desc{{Addr: r.data, Len: 1}}, ErrIndirectNext},
		{"table length not a multiple of 16", Desc{Addr: table, Len: 20, Flags: DescFIndirect}, nil, ErrIndirectTableLen},
		{"empty table", Desc{Addr: table, Len: 0, Flags: DescFIndirect}, nil, ErrIndirectTableLen},
		{"nested indirect", Desc{Addr: table, Len: 16, Flags: DescFIndirect}, []Desc{{Addr: table, Len: 16, Flags: DescFIndirect}}, ErrIndirectNested},
		{"loop inside the table", Desc{Addr: table, Len: 32, Flags: DescFIndirect}, []Desc{{Addr: r.data, Len: 1, Flags: DescFNext, Next: 1}, {Addr: r.data, Len: 1, Flags: DescFNext, Next: 0}}, ErrDescLoop},
		{"next outside the table", Desc{Addr: table, Len: 16, Flags: DescFIndirect}, []Desc{{Addr: r.data, Len: 1, Flags: DescFNext, Next: 1}}, ErrDescIndex},
		{"table outside memory", Desc{Addr: 0xfff0_0000, Len: 16, Flags: DescFIndirect}, nil, ErrDescMemory},
		{"buffer outside memory", Desc{Addr: table, Len: 16, Flags: DescFIndirect}, []Desc{{Addr: 0xfff0_0000, Len: 1}}, ErrDescMemory},
		{"chain longer than the queue", Desc{Addr: table, Len: 16 * (size + 1), Flags: DescFIndirect}, nil, ErrChainTooLong},
	}
	for i, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			for k, d := range tc.table {
				require.NoError(t, WriteDesc(r.mem, table, uint16(k), d))
			}
			require.NoError(t, WriteDesc(r.mem, r.l.Desc, 0, tc.desc))
			slot := r.dev.State().LastAvail
			r.setAvailEntry(t, slot, 0)
			r.setAvailIdx(t, slot+1)
			_, ok, err := r.dev.Pop()
			require.True(t, ok)
			require.ErrorIs(t, err, tc.err, "case %d", i)
		})
	}
}

func TestChainBytesLimit(t *testing.T) {
	// "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in
	// total" (virtio 1.x 2.7.5.2): 4097 descriptors of 1 MiB each, all over
	// the same buffer.
	const size = 8192
	r := newRing(t, size, 1<<20, 0)
	for i := uint16(0); i < 4097; i++ {
		require.NoError(t, WriteDesc(r.mem, r.l.Desc, i, Desc{Addr: r.data, Len: 1 << 20, Flags: DescFNext, Next: i + 1}))
	}
	r.publishRaw(t, 0)
	_, _, err := r.dev.Pop()
	require.ErrorIs(t, err, ErrChainBytes)
}

func TestAddressSpaceCopiesAcrossAdjacentRegionsAndRefusesGaps(t *testing.T) {
	m, err := NewAddressSpace(
		Region{Base: 0x2000, Data: make([]byte, 0x1000)},
		Region{Base: 0x1000, Data: make([]byte, 0x1000)}, // adjacent, given out of order
		Region{Base: 0x8000, Data: make([]byte, 0x100)},
	)
	require.NoError(t, err)
	require.Equal(t, uint64(0x1000), m.Regions()[0].Base)

	// Crossing two adjacent regions works for copies, not for Slice.
	in := bytes.Repeat([]byte{0xab}, 32)
	require.NoError(t, m.WriteAt(in, 0x1ff0))
	out := make([]byte, 32)
	require.NoError(t, m.ReadAt(out, 0x1ff0))
	require.Equal(t, in, out)
	require.NoError(t, m.Check(0x1ff0, 32))
	_, err = m.Slice(0x1ff0, 32)
	require.Error(t, err)
	s, err := m.Slice(0x8000, 0x100)
	require.NoError(t, err)
	require.Len(t, s, 0x100)

	faults := []struct {
		addr, n uint64
	}{
		{0, 1}, {0xfff, 2}, {0x2fff, 2}, {0x3000, 1}, {0x80ff, 2}, {0x9000, 0},
		{0xffff_ffff_ffff_ffff, 2}, {0x1000, 0x7100},
	}
	for _, f := range faults {
		var ae *AccessError
		require.ErrorAs(t, m.Check(f.addr, f.n), &ae, "%#x+%d", f.addr, f.n)
		if f.n > 0 && f.n < 1<<20 {
			require.ErrorAs(t, m.ReadAt(make([]byte, f.n), f.addr), &ae)
			require.ErrorAs(t, m.WriteAt(make([]byte, f.n), f.addr), &ae)
		}
		_, err := m.Slice(f.addr, f.n)
		require.ErrorAs(t, err, &ae)
	}
	// A failed write across a gap leaves memory untouched.
	require.Error(t, m.WriteAt(bytes.Repeat([]byte{1}, 0x200), 0x2f00))
	tail := make([]byte, 0x100)
	require.NoError(t, m.ReadAt(tail, 0x2f00))
	require.Equal(t, make([]byte, 0x100), tail)

	// Zero-length accesses are fine inside a region and at its end.
	require.NoError(t, m.Check(0x3000, 0))
	require.NoError(t, m.Check(0x8100, 0))

	_, err = NewAddressSpace(Region{Base: 0, Data: make([]byte, 10)}, Region{Base: 5, Data: make([]byte, 10)})
	require.Error(t, err)
	_, err = NewAddressSpace(Region{Base: 0xffff_ffff_ffff_fff0, Data: make([]byte, 0x20)})
	require.Error(t, err)

	// The flat memory takes the single-region fast path.
	f := NewFlatMemory(0x100, 0x100)
	require.NoError(t, f.WriteAt([]byte{1, 2, 3}, 0x1fd))
	require.Error(t, f.WriteAt([]byte{1, 2, 3, 4}, 0x1fd))
	require.Error(t, f.ReadAt([]byte{0}, 0xff))
}

// readU16 and writeU16 are the one-off forms of the ring accessors.
func readU16(mem Memory, addr uint64) (uint16, error) {
	var b [8]byte
	return loadU16(mem, &b, addr)
}

func writeU16(mem Memory, addr uint64, v uint16) error {
	var b [8]byte
	return storeU16(mem, &b, addr, v)
}
