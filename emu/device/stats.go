package device

import (
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// Stats are the device's counters. Where Firecracker has a metric of the
// same meaning (metrics.rs) the counter follows it; the rest are the lab's.
type Stats struct {
	TXPackets, RXPackets uint64    // packets accepted from TX / written into RX buffers
	TXBytes, RXBytes     uint64    // RW payload bytes each way
	TXByOp, RXByOp       [8]uint64 // by virtio.Op; unknown ops count at index 0

	BadTXChains     uint64 // TX chains that failed to parse
	InjectedTXDrops uint64 // RW packets lost to an injected fault (DropTX)
	// DroppedRWBytes is the payload the bad TX chains and the injected
	// drops claimed in their headers: bytes the guest sent and the host
	// never sees.
	DroppedRWBytes uint64
	BadRXChains    uint64 // RX chains that failed to parse
	LeakedChains   uint64 // popped chains never returned to a used ring

	ConnsAdded, ConnsRemoved, ConnsKilled uint64
	RSTsSent                              uint64 // RST packets written into RX buffers
	RSTsDropped                           uint64 // muxer RSTs lost to a full, unsynced RX queue
	DroppedPackets                        uint64 // guest packets dropped by the muxer's screening
	HostConnectsRefused                   uint64 // guest REQUESTs whose host connect (or add) failed
	HostLinesRejected                     uint64 // host connections closed over a bad CONNECT line
	HostAcceptsDropped                    uint64 // host connections refused at the 1023 limit
	KillqResyncs                          uint64

	TxWriteFails, TxFlushFails, RxReadFails, ConnEventFails uint64

	ResetEvents     uint64 // TRANSPORT_RESET events posted
	Resets          uint64 // virtio device resets (Device.Reset)
	ResetEventFails uint64 // snapshots that found no event buffer (ev_queue_event_fails)
	RXGateHeld      uint64 // RX processing passes skipped by the gate
	Interrupts      uint64
	Halts           uint64
	Violations      uint64 // built-in invariant failures
}

// Stats returns the counters.
func (d *Device) Stats() Stats { return d.stats }

// ConnInfo describes one connection, for tests and inspection.
type ConnInfo struct {
	LocalPort, PeerPort uint32
	State               string // "Established", "PeerClosed(true,false)", ...
	Killed              bool   // in FC's Killed state: an RST is owed and the connection awaits removal
	FwdCnt, RxCnt       uint32
	LastFwdCntToPeer    uint32
	PeerBufAlloc        uint32
	PeerFwdCnt          uint32
	TxBuffered          int    // bytes in the TX buffer
	Pending             string // pending RX bits, "Rw|CreditUpdate"
	Expiry              time.Duration
	HasExpiry           bool
	Accepted, Forwarded uint64 // RW payload bytes accepted / that reached the host stream
}

// Conns lists the connections sorted by (LocalPort, PeerPort).
func (d *Device) Conns() []ConnInfo {
	if d.mux == nil {
		return nil
	}
	var out []ConnInfo
	for _, k := range d.mux.sortedKeys() {
		c := d.mux.conns[k]
		out = append(out, ConnInfo{
			LocalPort: k.local, PeerPort: k.peer, State: c.stateName(), Killed: c.state == stateKilled,
			FwdCnt: c.fwdCnt, RxCnt: c.rxCnt, LastFwdCntToPeer: c.lastFwdCntToPeer,
			PeerBufAlloc: c.peerBufAlloc, PeerFwdCnt: c.peerFwdCnt,
			TxBuffered: c.txb.len(), Pending: c.pending.String(),
			Expiry: c.expiry, HasExpiry: c.hasExpiry,
			Accepted: c.accepted, Forwarded: c.forwarded,
		})
	}
	return out
}

// MuxerInfo is the muxer's bookkeeping, for tests.
type MuxerInfo struct {
	RxqLen        int
	RxqSynced     bool
	KillqLen      int
	KillqSynced   bool
	LocalPortLast uint32
	PortsInUse    int
	PendingLines  int // accepted host connections still waiting for their CONNECT line
	RXGate        bool
}

// Muxer returns the muxer's bookkeeping.
func (d *Device) Muxer() MuxerInfo {
	m := d.mux
	return MuxerInfo{
		RxqLen: m.rxq.n, RxqSynced: m.rxq.synced,
		KillqLen: m.killq.n, KillqSynced: m.killq.synced,
		LocalPortLast: m.ports.last, PortsInUse: len(m.ports.used),
		PendingLines: len(m.locals), RXGate: d.gate,
	}
}

func (d *Device) violation(v Violation) {
	v.At = d.eng.Now()
	d.stats.Violations++
	d.violations = append(d.violations, v)
	d.logf(engine.KindInvariant, "invariant: %s", v)
}

// checkChains: every popped chain is pushed, leaked or given back once the
// device is idle.
func (d *Device) checkChains() {
	for _, q := range d.q {
		if n := q.outstanding(); n != 0 {
			d.violation(Violation{Kind: ChainsOutstanding, Queue: q.name, Chains: n})
			q.leaked += n // report once
		}
	}
}

// checkBytes: the bytes forwarded to the host plus those still buffered are
// the RW payload the connection accepted. It fires once per change of the
// difference, so a duplication (pre-v1.14 iovec bug) or a silent loss shows
// up once, where it happens.
func (d *Device) checkBytes(c *conn) {
	if c.state == stateKilled {
		return
	}
	skew := int64(c.forwarded) + int64(c.txb.len()) - int64(c.accepted)
	if skew != c.skew {
		d.violation(Violation{Kind: BytesSkewed, LocalPort: c.key.local, PeerPort: c.key.peer,
			Forwarded: c.forwarded, Buffered: uint64(c.txb.len()), Accepted: c.accepted, Delta: skew - c.skew})
		c.skew = skew
	}
}

// checkCredit: after an RW the guest's buffer holds no more than it
// advertised, unless the guest itself shrank its buffer below what was in
// flight.
func (d *Device) checkCredit(c *conn) {
	if inFlight := c.rxCnt - c.peerFwdCnt; inFlight > c.peerBufAlloc && !c.shrunk {
		d.violation(Violation{Kind: CreditExceeded, LocalPort: c.key.local, PeerPort: c.key.peer,
			InFlight: inFlight, BufAlloc: c.peerBufAlloc})
	}
}
