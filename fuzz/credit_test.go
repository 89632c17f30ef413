package fuzz

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/guest"
)

// creditSeed builds a CheckCredit input: device and kernel indexes into
// creditDevices and creditKernels, who connects, then operations.
type creditSeed []byte

func newCreditSeed(dev, kern int, hostInit bool) creditSeed {
	sel := dev + len(creditDevices)*kern
	if hostInit {
		sel += len(creditDevices) * len(creditKernels)
	}
	return creditSeed{byte(sel)}
}

// op appends an operation of n bytes, with the smallest scale that holds n.
func (s creditSeed) op(kind byte, n int) creditSeed {
	shift := 0
	for n>>shift > 0xffff {
		shift++
	}
	s = append(s, kind|byte(shift)<<3)
	return binary.LittleEndian.AppendUint16(s, uint16(n>>shift))
}

func creditSeeds() [][]byte {
	var seeds [][]byte
	for dev := range creditDevices {
		for kern := range creditKernels {
			for _, hostInit := range []bool{false, true} {
				// Bulk both ways, with reads smaller and larger than the
				// windows, and a nonlinear-sized send.
				seeds = append(seeds, newCreditSeed(dev, kern, hostInit).
					op(opGuestSend, 200<<10).op(opHostRead, 100<<10).op(opHostWrite, 300<<10).
					op(opGuestRead, 4096).op(opGuestSend, 65537).op(opHostRead, 512<<10).
					op(opGuestRead, 512<<10))
			}
		}
	}
	// The guest shrinks its buffer to the minimum while the host streams,
	// and grows it again.
	seeds = append(seeds, newCreditSeed(0, 0, true).
		op(opGuestBuffer, 128).op(opHostWrite, 100<<10).op(opGuestRead, 1000).
		op(opGuestBuffer, 256<<10).op(opGuestRead, 200<<10))
	// Both at once, time passing, and each kind of close.
	for sub := closeHostWrite; sub <= closeGuestRecv; sub++ {
		seeds = append(seeds, newCreditSeed(sub%len(creditDevices), sub%2, sub == closeHostWrite).
			op(opBothWrite, 40000).op(opRunTime, 3000).op(opClose, sub).
			op(opGuestSend, 1000).op(opHostWrite, 1000).op(opRunTime, 10000))
	}
	// Small reads on firecracker-main, whose RX drains a readiness at once.
	s := newCreditSeed(1, 0, false).op(opHostWrite, 150<<10)
	for i := 0; i < 12; i++ {
		s = s.op(opGuestRead, 3000+i*1000)
	}
	seeds = append(seeds, s)
	return seeds
}

func FuzzCredit(f *testing.F) {
	for _, s := range creditSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, CheckCredit(data))
	})
}

func TestCreditSeedsMoveData(t *testing.T) {
	for _, s := range creditSeeds() {
		require.NoError(t, CheckCredit(s))
	}
	// A seed must really move its bytes: 200 KiB out, 300 KiB in.
	in := &input{b: newCreditSeed(0, 0, false).op(opGuestSend, 200<<10).op(opHostWrite, 300<<10)}
	c, err := newCreditRig(creditDevices[0], creditKernels[0], false)
	require.NoError(t, err)
	in.u8()
	for !in.done() {
		op := in.u8()
		require.NoError(t, c.do(op&7, int(in.u16())<<((op>>3)&3)))
	}
	require.NoError(t, c.drain())
	require.Equal(t, uint64(200<<10), c.hostRecv)
	require.Equal(t, uint64(300<<10), c.guestRecv)
}

func TestCreditPairsAreRXCompatible(t *testing.T) {
	for _, dn := range creditDevices {
		d, err := device.LookupProfile(dn)
		require.NoError(t, err)
		for _, kn := range creditKernels {
			k, err := guest.LookupProfile(kn)
			require.NoError(t, err)
			require.True(t, emu.RXCompatible(d, k), "%s with %s", dn, kn)
		}
	}
}
