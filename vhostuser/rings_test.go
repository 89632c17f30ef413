package vhostuser

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/virtio"
)

// QEMU sends the memory table again when its memory map changes, with the
// device running; the device goes on over the new mapping.
func TestMemTableReplacedWhileRunning(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	h.send(reqSetMemTable, memTablePayload(), h.memfd, h.memfd)
	host, _ := guestConnect(t, h, 49160, 5003, 65536)
	h.sendPkt(hdr(49160, 5003, virtio.OpRW, 65536, 0), []byte("after remap"))
	got := make([]byte, 11)
	require.NoError(t, host.SetReadDeadline(time.Now().Add(wait)))
	_, err := readFull(host, got)
	require.NoError(t, err)
	require.Equal(t, "after remap", string(got))
}

// QEMU swaps a ring's call eventfd while it runs (masking and unmasking
// the vector); interrupts go to the new one.
func TestCallEventfdReplacedWhileRunning(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	fresh := newEventFD(t)
	defer unix.Close(fresh)
	h.send(reqSetVringCall, u64(virtio.QueueRX), fresh)
	h.call[virtio.QueueRX], fresh = fresh, h.call[virtio.QueueRX]
	h.sendPkt(hdr(49161, 6002, virtio.OpRequest, 65536, 0), nil) // nobody listens: RST into RX
	require.True(t, waitCall(h.call[virtio.QueueRX], wait), "the new call eventfd is signalled")
	rst, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRST, rst.Op)
	require.False(t, waitCall(fresh, 50*time.Millisecond), "the old one is not")
}

// A disabled ring is not kicked and its interrupts wait; enabling it
// delivers both.
func TestDisabledRingHoldsKicksAndInterrupts(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	h.send(reqSetVringEnable, vringState(virtio.QueueTX, 0))
	h.sendPkt(hdr(49162, 6003, virtio.OpRequest, 65536, 0), nil)
	require.False(t, waitCall(h.call[virtio.QueueTX], 200*time.Millisecond), "a disabled TX ring is not processed")
	require.Zero(t, h.reapTX())

	h.send(reqSetVringEnable, vringState(virtio.QueueTX, 1))
	require.True(t, waitCall(h.call[virtio.QueueTX], wait), "enabling kicks it")
	rst, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRST, rst.Op)
	require.Equal(t, 1, h.reapTX())
}
