package device

import (
	"strconv"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// acceptAll takes every pending host connection (FC handle_event HostSock).
func (m *muxer) acceptAll() {
	d := m.d
	for m.listener.Pending() > 0 {
		s, err := m.listener.Accept()
		if err != nil {
			return
		}
		if len(m.conns) >= d.prof.maxConns() {
			d.stats.HostAcceptsDropped++
			d.logf(engine.KindHost, "vsock: connection limit reached; refusing new host connection")
			s.Close()
			continue
		}
		ls := &localStream{s: s}
		s.OnReady = func() {
			ls.ready = true
			d.wake()
		}
		ls.ready = s.Buffered() > 0 || s.PeerClosed()
		m.locals = append(m.locals, ls)
		d.logf(engine.KindHost, "host accept")
	}
}

// handleLocal reads the CONNECT line of a host connection at its first
// readiness and turns it into a LocalInit connection (docs/sources.md#fc-connect-line).
func (m *muxer) handleLocal(ls *localStream) {
	d := m.d
	ls.s.OnReady = nil
	peerPort, line, err := readConnectLine(d.prof.ConnectLine, ls.s)
	if err != nil {
		d.stats.HostLinesRejected++
		d.logf(engine.KindHost, "host line rejected: %q: %v", line, err)
		d.logf(engine.KindFault, "vsock: error adding local-init connection: %v", err)
		ls.s.Close()
		return
	}
	localPort, ok := m.ports.alloc()
	if !ok {
		d.stats.HostLinesRejected++
		d.logf(engine.KindHost, "host line rejected: no free local port")
		ls.s.Close()
		return
	}
	c := &conn{
		d: d, key: connKey{localPort, peerPort}, stream: ls.s,
		state: stateLocalInit, pending: pendRequest,
		txb: txBuf{size: d.bufAlloc},
	}
	if err := m.addConnection(c); err != nil {
		// The port stays marked used (FC allocates before adding; derived).
		d.logf(engine.KindFault, "vsock: error adding local-init connection: %v", err)
		ls.s.Close()
		return
	}
	d.logf(engine.KindHost, "host connect CONNECT %d -> local port %d", peerPort, localPort)
}

// handlePeerRequest is a guest REQUEST for an unknown key: connect to
// "<uds_path>_<port>" (FC handle_peer_request_pkt; docs/sources.md#fc-peer-request).
func (m *muxer) handlePeerRequest(h *virtio.Header) {
	d := m.d
	path := d.cfg.UDSPath + "_" + strconv.FormatUint(uint64(h.DstPort), 10)
	s, err := d.cfg.Host.Connect(path)
	if err != nil {
		d.stats.HostConnectsRefused++
		d.logf(engine.KindHost, "guest connect %s: %v", path, err)
		m.refuse(h)
		return
	}
	c := &conn{
		d: d, key: connKey{h.DstPort, h.SrcPort}, stream: s,
		state: statePeerInit, pending: pendResponse,
		peerBufAlloc: h.BufAlloc, // the REQUEST's fwd_cnt is ignored
		txb:          txBuf{size: d.bufAlloc},
	}
	if err := m.addConnection(c); err != nil {
		d.stats.HostConnectsRefused++
		d.logf(engine.KindFault, "vsock: error adding peer-init connection: %v", err)
		s.Close()
		m.refuse(h)
		return
	}
	m.ports.reserve(h.DstPort)
	d.logf(engine.KindHost, "guest connect %s ok", path)
}

// refuse answers a failed guest connect: RST for Firecracker; nothing for
// vhost-device-vsock, whose enq_rst is a TODO.
func (m *muxer) refuse(h *virtio.Header) {
	if m.d.prof.Checks == ChecksFirecracker {
		m.enqRST(h.DstPort, h.SrcPort)
	}
}

// ack writes "OK <port>\n" when a host-initiated connection is accepted by
// the guest, with one raw write not counted in fwd_cnt (docs/sources.md#fc-ok-ack).
func (m *muxer) ack(c *conn) {
	d := m.d
	port := c.key.local
	if d.prof.Ack == AckPeerPort {
		port = c.key.peer
	}
	msg := "OK " + strconv.FormatUint(uint64(port), 10) + "\n"
	n, err := c.stream.Write([]byte(msg))
	if err == nil && n == len(msg) {
		d.logf(engine.KindHost, "host ack %q on %d<->%d", msg, c.key.local, c.key.peer)
		return
	}
	if d.prof.HaltOnAckWriteError {
		d.halt("vsock worker panicked: write_all of the OK line failed: %v (lp=%d, pp=%d)", errOrShort(err, n), c.key.local, c.key.peer)
		return
	}
	c.kill()
	if err != nil {
		d.logf(engine.KindFault, "vsock: unable to ack host connection: %v", err)
	} else {
		d.logf(engine.KindFault, "vsock: unable to fully write connection ack msg.")
	}
}

func errOrShort(err error, n int) string {
	if err != nil {
		return err.Error()
	}
	return "short write of " + strconv.Itoa(n) + " bytes"
}
