package device

import (
	"io"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Host -> guest: the packet a connection owes the guest, and the data path
// from the host stream into the RX buffer.

// recvPkt fills h (and the payload room of b) with the packet this
// connection owes the guest, in FC's fixed priority (FC@v1.14.0
// connection.rs recv_pkt; docs/sources.md#fc-recv-pkt). It reports false for NoData.
func (c *conn) recvPkt(b *rxBuffer, h *virtio.Header) bool {
	d := c.d
	*h = virtio.Header{
		SrcCID: virtio.CIDHost, DstCID: d.cfg.GuestCID,
		SrcPort: c.key.local, DstPort: c.key.peer,
		Type: virtio.TypeStream, BufAlloc: c.d.bufAlloc, FwdCnt: c.fwdCnt,
	}
	if c.pending&pendRst != 0 {
		c.pending &^= pendRst
		h.Op = virtio.OpRST
		return true
	}
	if c.pending&pendResponse != 0 {
		c.pending &^= pendResponse
		c.state = stateEstablished
		h.Op = virtio.OpResponse
		return true
	}
	if c.pending&pendRequest != 0 {
		c.pending &^= pendRequest
		c.expiry, c.hasExpiry = d.eng.Now()+connRequestTimeout, true // armed when emitted
		h.Op = virtio.OpRequest
		return true
	}
	if c.pending&pendRw != 0 {
		c.pending &^= pendRw
		if !(c.state == stateEstablished || (c.state == statePeerClosed && !c.rcvOff)) {
			h.Op = virtio.OpRST
			return true
		}
		credit := c.peerAvailCredit()
		if credit == 0 {
			c.lastFwdCntToPeer = c.fwdCnt
			h.Op = virtio.OpCreditRequest
			return true
		}
		n, err := c.readPayload(b, min(b.bufSize, credit))
		switch {
		case err == nil:
			if n == 0 {
				// A zero-length read is EOF, also when the RX buffer had no
				// payload room at all (derived: a 44-byte RX chain reads 0).
				c.state = stateLocalClosed
				c.expiry, c.hasExpiry = d.eng.Now()+connShutdownTimeout, true
				h.Op = virtio.OpShutdown
				h.Flags = virtio.ShutdownRcv | virtio.ShutdownSend
			} else {
				h.Op = virtio.OpRW
				h.Len = n
				if d.prof.RXDrain {
					c.pending |= pendRw
				}
			}
			c.rxCnt += h.Len
			c.lastFwdCntToPeer = c.fwdCnt
			if n > 0 {
				d.checkCredit(c)
			}
			return true
		case isWouldBlock(err):
			if !d.prof.RXDrain {
				d.logf(engine.KindFault, "vsock: unexpected EWOULDBLOCK while reading from backing stream: lp=%d, pp=%d", c.key.local, c.key.peer)
			}
		default:
			d.stats.RxReadFails++
			d.logf(engine.KindFault, "vsock: error reading from backing stream: lp=%d, pp=%d, err=%v", c.key.local, c.key.peer, err)
			h.Op = virtio.OpRST
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		}
	}
	if c.pending&pendCreditUpdate != 0 {
		c.pending &^= pendCreditUpdate
		if c.pending == 0 {
			h.Op = virtio.OpCreditUpdate
			c.lastFwdCntToPeer = c.fwdCnt
			return true
		}
	}
	return false
}

// readPayload reads at most max bytes from the host stream straight into the
// RX payload room, one iovec at a time (iovec.rs write_volatile_at), with
// the same pre-v1.14 error rule as writePayload: there the bytes already
// read into earlier iovecs are lost with the error.
func (c *conn) readPayload(b *rxBuffer, max uint32) (uint32, error) {
	fixed := c.d.prof.fixedIovecs()
	var total uint32
	for _, s := range b.payload {
		if total == max {
			break
		}
		take := min(s.n, max-total)
		dst, direct := c.d.guestBytesForWrite(s.addr, take)
		k, err := c.stream.Read(dst)
		if err == io.EOF {
			k, err = 0, nil
		}
		if err != nil {
			if fixed && total > 0 {
				break
			}
			return total, err
		}
		if !direct && k > 0 {
			_ = c.d.mem.WriteAt(dst[:k], s.addr) // checked at parse time
		}
		total += uint32(k)
		if uint32(k) < take {
			break
		}
	}
	return total, nil
}
