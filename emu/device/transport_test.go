package device

import (
	"io"
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

func withConfig(f func(*Config)) rigOpt {
	return func(r *rig) {
		prev := r.configure
		r.configure = func(c *Config) {
			if prev != nil {
				prev(c)
			}
			f(c)
		}
	}
}

// packetLines are the device's packet-kind log lines.
func packetLines(r *rig) []string {
	var lines []string
	for _, rec := range r.eng.Log.Records() {
		if rec.Kind == engine.KindPacket {
			lines = append(lines, rec.Text)
		}
	}
	return lines
}

func TestLogRXBuffersCountsPostedBuffersWhenTheDeviceLooks(t *testing.T) {
	// Nothing is logged while the device has nothing to write: it looks at
	// the ring only to fill a buffer. Then every buffer made available
	// since the last look is counted, by shape, without being taken.
	r := newRig(t, "firecracker-1.14", 3, withVhostUserTransport(), withConfig(func(c *Config) { c.LogRXBuffers = true }),
		withRXShape(3776))
	require.Empty(t, packetLines(r))
	s := r.guestConnect(r.listen(5000), 5000, 1234)
	require.Equal(t, "rx buffers posted: 3 x w3776", packetLines(r)[1])
	r.rxShape = []virtio.Buffer{{Len: 44, Write: true}, {Len: 4096, Write: true}}
	r.postRX()
	r.postRX()
	_, err := s.Write([]byte("x"))
	require.NoError(t, err)
	r.run()
	lines := packetLines(r)
	require.Equal(t, "rx buffers posted: 2 x w44 w4096", lines[len(lines)-2])
	require.Contains(t, lines[len(lines)-1], "rx RW 2:5000->3:1234 len=1")
}

func TestBufAllocIsTheDevicesAdvertisedBufferAndCreditUpdateBase(t *testing.T) {
	// Config.BufAlloc replaces CONN_TX_BUF_SIZE: every header carries it,
	// and a CREDIT_UPDATE is due only when fewer than the threshold of its
	// bytes are left for the guest (FC csm/connection.rs
	// need_credit_update_from_peer, with the constant as a setting).
	for _, tc := range []struct {
		bufAlloc, advertised uint32
		update               bool
	}{
		{0, TxBufSize, true},
		{1 << 20, 1 << 20, false},
	} {
		r := newRig(t, "firecracker-1.14", 8, withConfig(func(c *Config) { c.BufAlloc = tc.bufAlloc }))
		l := r.listen(5000)
		r.send(hdr(virtio.OpRequest, 1234, 5000), nil)
		resp := r.expect(virtio.OpResponse, 5000, 1234)
		require.Equal(t, tc.advertised, resp.hdr.BufAlloc)
		s, err := l.Accept()
		require.NoError(t, err)
		r.send(hdr(virtio.OpRW, 1234, 5000), make([]byte, 62*1024))
		_, err = io.ReadFull(s, make([]byte, 62*1024))
		require.NoError(t, err)
		r.run()
		// 62 KiB forwarded: 2 KiB left of 64 KiB, below the 4 KiB
		// threshold; 962 KiB left of 1 MiB.
		if tc.update {
			r.expect(virtio.OpCreditUpdate, 5000, 1234)
		} else {
			r.expectNothing()
		}
	}
	r := newRig(t, "firecracker-1.14", 8)
	_, err := New(r.eng, r.prof, Config{GuestCID: guestCID, UDSPath: "/other", Host: r.ns, Mem: r.mem, Queues: r.cfg.Queues, BufAlloc: 100})
	require.EqualError(t, err, "device: buf_alloc 100 outside [4096, 1073741824]")
}

func TestHostConnectOnTheKeyOfAGuestConnectionReplacesIt(t *testing.T) {
	// FC@v1.14.0 unix/muxer.rs: a guest-initiated connection's host port
	// is not in local_port_set, so a host CONNECT may be given it; the
	// new connection's key is the old one's, and conn_map.insert drops the
	// old connection (its stream closes, no RST). The guest then gets a
	// REQUEST from a (cid, port) its own socket is connected to.
	r := newRig(t, "firecracker-1.14", 8)
	const firstPort = 1 << 30
	old := r.guestConnect(r.listen(firstPort), firstPort, 7000)
	hc := r.hostDial("CONNECT 7000\n")
	req := r.recvOne()
	require.Equal(t, virtio.OpRequest, req.hdr.Op)
	require.Equal(t, uint32(firstPort), req.hdr.SrcPort)
	require.Equal(t, uint32(7000), req.hdr.DstPort)
	require.True(t, old.PeerClosed(), "the replaced connection's host stream is closed")
	require.Len(t, r.conns(), 1)
	require.Contains(t, r.log(), "replaced by a new LocalInit connection")
	require.False(t, hc.PeerClosed(), "the CONNECT waits for the guest's answer")
}
