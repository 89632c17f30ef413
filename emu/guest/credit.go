package guest

import (
	"fmt"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Credit is a connected socket's credit at one moment, both ways
// (virtio_vsock_sock in Linux include/linux/virtio_vsock.h, v6.12): as a
// sender, the bytes it has sent (tx_cnt) against the receive buffer the
// peer announced (peer_buf_alloc) and the bytes the peer has consumed
// (peer_fwd_cnt); as a receiver, its own buf_alloc and fwd_cnt, which every
// packet it sends carries to the peer.
type Credit struct {
	Local, Remote Addr
	TxCnt         uint32
	PeerBufAlloc  uint32
	PeerFwdCnt    uint32
	BufAlloc      uint32
	FwdCnt        uint32
	// Free is the credit left toward the peer, by the profile's formula
	// (virtio_transport_get_credit's, or the s64 one of later kernels).
	Free uint32
}

// InFlight is what the sender has sent that the peer has not consumed:
// tx_cnt - peer_fwd_cnt, in u32 arithmetic as the kernel computes it.
func (c Credit) InFlight() uint32 { return virtio.InFlight(c.TxCnt, c.PeerFwdCnt) }

// String is the credit record's text in the event log.
func (c Credit) String() string {
	return fmt.Sprintf("credit %s->%s tx_cnt=%d peer_buf_alloc=%d peer_fwd_cnt=%d in_flight=%d free=%d buf_alloc=%d fwd_cnt=%d",
		c.Local, c.Remote, c.TxCnt, c.PeerBufAlloc, c.PeerFwdCnt, c.InFlight(), c.Free, c.BufAlloc, c.FwdCnt)
}

// creditOf is s's credit now.
func (k *Kernel) creditOf(s *Socket) Credit {
	local := s.local
	if local.CID == virtio.CIDAny { // a connect's auto-bind; packets carry the guest's CID
		local.CID = k.cid
	}
	return Credit{Local: local, Remote: s.remote, TxCnt: s.txCnt, PeerBufAlloc: s.peerBufAlloc, PeerFwdCnt: s.peerFwdCnt,
		BufAlloc: s.bufAlloc, FwdCnt: s.fwdCnt, Free: k.free(s)}
}

// creditChanged reports a change of s's credit counters: a credit record
// in the event log and a call of Config.OnCredit. It is called where the
// counters move: a send reserving tx_cnt, a packet from the peer carrying
// new peer_buf_alloc or peer_fwd_cnt, a read moving fwd_cnt, an accept
// or an established connect setting them first.
func (k *Kernel) creditChanged(s *Socket) {
	log := k.eng.Log.Enabled(engine.KindCredit)
	if !log && k.cfg.OnCredit == nil {
		return
	}
	c := k.creditOf(s)
	if log {
		k.eng.Log.Add(k.eng.Now(), engine.KindCredit, "guest", c.String())
	}
	if k.cfg.OnCredit != nil {
		k.cfg.OnCredit(c)
	}
}
