package device

import (
	"strconv"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// next pops the next chain of q. more is false when the queue is empty or
// unusable (the device halts then, as Firecracker panics on an available
// index overrun); v is nil when the popped head itself was out of range and
// has been reported as leaked.
func (d *Device) next(q *vq, name string) (v *chainView, more bool) {
	st, err := q.pop()
	switch st {
	case popNone:
		return nil, false
	case popRing:
		d.halt("vsock: %s queue unusable: %v", name, err)
		return nil, false
	case popBadHead:
		d.leak(q, q.view.head, err.Error())
		return nil, true
	}
	return &q.view, true
}

// processTX pops every available TX chain (FC@v1.16.1 device.rs process_tx;
// docs/sources.md#fc-process-tx).
func (d *Device) processTX() {
	q := d.q[virtio.QueueTX]
	for !d.halted {
		v, more := d.next(q, "TX")
		if !more {
			return
		}
		if v == nil {
			continue
		}
		if e := d.parseTX(v, &d.tx); !e.ok() {
			d.stats.BadTXChains++
			if d.tx.hdr.Op == virtio.OpRW {
				d.stats.DroppedRWBytes += uint64(d.tx.hdr.Len)
			}
			if d.eng.Log.Enabled(engine.KindFault) {
				d.eng.Log.Add(d.eng.Now(), engine.KindFault, comp, "vsock: error reading TX packet: "+e.String())
				// The device's own line says nothing of the layout; the
				// lab adds it, since the layout is usually the story.
				d.eng.Log.Add(d.eng.Now(), engine.KindFault, comp, "  dropped TX chain "+v.shape())
			}
			if d.prof.LeakBadTXChains {
				d.leak(q, v.head, "never added to the used ring")
				continue
			}
			d.pushUsed(q, v.head, 0)
			continue
		}
		if d.injectedDrop(&d.tx.hdr) {
			d.pushUsed(q, v.head, 0)
			continue
		}
		d.acceptTX(&d.tx, v)
		if d.halted { // the worker died holding the chain
			d.leak(q, v.head, "worker halted")
			return
		}
		d.pushUsed(q, v.head, 0)
	}
}

// DropTX injects a fault: the next n RW packets the guest sends with at
// least minLen payload bytes are lost inside the device. Each chain goes
// back to the used ring as a bad chain does (length 0) and nothing reaches
// the host or the connection's fwd_cnt, so the sender never gets that
// credit back: the mechanism of seed 000 without a parsing bug. The fault
// belongs to this device process; a restore starts without it.
func (d *Device) DropTX(n int, minLen uint32) {
	d.dropTX.n, d.dropTX.minLen = n, minLen
	d.logf(engine.KindFault, "fault injected: the next %d TX RW packets of %d bytes or more will be lost", n, minLen)
}

func (d *Device) injectedDrop(h *virtio.Header) bool {
	if d.dropTX.n == 0 || h.Op != virtio.OpRW || h.Len < d.dropTX.minLen {
		return false
	}
	d.dropTX.n--
	d.stats.InjectedTXDrops++
	d.stats.DroppedRWBytes += uint64(h.Len)
	d.logf(engine.KindFault, "fault: lost TX %s", h)
	return true
}

func (d *Device) acceptTX(p *txPacket, v *chainView) {
	h := &p.hdr
	d.stats.TXPackets++
	d.stats.TXByOp[opIndex(h.Op)]++
	if h.Op == virtio.OpRW {
		d.stats.TXBytes += uint64(h.Len)
	}
	if d.eng.Log.Enabled(engine.KindPacket) {
		line := "tx " + h.String()
		if d.cfg.LogTXShapes {
			line += " chain " + v.shape()
		}
		d.eng.Log.Add(d.eng.Now(), engine.KindPacket, comp, line)
	}
	if d.cfg.OnPacket != nil {
		d.cfg.OnPacket(GuestToHost, h, d.payloadView(p.payload, uint64(h.Len)))
	}
	d.mux.sendPkt(p)
}

// processRX fills RX buffers while the muxer has something to say
// (FC@v1.16.1 device.rs process_rx; docs/sources.md#fc-process-rx). A buffer the muxer has no
// packet for goes back to the available ring.
func (d *Device) processRX() {
	if d.cfg.LogRXBuffers {
		d.logRXPosted()
	}
	if d.gate {
		d.stats.RXGateHeld++
		return
	}
	q := d.q[virtio.QueueRX]
	for !d.halted {
		v, more := d.next(q, "RX")
		if !more {
			return
		}
		if v == nil {
			continue
		}
		if e := d.parseRX(v, &d.rx); !e.ok() {
			d.stats.BadRXChains++
			if d.eng.Log.Enabled(engine.KindFault) {
				d.eng.Log.Add(d.eng.Now(), engine.KindFault, comp, "vsock: RX queue error: "+e.String()+d.prof.rxErrorSuffix())
			}
			d.pushUsed(q, v.head, 0)
			continue
		}
		if !d.mux.recvPkt(&d.rx, &d.rxHdr) {
			if d.halted {
				d.leak(q, v.head, "worker halted")
				return
			}
			q.unpop()
			return
		}
		h := &d.rxHdr
		if d.prof.rxCommitChecksLen() && h.Len > virtio.MaxPktBufSize {
			// commit_hdr refuses it; the bytes already read are lost (derived).
			d.logf(engine.KindFault, "vsock: Error writing packet header to guest memory: InvalidPktLen(%d).Discarding the package.", h.Len)
			d.pushUsed(q, v.head, 0)
			continue
		}
		d.writeRXHeader(h)
		d.deliverRX(h)
		d.pushUsed(q, v.head, virtio.HeaderLen+h.Len)
	}
}

func (d *Device) deliverRX(h *virtio.Header) {
	d.stats.RXPackets++
	d.stats.RXByOp[opIndex(h.Op)]++
	switch h.Op {
	case virtio.OpRW:
		d.stats.RXBytes += uint64(h.Len)
	case virtio.OpRST:
		d.stats.RSTsSent++
	}
	if d.eng.Log.Enabled(engine.KindPacket) {
		d.eng.Log.Add(d.eng.Now(), engine.KindPacket, comp, "rx "+h.String())
	}
	if d.cfg.OnPacket != nil {
		d.cfg.OnPacket(HostToGuest, h, d.payloadView(d.rx.payload, uint64(h.Len)))
	}
}

// writeRXHeader commits the header to the RX buffer's header bytes.
func (d *Device) writeRXHeader(h *virtio.Header) {
	if len(d.rx.hdr) == 1 {
		if b, err := d.mem.Slice(d.rx.hdr[0].addr, virtio.HeaderLen); err == nil {
			_ = h.Encode(b)
			return
		}
	}
	_ = h.Encode(d.hdrRaw[:])
	off := 0
	for _, s := range d.rx.hdr {
		_ = d.mem.WriteAt(d.hdrRaw[off:off+int(s.n)], s.addr) // ranges checked at parse time
		off += int(s.n)
	}
}

func (d *Device) pushUsed(q *vq, head uint16, n uint32) {
	if err := q.push(head, n); err != nil {
		d.logf(engine.KindFault, "Failed to add used descriptor %d to the %s queue: %v", head, q.name, err)
		q.leaked++
		d.stats.LeakedChains++
	}
}

func (d *Device) leak(q *vq, head uint16, why string) {
	q.leaked++
	d.stats.LeakedChains++
	if d.eng.Log.Enabled(engine.KindFault) {
		d.logf(engine.KindFault, "%s chain %d leaked: %s", q.name, head, why)
	}
}

// logRXPosted logs the receive buffers made available since the last look
// (Config.LogRXBuffers), by chain shape, without taking them.
func (d *Device) logRXPosted() {
	q := d.q[virtio.QueueRX]
	n, err := q.q.Pending()
	if err != nil {
		return
	}
	last := q.q.State().LastAvail
	if !d.rxSeenSet {
		d.rxSeen, d.rxSeenSet = last, true
	}
	avail := last + uint16(n)
	from := int(d.rxSeen - last)
	d.rxSeen = avail
	if from >= n {
		return // nothing new (or the driver moved its index back)
	}
	shape, count := "", 0
	flush := func() {
		if count > 0 && d.eng.Log.Enabled(engine.KindPacket) {
			d.eng.Log.Add(d.eng.Now(), engine.KindPacket, comp, "rx buffers posted: "+strconv.Itoa(count)+" x "+shape)
		}
	}
	for i := from; i < n; i++ {
		s := "unreadable"
		if c, err := q.q.Peek(i); err == nil {
			s = c.Shape()
		}
		if s != shape {
			flush()
			shape, count = s, 0
		}
		count++
	}
	flush()
}
