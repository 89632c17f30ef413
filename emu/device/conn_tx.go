package device

import (
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Guest -> host: packets the guest sends a connection, and the data path
// into the host stream and the TX buffer.

// sendPkt is a guest packet routed to this connection (FC@v1.14.0
// connection.rs send_pkt; docs/sources.md#fc-send-pkt).
func (c *conn) sendPkt(p *txPacket) {
	d := c.d
	h := &p.hdr
	c.refreshCredit(h)
	switch {
	case h.Op == virtio.OpRW && (c.state == stateEstablished || (c.state == statePeerClosed && !c.sendOff)):
		if p.noBuf {
			d.logf(engine.KindFault, "vsock: dropping empty data packet from guest (lp=%d, pp=%d)", c.key.local, c.key.peer)
			return
		}
		if p.overrun {
			// CH@v50.0 csm/connection.rs: &pkt.buf().unwrap()[..pkt.len()]
			d.halt("vsock worker panicked: range end index %d out of range for slice of length %d (lp=%d, pp=%d)",
				h.Len, p.payloadLen(), c.key.local, c.key.peer)
			return
		}
		if err := c.sendBytes(p); err != nil {
			d.logf(engine.KindFault, "vsock: error writing to local stream (lp=%d, pp=%d): %v", c.key.local, c.key.peer, err)
			c.kill()
			return
		}
		if c.peerNeedsCreditUpdate() {
			c.pending |= pendCreditUpdate
		}
	case c.state == stateLocalInit && h.Op == virtio.OpResponse:
		c.hasExpiry = false
		c.state = stateEstablished
	case c.state == stateEstablished && h.Op == virtio.OpShutdown:
		c.rcvOff = h.Flags&virtio.ShutdownRcv != 0
		c.sendOff = h.Flags&virtio.ShutdownSend != 0
		c.state = statePeerClosed
		if c.rcvOff && c.sendOff {
			if c.txb.empty() {
				c.pending |= pendRst
			} else {
				c.expiry, c.hasExpiry = d.eng.Now()+connShutdownTimeout, true
			}
		}
	case c.state == statePeerClosed && h.Op == virtio.OpShutdown:
		c.rcvOff = c.rcvOff || h.Flags&virtio.ShutdownRcv != 0
		c.sendOff = c.sendOff || h.Flags&virtio.ShutdownSend != 0
		if c.rcvOff && c.sendOff && c.txb.empty() { // no timer on this path
			c.pending |= pendRst
		}
	case h.Op == virtio.OpCreditUpdate &&
		(c.state == stateEstablished || c.state == statePeerInit || (c.state == statePeerClosed && !c.rcvOff)):
		// the credit is already refreshed
	case h.Op == virtio.OpCreditRequest &&
		(c.state == stateEstablished || c.state == statePeerInit || (c.state == statePeerClosed && !c.sendOff)):
		c.pending |= pendCreditUpdate
	default:
		if d.eng.Log.Enabled(engine.KindFault) {
			d.logf(engine.KindFault, "vsock: dropping invalid TX pkt for connection: state=%s, op=%s (lp=%d, pp=%d)",
				c.stateName(), h.Op, c.key.local, c.key.peer)
		}
	}
}

// sendBytes forwards an RW payload (FC@v1.14.0 connection.rs send_bytes;
// docs/sources.md#fc-notify-txbuf): appended to the TX buffer if that already holds data, else
// written iovec by iovec with the rest buffered.
func (c *conn) sendBytes(p *txPacket) error {
	n := p.payloadLen()
	c.accepted += n
	if !c.txb.empty() {
		_, err := c.pushPayload(p, 0)
		return err
	}
	written, err := c.writePayload(p)
	if err != nil {
		if !isWouldBlock(err) {
			c.d.stats.TxWriteFails++
			return err
		}
		written = 0 // absorbed: pre-v1.14 this also forgets what the earlier iovecs moved
	}
	c.fwdCnt += uint32(written)
	if written < n {
		_, err := c.pushPayload(p, written)
		return err
	}
	return nil
}

// writePayload writes the payload to the host stream one iovec at a time,
// stopping at a short write (iovec.rs read_volatile_at). An error on a later
// iovec returns the count so far from v1.14.0 on, and the error before.
func (c *conn) writePayload(p *txPacket) (uint64, error) {
	fixed := c.d.prof.fixedIovecs() || p.oneIovec
	var total uint64
	for _, s := range p.payload {
		b := c.d.guestBytes(s.addr, s.n)
		k, err := c.stream.Write(b)
		c.forwarded += uint64(k) // what really reached the host, whatever fwd_cnt is told
		if err != nil {
			if fixed && total > 0 {
				break
			}
			return total, err
		}
		total += uint64(k)
		if k < len(b) {
			break
		}
	}
	return total, nil
}

// pushPayload appends the payload from byte skip on to the TX buffer, one
// iovec at a time, each all or nothing (csm/txbuf.rs push). A buffer that
// fills on a later iovec swallows the error from v1.14.0 on, losing the rest
// silently; CH v51's owned buffer is one push.
func (c *conn) pushPayload(p *txPacket, skip uint64) (uint64, error) {
	if p.oneIovec {
		if uint64(c.txb.free()) < p.payloadLen()-skip {
			return 0, errTxBufFull
		}
	}
	fixed := c.d.prof.fixedIovecs() || p.oneIovec
	var total uint64
	for _, s := range p.payload {
		if skip >= uint64(s.n) {
			skip -= uint64(s.n)
			continue
		}
		b := c.d.guestBytes(s.addr+skip, s.n-uint32(skip))
		skip = 0
		if err := c.txb.push(b); err != nil {
			if fixed && total > 0 {
				break
			}
			return total, err
		}
		total += uint64(len(b))
	}
	return total, nil
}

// notifyOut is EPOLLOUT: flush the TX buffer (FC@v1.14.0 connection.rs
// notify; docs/sources.md#fc-notify-txbuf).
func (c *conn) notifyOut() {
	d := c.d
	if c.txb.empty() {
		d.stats.ConnEventFails++
		d.logf(engine.KindFault, "vsock: connection received unexpected EPOLLOUT event")
		return
	}
	flushed, err := c.txb.flushTo(c.stream.Write)
	if err != nil {
		d.stats.TxFlushFails++
		d.logf(engine.KindFault, "vsock: error flushing TX buf for (lp=%d, pp=%d): %v", c.key.local, c.key.peer, err)
		if !isWouldBlock(err) {
			c.kill()
		}
		flushed = 0
	}
	c.fwdCnt += uint32(flushed)
	c.forwarded += uint64(flushed)
	if c.state == statePeerClosed && c.rcvOff && c.sendOff && c.txb.empty() {
		c.pending |= pendRst
	} else if c.peerNeedsCreditUpdate() {
		c.pending |= pendCreditUpdate
	}
}
