package device

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Behind QEMU's vhost-user-vsock the event queue stays in the VMM: the
// device has none, so a snapshot posts no reset and a restore arms no RX
// gate that nothing could clear.
func TestDeviceWithoutEventQueuePostsNoResetAndArmsNoGate(t *testing.T) {
	r := newRig(t, "firecracker-1.16", 8, withVhostUserTransport())
	r.dev.Notify(virtio.QueueEvent)
	r.run()
	require.Contains(t, r.log(), "notify of the event queue ignored: the device has none")

	s := r.snapshot()
	require.False(t, s.ResetPosted)
	require.Contains(t, r.log(), "no transport reset posted: the event queue is the VMM's")
	r.restore(s)
	require.NotContains(t, r.log(), "rx gate armed by resume kick")

	// RX flows after the restore: a host connect reaches the guest.
	l := r.listen(5000)
	r.guestConnect(l, 5000, 1234)
}

func TestQueueInterruptNamesTheQueuesPushed(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 8, withVhostUserTransport())
	l := r.listen(5000)
	r.queueIRQs = nil
	r.send(hdr(virtio.OpRequest, 1234, 5000), nil) // TX chain back, RESPONSE into RX
	require.Equal(t, []int{virtio.QueueRX, virtio.QueueTX}, r.queueIRQs)
	require.Zero(t, r.irqs, "Interrupt is not called when QueueInterrupt is set")
	_, err := l.Accept()
	require.NoError(t, err)
}

func TestLogTXShapesPutsTheChainOnEveryTXLine(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 8, withVhostUserTransport())
	l := r.listen(5000)
	r.guestConnect(l, 5000, 1234)
	r.send(hdr(virtio.OpRW, 1234, 5000), make([]byte, 100), virtio.HeaderLen, 60, 40)
	var lines []string
	for _, rec := range r.eng.Log.Records() {
		if rec.Kind == engine.KindPacket && rec.Text[:3] == "tx " {
			lines = append(lines, rec.Text)
		}
	}
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], "tx REQUEST 3:1234->2:5000")
	require.Contains(t, lines[0], " chain r44")
	require.Contains(t, lines[1], "tx RW 3:1234->2:5000 len=100")
	require.Contains(t, lines[1], " chain r44 r60 r40")
}
