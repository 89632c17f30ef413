package guest

import "github.com/vsocklab/vsocklab/virtio"

type allocRec struct {
	addr uint64
	n    uint32
}

// txPkt is one packet between the socket layer and the device: an skb.
type txPkt struct {
	hdr     virtio.Header
	sock    *Socket
	bufs    [maxTXBufs]virtio.Buffer
	nbufs   int
	allocs  [maxTXBufs]allocRec
	nallocs int
}

func (k *Kernel) getPkt() *txPkt {
	if n := len(k.pktPool); n > 0 {
		p := k.pktPool[n-1]
		k.pktPool = k.pktPool[:n-1]
		return p
	}
	return &txPkt{}
}

func (k *Kernel) putPkt(p *txPkt) {
	// Released in reverse, so that the per-class free lists (LIFO) hand the
	// next packet of the same shape the same layout: the fragments of a
	// nonlinear skb then stay in ascending order, back to back, and the
	// device's tap can view them without a copy.
	for i := p.nallocs - 1; i >= 0; i-- {
		k.arena.release(p.allocs[i].addr, p.allocs[i].n)
	}
	*p = txPkt{}
	k.pktPool = append(k.pktPool, p)
}

// alloc reserves guest memory for part of a packet.
func (k *Kernel) alloc(p *txPkt, n uint32) (uint64, bool) {
	addr, ok := k.arena.alloc(n)
	if !ok {
		return 0, false
	}
	p.allocs[p.nallocs] = allocRec{addr, n}
	p.nallocs++
	return addr, true
}

func (p *txPkt) add(addr uint64, n uint32) {
	p.bufs[p.nbufs] = virtio.Buffer{Addr: addr, Len: n}
	p.nbufs++
}

// header stamps a packet from s: every packet carries the socket's current
// buf_alloc and fwd_cnt, so every packet is a credit update, and
// last_fwd_cnt follows (virtio_transport_inc_tx_pkt).
func (k *Kernel) header(s *Socket, op virtio.Op, flags, length uint32) virtio.Header {
	s.lastFwdCnt = s.fwdCnt
	return virtio.Header{
		SrcCID: k.cid, DstCID: s.remote.CID,
		SrcPort: s.local.Port, DstPort: s.remote.Port,
		Len: length, Type: virtio.TypeStream, Op: op, Flags: flags,
		BufAlloc: s.bufAlloc, FwdCnt: s.fwdCnt,
	}
}

// sendCtl sends a packet without payload on behalf of s.
func (k *Kernel) sendCtl(s *Socket, op virtio.Op, flags uint32) {
	hdr := k.header(s, op, flags, 0)
	if op == virtio.OpRST {
		k.stats.RSTSent++
	}
	k.transmit(s, &hdr, nil)
}

// sendRW sends one data packet of at most 64 KiB.
func (k *Kernel) sendRW(s *Socket, payload []byte) bool {
	hdr := k.header(s, virtio.OpRW, 0, uint32(len(payload)))
	if !k.transmit(s, &hdr, payload) {
		return false
	}
	k.stats.TXBytes += uint64(len(payload))
	return true
}

// replyRST answers a packet no socket wants (virtio_transport_reset_no_sock):
// addresses swapped, buf_alloc and fwd_cnt zero. An RST is never answered.
func (k *Kernel) replyRST(in *virtio.Header) {
	if in.Op == virtio.OpRST {
		return
	}
	hdr := virtio.Header{
		SrcCID: in.DstCID, DstCID: in.SrcCID, SrcPort: in.DstPort, DstPort: in.SrcPort,
		Type: in.Type, Op: virtio.OpRST,
	}
	k.stats.RSTSent++
	k.transmit(nil, &hdr, nil)
}

// transmit lays the packet out in guest memory the way the profile's kernel
// builds its skb, and queues it for the TX ring.
func (k *Kernel) transmit(s *Socket, hdr *virtio.Header, payload []byte) bool {
	p := k.getPkt()
	p.hdr = *hdr
	p.sock = s
	n := uint32(len(payload))
	var hdrAddr uint64
	var ok bool
	switch {
	case n == 0:
		hdrAddr, ok = k.alloc(p, virtio.HeaderLen)
		p.add(hdrAddr, virtio.HeaderLen)
	case k.p.TX == TXTwoDesc:
		// virtio_vsock_pkt: the header lives in the pkt struct, the payload
		// in its own buffer.
		var data uint64
		if hdrAddr, ok = k.alloc(p, virtio.HeaderLen); ok {
			if data, ok = k.alloc(p, n); ok {
				p.add(hdrAddr, virtio.HeaderLen)
				p.add(data, n)
				ok = k.mem.WriteAt(payload, data) == nil
			}
		}
	case k.p.TX == TXLinear || n <= NonlinearThreshold:
		// A linear skb: the header is pushed right in front of the data,
		// yet the two go out as separate descriptors.
		if hdrAddr, ok = k.alloc(p, virtio.HeaderLen+n); ok {
			p.add(hdrAddr, virtio.HeaderLen)
			p.add(hdrAddr+virtio.HeaderLen, n)
			ok = k.mem.WriteAt(payload, hdrAddr+virtio.HeaderLen) == nil
		}
	default:
		// A nonlinear skb (virtio_vsock_alloc_skb above the threshold): a
		// header-only head, then one descriptor per page fragment
		// (virtio_transport_send_skb). Each fragment sits at the start of
		// its own compound page of the order alloc_skb_with_frags chose.
		var frags fragLayout
		if frags, ok = skbFrags(n, costlyOrder); !ok {
			break
		}
		if hdrAddr, ok = k.alloc(p, virtio.HeaderLen); ok {
			p.add(hdrAddr, virtio.HeaderLen)
			off := uint32(0)
			for i := 0; ok && i < frags.n; i++ {
				chunk := frags.size[i]
				var frag uint64
				if frag, ok = k.alloc(p, pageSize<<frags.order[i]); ok {
					p.add(frag, chunk)
					ok = k.mem.WriteAt(payload[off:off+chunk], frag) == nil
					off += chunk
				}
			}
		}
	}
	if ok {
		ok = hdr.Encode(k.scratch[:virtio.HeaderLen]) == nil && k.mem.WriteAt(k.scratch[:virtio.HeaderLen], hdrAddr) == nil
	}
	if !ok {
		k.stats.ArenaExhausted++
		k.logFault("no guest memory for a %s packet of %d bytes", hdr.Op, n)
		k.putPkt(p)
		return false
	}
	k.stats.TXPackets++
	if len(k.sendQ) == 0 && k.txq.NumFree() >= p.nbufs {
		k.addTX(p)
		k.notify(virtio.QueueTX)
		return true
	}
	k.sendQ = append(k.sendQ, p)
	k.stats.SendQueuePeak = max(k.stats.SendQueuePeak, len(k.sendQ))
	return true
}

func (k *Kernel) addTX(p *txPkt) {
	head, err := k.txq.Add(p.bufs[:p.nbufs])
	if err != nil { // cannot happen: the caller checked NumFree
		k.logFault("tx add: %v", err)
		k.putPkt(p)
		return
	}
	k.txByHead[head] = p
}

// flushSendQueue moves queued packets into the TX ring while it has room;
// a packet that does not fit stays at the head (virtio_transport_send_pkt_work).
func (k *Kernel) flushSendQueue() {
	moved := 0
	for moved < len(k.sendQ) && k.txq.NumFree() >= k.sendQ[moved].nbufs {
		k.addTX(k.sendQ[moved])
		k.sendQ[moved] = nil
		moved++
	}
	if moved > 0 {
		k.sendQ = k.sendQ[moved:]
		if len(k.sendQ) == 0 {
			k.sendQ = nil
		}
		k.notify(virtio.QueueTX)
	}
}

// purgeSendQueue drops packets of s that never reached the ring
// (virtio_transport_cancel_pkt after a connect timeout).
func (k *Kernel) purgeSendQueue(s *Socket) {
	kept := k.sendQ[:0]
	for _, p := range k.sendQ {
		if p.sock == s {
			k.putPkt(p)
			continue
		}
		kept = append(kept, p)
	}
	for i := len(kept); i < len(k.sendQ); i++ {
		k.sendQ[i] = nil
	}
	k.sendQ = kept
}

// reapTX frees packets the device has consumed and refills the ring from
// the send queue.
func (k *Kernel) reapTX() {
	for {
		head, _, ok, err := k.txq.PopUsed()
		if err != nil {
			k.stats.UsedRingErrors++
			k.logFault("tx used ring: %v", err)
			if !ok {
				break
			}
			continue
		}
		if !ok {
			break
		}
		if p := k.txByHead[head]; p != nil {
			k.txByHead[head] = nil
			k.putPkt(p)
		}
	}
	k.flushSendQueue()
}

// TXInFlight returns how many packets the kernel has handed to the ring or
// queued for it and not yet got back.
func (k *Kernel) TXInFlight() int { return k.txq.InFlight() + len(k.sendQ) }

func (k *Kernel) getSkbBuf(n int) []byte {
	if l := len(k.skbBufPool); l > 0 {
		b := k.skbBufPool[l-1]
		if cap(b) >= n {
			k.skbBufPool = k.skbBufPool[:l-1]
			return b[:n]
		}
	}
	return make([]byte, n, max(n, 4096))
}

func (k *Kernel) putSkbBuf(b []byte) {
	if b != nil && cap(b) >= 4096 && len(k.skbBufPool) < 1024 {
		k.skbBufPool = append(k.skbBufPool, b[:0])
	}
}
