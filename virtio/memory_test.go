package virtio

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestZeroClearsWhatWasWritten: after any mix of writes (WriteAt, a
// slice from Slice, a ring index store), Zero leaves the address space as
// freshly made, in one region or across two.
func TestZeroClearsWhatWasWritten(t *testing.T) {
	twoRegions := func() *AddressSpace {
		m, err := NewAddressSpace(Region{Base: 0x1000, Data: make([]byte, 0x1000)}, Region{Base: 0x2000, Data: make([]byte, 0x1000)})
		require.NoError(t, err)
		return m
	}
	for _, tc := range []struct {
		name  string
		mem   func() *AddressSpace
		write func(m *AddressSpace)
	}{
		{"nothing", func() *AddressSpace { return NewFlatMemory(0, 4096) }, func(*AddressSpace) {}},
		{"WriteAt", func() *AddressSpace { return NewFlatMemory(0, 4096) }, func(m *AddressSpace) {
			require.NoError(t, m.WriteAt([]byte{1, 2, 3}, 100))
			require.NoError(t, m.WriteAt([]byte{4}, 4095))
			require.NoError(t, m.WriteAt([]byte{5}, 0))
		}},
		{"Slice", func() *AddressSpace { return NewFlatMemory(0x400, 4096) }, func(m *AddressSpace) {
			b, err := m.Slice(0x800, 16)
			require.NoError(t, err)
			copy(b, "sixteen bytes...")
		}},
		{"storeU16", func() *AddressSpace { return NewFlatMemory(0, 4096) }, func(m *AddressSpace) {
			var scratch [8]byte
			require.NoError(t, storeU16(m, &scratch, 2000, 0xffff))
		}},
		{"across regions", twoRegions, func(m *AddressSpace) {
			require.NoError(t, m.WriteAt(bytes.Repeat([]byte{7}, 32), 0x1ff0))
			b, err := m.Slice(0x2800, 8)
			require.NoError(t, err)
			copy(b, "abcdefgh")
		}},
		{"Regions", twoRegions, func(m *AddressSpace) {
			for _, r := range m.Regions() {
				r.Data[0], r.Data[len(r.Data)-1] = 9, 9
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.mem()
			for round := 0; round < 2; round++ { // zeroing twice, and writing after a Zero
				tc.write(m)
				m.Zero()
				for _, r := range m.regions {
					require.Equal(t, make([]byte, len(r.Data)), r.Data, "region at %#x, round %d", r.Base, round)
				}
			}
		})
	}
}

// A single-region space takes the fast path, a space of two adjacent
// regions the general one: over the same bytes, every access succeeds or
// fails alike, at the edges, empty, past the end and wrapping.
func TestFastPathAgreesWithTheGeneralOne(t *testing.T) {
	const base, size = 0x1000, 4096
	one := NewFlatMemory(base, size)
	two, err := NewAddressSpace(Region{Base: base, Data: make([]byte, size/2)}, Region{Base: base + size/2, Data: make([]byte, size/2)})
	require.NoError(t, err)
	addrs := []uint64{0, base - 1, base, base + 1, base + size/2, base + size - 1, base + size, base + size + 1, math.MaxUint64}
	lens := []uint64{0, 1, 2, size/2 + 1, size - 1, size, size + 1, math.MaxUint64}
	for _, addr := range addrs {
		for _, n := range lens {
			name := fmt.Sprintf("addr %#x len %d", addr, n)
			require.Equal(t, two.Check(addr, n) == nil, one.Check(addr, n) == nil, "Check %s", name)
			if n > size+1 {
				continue
			}
			p := make([]byte, n)
			require.Equal(t, two.ReadAt(p, addr) == nil, one.ReadAt(p, addr) == nil, "ReadAt %s", name)
			require.Equal(t, two.WriteAt(p, addr) == nil, one.WriteAt(p, addr) == nil, "WriteAt %s", name)
			// Slice fails where a range straddles the two regions; over
			// one region it agrees, empty or not.
			if addr < base+size/2 && addr+n > base+size/2 {
				continue
			}
			b1, err1 := one.Slice(addr, n)
			b2, err2 := two.Slice(addr, n)
			require.Equal(t, err2 == nil, err1 == nil, "Slice %s", name)
			require.Equal(t, len(b2), len(b1), "Slice %s", name)
		}
	}
}
