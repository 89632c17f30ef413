package emu

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/virtio"
)

func externalRings(t *testing.T, mem *virtio.AddressSpace) Rings {
	var r Rings
	r.Mem = mem
	for q := range 2 {
		l, _ := virtio.ContiguousLayout(uint64(q)*0x4000, 64)
		_, err := virtio.NewDriver(mem, l, 0)
		require.NoError(t, err)
		r.Queues[q] = l
	}
	r.Interrupt = func(int) {}
	return r
}

// An external world is the device and the host side only; its rings come
// and go with the guest, and every restart is a restore.
func TestExternalWorldStartsStopsAndRestartsRings(t *testing.T) {
	w, err := NewExternal(Config{Device: "firecracker-1.15"})
	require.NoError(t, err)
	require.Nil(t, w.Guest)
	require.True(t, w.External())
	require.ErrorContains(t, w.Suspend(), "the guest is external")
	_, err = w.StopRings()
	require.ErrorContains(t, err, "the device is not running")
	w.Kick(virtio.QueueTX) // dropped: no device

	mem := virtio.NewFlatMemory(0, 1<<20)
	r := externalRings(t, mem)
	r.State[virtio.QueueTX] = virtio.QueueState{LastAvail: 7, UsedIdx: 7}
	require.NoError(t, w.StartRings(r))
	require.True(t, w.RingsRunning())
	require.ErrorContains(t, w.StartRings(r), "the device is running")
	w.Settle()

	st, err := w.StopRings()
	require.NoError(t, err)
	require.Equal(t, virtio.QueueState{LastAvail: 7, UsedIdx: 7}, st[virtio.QueueTX])
	require.False(t, w.RingsRunning())
	require.False(t, w.Eng.Log.Len() == 0)

	r.State = [3]virtio.QueueState{}
	require.NoError(t, w.StartRings(r))
	w.Settle()
	require.Equal(t, 1, w.Cycles())
	require.Contains(t, w.Eng.Log.String(), "rings started again (cycle 1): muxer rebuilt, ports per profile firecracker-1.15")
	require.Contains(t, w.Eng.Log.String(), "no transport reset posted: the event queue is the VMM's")
}

func TestExternalWorldRefusesRingsOutsideMemory(t *testing.T) {
	w, err := NewExternal(Config{})
	require.NoError(t, err)
	r := externalRings(t, virtio.NewFlatMemory(0, 1<<20))
	r.Queues[virtio.QueueRX].Used = 2 << 20
	require.ErrorContains(t, w.StartRings(r), "start rings: device: rx queue")
	require.False(t, w.RingsRunning())

	r = externalRings(t, virtio.NewFlatMemory(0, 1<<20))
	r.State[virtio.QueueRX] = virtio.QueueState{LastAvail: 100, UsedIdx: 0}
	require.ErrorContains(t, w.StartRings(r), "chains in flight exceed the queue size")
	// The failed start unbound the host socket again: a good start works.
	r.State = [3]virtio.QueueState{}
	require.NoError(t, w.StartRings(r))
}

func TestWorldWithGuestModelHasNoExternalRings(t *testing.T) {
	w, err := New(Config{})
	require.NoError(t, err)
	require.ErrorIs(t, w.StartRings(Rings{}), errNotExternal)
	_, err = w.StopRings()
	require.ErrorIs(t, err, errNotExternal)
}
