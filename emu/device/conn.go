package device

import (
	"errors"
	"strconv"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// Connection timers (FC csm/mod.rs, every version).
const (
	connRequestTimeout  = 2000 * time.Millisecond // CONN_REQUEST_TIMEOUT_MS
	connShutdownTimeout = 2000 * time.Millisecond // CONN_SHUTDOWN_TIMEOUT_MS
)

type connState uint8

const (
	stateLocalInit connState = iota // host-initiated, REQUEST not yet answered
	statePeerInit                   // guest REQUEST accepted, RESPONSE not yet sent
	stateEstablished
	stateLocalClosed // the host stream hit EOF
	statePeerClosed  // the guest sent SHUTDOWN; flags in rcvOff/sendOff
	stateKilled
)

var stateNames = [...]string{"LocalInit", "PeerInit", "Established", "LocalClosed", "PeerClosed", "Killed"}

// pendingRX is the set of packets a connection owes the guest (FC csm/mod.rs
// PendingRx). The order they go out in is fixed by recvPkt, not by the bits.
type pendingRX uint8

const (
	pendRequest pendingRX = 1 << iota
	pendResponse
	pendRst
	pendRw
	pendCreditUpdate
)

var pendNames = [...]string{"Request", "Response", "Rst", "Rw", "CreditUpdate"}

func (p pendingRX) String() string {
	s := ""
	for i, n := range pendNames {
		if p&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}

type connKey struct{ local, peer uint32 }

func (k connKey) less(o connKey) bool {
	return k.local < o.local || (k.local == o.local && k.peer < o.peer)
}

// conn is one vsock connection bridged to one host stream: FC@v1.14.0
// csm/connection.rs VsockConnection (docs/sources.md#fc-connection).
type conn struct {
	d      *Device
	key    connKey
	stream *uds.Conn

	state           connState
	rcvOff, sendOff bool // PeerClosed(no_more_recv, no_more_send), sticky
	txb             txBuf
	// Credit counters, u32 wrapping (docs/sources.md#fc-credit-counters).
	fwdCnt, rxCnt, lastFwdCntToPeer uint32
	peerBufAlloc, peerFwdCnt        uint32
	pending                         pendingRX
	expiry                          time.Duration
	hasExpiry                       bool

	// Lab bookkeeping, not device state.
	accepted  uint64 // RW payload bytes handed to sendBytes
	forwarded uint64 // bytes written to the host stream, counted at each write
	skew      int64  // forwarded + buffered - accepted at the last check
	shrunk    bool   // the guest advertised less buffer than was in flight
	dirty     bool   // queued for a readiness check
	removed   bool
}

func (c *conn) stateName() string {
	if c.state == statePeerClosed {
		return "PeerClosed(" + strconv.FormatBool(c.rcvOff) + "," + strconv.FormatBool(c.sendOff) + ")"
	}
	return stateNames[c.state]
}

func (c *conn) willExpire(now time.Duration) bool { return c.hasExpiry && c.expiry > now }
func (c *conn) hasExpired(now time.Duration) bool { return c.hasExpiry && c.expiry <= now }

// peerAvailCredit is peer_buf_alloc - (rx_cnt - peer_fwd_cnt) in wrapping
// u32, with no clamp (docs/sources.md#fc-credit-counters).
func (c *conn) peerAvailCredit() uint32 { return c.peerBufAlloc - (c.rxCnt - c.peerFwdCnt) }

// peerNeedsCreditUpdate: the free space the peer last heard of is below the
// threshold, i.e. more than 61,440 bytes forwarded since the last report
// with Firecracker's constants (docs/sources.md#fc-credit-update).
func (c *conn) peerNeedsCreditUpdate() bool {
	return c.d.bufAlloc-(c.fwdCnt-c.lastFwdCntToPeer) < c.d.prof.CreditUpdateThreshold
}

// wantsIn is EPOLLIN interest (FC get_polled_evset; docs/sources.md#fc-polled-evset).
func (c *conn) wantsIn() bool {
	switch {
	case c.state == stateKilled || c.state == stateLocalClosed || (c.state == statePeerClosed && c.rcvOff):
		return false
	case c.peerAvailCredit() == 0:
		return false
	case c.d.prof.RXDrain && c.pending&pendRw != 0: // main: no EPOLLIN while a read is owed
		return false
	}
	return true
}

// wantsOut is EPOLLOUT interest: only while the TX buffer holds data.
func (c *conn) wantsOut() bool { return !c.txb.empty() }

func (c *conn) kill() {
	if c.state != stateKilled {
		c.d.stats.ConnsKilled++
	}
	c.state = stateKilled
	c.pending |= pendRst
	if c.d.prof.KillClearsTxBuf {
		c.txb.clear()
	}
}

// refreshCredit takes the credit fields every guest packet carries.
func (c *conn) refreshCredit(h *virtio.Header) {
	c.peerBufAlloc = h.BufAlloc
	c.peerFwdCnt = h.FwdCnt
	c.shrunk = c.rxCnt-c.peerFwdCnt > c.peerBufAlloc
}

// hostReadable is what level-triggered EPOLLIN would report.
func (c *conn) hostReadable() bool { return c.stream.Buffered() > 0 || c.stream.PeerClosed() }

// hostWritable is what EPOLLOUT would report: room, or an error to collect.
func (c *conn) hostWritable() bool { return c.stream.Space() > 0 || c.stream.PeerClosed() }

func isWouldBlock(err error) bool { return errors.Is(err, syscall.EAGAIN) }
