package guest

import (
	"syscall"

	"github.com/vsocklab/vsocklab/virtio"
)

// recvPkt is virtio_transport_recv_pkt: find the socket, refresh its view
// of the peer's credit, and act by state (Linux notes section 1).
func (k *Kernel) recvPkt(hdr *virtio.Header, payload []byte) {
	if hdr.Type != virtio.TypeStream && hdr.Type != virtio.TypeSeqpacket {
		k.replyRST(hdr)
		k.putSkbBuf(payload)
		return
	}
	s := k.lookup(hdr)
	if s == nil {
		if hdr.Op == virtio.OpRequest {
			k.logConn("REQUEST from %d:%d to port %d: no listener, RST", hdr.SrcCID, hdr.SrcPort, hdr.DstPort)
		}
		k.replyRST(hdr)
		k.putSkbBuf(payload)
		return
	}
	if hdr.Type != virtio.TypeStream { // only stream sockets are modelled
		k.replyRST(hdr)
		k.putSkbBuf(payload)
		return
	}
	if s.done && s.state != StateListen {
		if hdr.Op != virtio.OpRST {
			k.replyRST(hdr)
		}
		k.putSkbBuf(payload)
		return
	}
	if s.state != StateListen {
		s.peerBufAlloc = hdr.BufAlloc
		s.peerFwdCnt = hdr.FwdCnt
		if k.free(s) > 0 {
			k.wake(s)
		}
	}
	if hdr.Op == virtio.OpRST {
		k.stats.RSTReceived++
	}
	switch s.state {
	case StateListen:
		k.recvListen(s, hdr)
	case StateSynSent:
		k.recvConnecting(s, hdr)
	case StateEstablished:
		k.recvConnected(s, hdr, payload)
		return // recvConnected owns payload
	case StateClosing:
		if hdr.Op == virtio.OpRST {
			k.doClose(s, true)
		}
	default:
		// TCP_CLOSE, notably a socket a transport reset left behind: any
		// packet, a new REQUEST from the same host port included, is
		// answered with RST (facts section 3, "THE LEAK").
		if hdr.Op == virtio.OpRequest {
			k.stats.RequestsOnResetSockets++
			k.logConn("REQUEST from %d:%d to port %d hit %s in %s: RST", hdr.SrcCID, hdr.SrcPort, hdr.DstPort, s, s.state)
		}
		k.replyRST(hdr)
	}
	k.putSkbBuf(payload)
}

// lookup applies Linux's rule: the connected table by (remote cid, remote
// port, local port), the local CID not compared; then the bound table by
// port, the CID compared unless either side is CID_ANY.
func (k *Kernel) lookup(hdr *virtio.Header) *Socket {
	if s, ok := k.connected[connKey{remoteCID: uint32(hdr.SrcCID), remotePort: hdr.SrcPort, localPort: hdr.DstPort}]; ok {
		return s
	}
	if s, ok := k.bound[hdr.DstPort]; ok {
		c := s.local.CID
		if c == virtio.CIDAny || uint32(c) == uint32(hdr.DstCID) || uint32(hdr.DstCID) == uint32(virtio.CIDAny) {
			return s
		}
	}
	return nil
}

// recvListen is virtio_transport_recv_listen.
func (k *Kernel) recvListen(l *Socket, hdr *virtio.Header) {
	if hdr.Op != virtio.OpRequest {
		k.replyRST(hdr)
		return
	}
	// sk_acceptq_is_full: strictly more than the backlog.
	if l.ackBacklog > l.backlog {
		k.logConn("%s accept queue full (%d): REQUEST from %d:%d refused", l, l.ackBacklog, hdr.SrcCID, hdr.SrcPort)
		k.replyRST(hdr)
		return
	}
	c := k.Socket()
	c.state = StateEstablished
	c.ssConnected = true
	c.local = Addr{CID: hdr.DstCID, Port: hdr.DstPort}
	c.remote = Addr{CID: hdr.SrcCID, Port: hdr.SrcPort}
	c.bufSize, c.bufMin, c.bufMax = l.bufSize, l.bufMin, l.bufMax
	c.bufAlloc = c.bufSize
	c.transport = true
	c.peerBufAlloc, c.peerFwdCnt = hdr.BufAlloc, hdr.FwdCnt
	k.hashConnected(c)
	l.acceptq = append(l.acceptq, c)
	l.ackBacklog++
	k.logConn("%s accepted %s as %s", l, c.remote, c)
	k.sendCtl(c, virtio.OpResponse, 0)
	k.wake(l)
}

// recvConnecting handles packets for a socket in TCP_SYN_SENT.
func (k *Kernel) recvConnecting(s *Socket, hdr *virtio.Header) {
	switch hdr.Op {
	case virtio.OpResponse:
		k.stopTimer(s.connectTimer)
		s.connectTimer = nil
		s.state = StateEstablished
		s.ssConnected = true
		k.hashConnected(s)
		k.logConn("%s connected %s -> %s", s, s.local, s.remote)
		k.wake(s)
	case virtio.OpInvalid:
	case virtio.OpRST:
		k.stopTimer(s.connectTimer)
		s.connectTimer = nil
		s.state = StateClose
		s.err = syscall.ECONNRESET
		k.logConn("%s connect to %s refused: RST", s, s.remote)
		k.wake(s)
	default:
		k.stopTimer(s.connectTimer)
		s.connectTimer = nil
		k.sendCtl(s, virtio.OpRST, 0)
		s.state = StateClose
		s.err = syscall.EPROTO
		k.wake(s)
	}
}

// recvConnected handles packets for an established socket
// (virtio_transport_recv_connected).
func (k *Kernel) recvConnected(s *Socket, hdr *virtio.Header, payload []byte) {
	switch hdr.Op {
	case virtio.OpRW:
		k.enqueue(s, hdr, payload)
		return
	case virtio.OpCreditRequest:
		k.sendCtl(s, virtio.OpCreditUpdate, 0)
	case virtio.OpCreditUpdate:
		k.wake(s)
	case virtio.OpShutdown:
		if hdr.Flags&virtio.ShutdownRcv != 0 {
			s.peerShut |= ShutRcv
		}
		if hdr.Flags&virtio.ShutdownSend != 0 {
			s.peerShut |= ShutSend
		}
		if s.peerShut == ShutBoth {
			if s.rxBytes == 0 && !s.done {
				k.sendCtl(s, virtio.OpRST, 0)
				k.doClose(s, true)
			}
			if k.p.ShutdownRemoves {
				k.unhashConnected(s)
			}
		}
		if hdr.Flags != 0 {
			k.wake(s)
		}
	case virtio.OpRST:
		k.doClose(s, true)
	case virtio.OpRequest:
		if !k.p.DropRequestOnLive {
			k.replyRST(hdr)
		} else {
			k.logConn("REQUEST from %d:%d to port %d hit live %s: dropped", hdr.SrcCID, hdr.SrcPort, hdr.DstPort, s)
		}
	}
	k.putSkbBuf(payload)
}

// enqueue is virtio_transport_recv_enqueue with the profile's receive
// limit, and the small-packet merge into the tail skb.
func (k *Kernel) enqueue(s *Socket, hdr *virtio.Header, payload []byte) {
	n := uint32(len(payload))
	if n == 0 {
		k.putSkbBuf(payload)
		return
	}
	held := s.bufUsed
	if k.p.LimitCountsUnread {
		held = s.rxBytes
	}
	overhead := uint64(len(s.rxq)+1) * skbTruesize0
	over := uint64(held)+uint64(n) > uint64(s.bufAlloc)
	switch k.p.Limit {
	case QueueLimitDrop, QueueLimitReset:
		over = over || overhead > uint64(s.bufAlloc)
	case QueueLimitCombined:
		over = overhead+uint64(held)+uint64(n) > uint64(s.bufAlloc)
	}
	if over {
		k.putSkbBuf(payload)
		if k.p.Limit == QueueLimitReset {
			k.stats.OverflowResets++
			k.logFault("%s receive queue overrun (%d skbs, %d bytes): RST, ENOBUFS", s, len(s.rxq), s.bufUsed)
			k.sendCtl(s, virtio.OpRST, 0)
			k.doClose(s, true)
			s.err = syscall.ENOBUFS
			k.unhashConnected(s)
			k.wake(s)
			return
		}
		k.stats.RWDropped++
		k.logFault("%s receive queue overrun (%d skbs, %d bytes): RW of %d bytes dropped", s, len(s.rxq), s.bufUsed, n)
		return
	}
	s.rxBytes += n
	s.bufUsed += n
	if n <= 128 && len(s.rxq) > 0 {
		tail := &s.rxq[len(s.rxq)-1]
		if uint32(len(tail.data))+n < k.p.RX.mergeRoom() {
			tail.data = append(tail.data, payload...)
			k.putSkbBuf(payload)
			k.wake(s)
			return
		}
	}
	s.rxq = append(s.rxq, skb{data: payload})
	k.wake(s)
}
