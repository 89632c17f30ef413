package device

import (
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// sendPkt routes a guest packet (FC@v1.14.0 muxer.rs send_pkt; docs/sources.md#fc-muxer-checks;
// VD@d7ec5e4 thread_backend.rs send_pkt for ChecksVhostUser).
func (m *muxer) sendPkt(p *txPacket) {
	d := m.d
	h := &p.hdr
	if d.prof.Checks == ChecksVhostUser {
		if h.SrcCID != d.cfg.GuestCID {
			d.stats.DroppedPackets++
			d.logf(engine.KindFault, "vsock: dropping packet with inconsistent src_cid: %d from guest configured with CID: %d", h.SrcCID, d.cfg.GuestCID)
			return
		}
		if h.DstCID != virtio.CIDHost {
			d.stats.DroppedPackets++
			d.logf(engine.KindFault, "vsock: dropping packet for unknown cid: %d", h.DstCID)
			return
		}
		if h.Type != virtio.TypeStream {
			d.stats.DroppedPackets++
			d.logf(engine.KindFault, "vsock: dropping packet of unknown type")
			return
		}
	} else {
		if h.Type != virtio.TypeStream {
			m.enqRST(h.DstPort, h.SrcPort)
			return
		}
		if h.DstCID != virtio.CIDHost {
			d.stats.DroppedPackets++
			d.logf(engine.KindFault, "vsock: dropping guest packet for unknown CID: dst_cid=%d", h.DstCID)
			return
		}
	}
	k := connKey{h.DstPort, h.SrcPort}
	c := m.conns[k]
	if c == nil {
		switch {
		case h.Op == virtio.OpRequest:
			m.handlePeerRequest(h)
		case d.prof.Checks == ChecksFirecracker:
			m.enqRST(h.DstPort, h.SrcPort)
		default:
			d.stats.DroppedPackets++ // "TODO: send back RST"
		}
		return
	}
	if h.Op == virtio.OpRST {
		m.removeConnection(k)
		return
	}
	m.mutate(c, func() { c.sendPkt(p) })
	m.markDirty(c) // the credit or the state may have changed what the stream is polled for
}

// recvPkt fills the next packet for the guest (FC@v1.14.0 muxer.rs recv_pkt;
// docs/sources.md#fc-rxq-killq). It reports false for NoData.
func (m *muxer) recvPkt(b *rxBuffer, h *virtio.Header) bool {
	if m.rxq.n == 0 && !m.rxq.synced {
		m.rxq.rebuild(m)
	}
	for m.rxq.n > 0 {
		e := m.rxq.peek()
		if e.rst {
			// A muxer-made RST removes nothing and frees no port: the
			// RstPkt arm returns before the removal (FC@v1.14.0 and
			// FC@main muxer.rs recv_pkt).
			*h = virtio.Header{
				SrcCID: virtio.CIDHost, DstCID: m.d.cfg.GuestCID,
				SrcPort: e.key.local, DstPort: e.key.peer,
				Type: virtio.TypeStream, Op: virtio.OpRST,
			}
			m.rxq.pop()
			return true
		}
		c := m.conns[e.key]
		ok, pop := false, true
		if c != nil {
			m.mutate(c, func() {
				ok = c.recvPkt(b, h)
				pop = c.pending == 0
			})
			if m.d.halted {
				return false
			}
			m.markDirty(c) // level-triggered epoll re-arms a read while data remains
		}
		if pop {
			m.rxq.pop()
		}
		if ok {
			if h.Op == virtio.OpRST {
				m.removeConnection(e.key)
			}
			return true
		}
	}
	return false
}

// enqRST queues a muxer-made RST (FC enq_rst).
func (m *muxer) enqRST(local, peer uint32) {
	if !m.rxq.push(rxEntry{rst: true, key: connKey{local, peer}}) {
		m.d.stats.RSTsDropped++
		m.d.logf(engine.KindFault, "vsock: muxer.rxq full; dropping RST packet for lp=%d, pp=%d", local, peer)
	}
}
