package virtio

import (
	"bytes"
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
