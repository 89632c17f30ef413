package guest

import (
	"fmt"
	"strings"
)

// TXLayout is how a kernel lays one vsock packet out over TX descriptors
// (facts section 4; Linux notes section 9).
type TXLayout uint8

const (
	// TXTwoDesc: virtio_vsock_pkt era (<= 6.2): the 44-byte header and, when
	// there is a payload, one data descriptor.
	TXTwoDesc TXLayout = iota
	// TXLinear: the sk_buff rewrite (71dc9ec9ac7d, 6.3; backported to
	// 6.1.63): header and one linear data descriptor, physically adjacent.
	TXLinear
	// TXNonlinear: 6693731487a8 (6.17; 6.12.68 as 69c5bf306115): payloads up
	// to 32,404 bytes stay linear; larger ones become a header descriptor
	// plus one descriptor per page fragment of up to 32 KiB (order 3 on
	// 4 KiB pages), e.g. 65,536 = 32,768 + 32,768 and 32,769 = 32,768 + 1.
	TXNonlinear
)

// NonlinearThreshold is the largest payload a TXNonlinear kernel still puts
// in a linear skb: SKB_WITH_OVERHEAD(PAGE_SIZE << 3) - 44 on x86_64 with
// 4 KiB pages.
const NonlinearThreshold = 32404

// fragMax is the largest page fragment of a nonlinear skb: PAGE_SIZE <<
// PAGE_ALLOC_COSTLY_ORDER.
const fragMax = 32768

func (l TXLayout) String() string {
	return [...]string{"two-desc", "linear", "nonlinear"}[l]
}

// RXLayout is the receive buffer a kernel posts (facts section 4).
type RXLayout uint8

const (
	// RXTwoDesc: <= 6.2, a 44-byte header descriptor and a 4096-byte data
	// descriptor.
	RXTwoDesc RXLayout = iota
	// RX4140: 6.3 to 6.16, one descriptor of 44 + 4096 bytes.
	RX4140
	// RX3776: 03a92f036a04 (6.17; 6.12.y and 6.1.149 in Aug 2025), one
	// descriptor of SKB_WITH_OVERHEAD(4096) bytes, header included.
	RX3776
)

func (l RXLayout) String() string { return [...]string{"44+4096", "4140", "3776"}[l] }

// Descriptors returns the descriptor lengths of one receive buffer, for
// pairing a kernel with the devices that take its buffers
// (device.Profile.AcceptsRX).
func (l RXLayout) Descriptors() []uint32 { return l.bufs() }

// bufs returns the descriptor lengths of one receive buffer.
func (l RXLayout) bufs() []uint32 {
	switch l {
	case RXTwoDesc:
		return []uint32{44, 4096}
	case RX4140:
		return []uint32{4140}
	default:
		return []uint32{3776}
	}
}

// mergeRoom is how many payload bytes a received skb can hold in total,
// which bounds merging of small packets into the tail skb (Linux notes
// section 1: 4096 in the pkt era, about 7,828 for 6.3-6.16 skbs from an
// 8 KiB kmalloc, 3,732 for 6.17 buffers).
func (l RXLayout) mergeRoom() uint32 {
	switch l {
	case RXTwoDesc:
		return 4096
	case RX4140:
		return 7828
	default:
		return 3732
	}
}

// CreditFormula is how a kernel computes its free credit toward the peer.
type CreditFormula uint8

const (
	// CreditU32: peer_buf_alloc - (tx_cnt - peer_fwd_cnt) in u32; wraps to
	// ~4 GiB when the peer shrinks its buffer (before CVE-2026-23069).
	CreditU32 CreditFormula = iota
	// CreditS64: the same in s64, clamped at zero (CVE-2026-23069 fix).
	CreditS64
	// CreditMin: min(peer_buf_alloc, buf_alloc) - in flight, s64, clamped
	// (CVE-2026-23086 fix c0e42fb0e054, 6.12.68 and 6.1.162).
	CreditMin
)

func (c CreditFormula) String() string { return [...]string{"u32", "s64", "min"}[c] }

// QueueLimit is what a receiver does with a packet that overruns it
// (facts section 2; Linux notes section 1).
type QueueLimit uint8

const (
	// QueueLimitBytes: only bytes count, buf_used + len > buf_alloc drops
	// the packet silently (ae6fcfbf5f03 and later, before 059b7dbd20a6;
	// rx_bytes instead of buf_used before 45ca7e9f0730, see
	// Profile.LimitCountsUnread).
	QueueLimitBytes QueueLimit = iota
	// QueueLimitDrop: queued skbs count too (c6087c5aaad6's split check:
	// buf_used + len > buf_alloc or (qlen+1) * SKB_TRUESIZE(0) > buf_alloc),
	// and an overrun drops the packet silently.
	QueueLimitDrop
	// QueueLimitReset: the same check, and an overrun resets the
	// connection: RST to the peer, sk_err = ENOBUFS, removed from the
	// connected table (a4f0b001782b).
	QueueLimitReset
)

func (q QueueLimit) String() string { return [...]string{"bytes", "drop", "reset"}[q] }

// skbTruesize0 is SKB_TRUESIZE(0) on a typical x86_64 configuration.
const skbTruesize0 = 576

// Profile is a guest kernel's vsock behaviour, as data.
type Profile struct {
	Name   string
	Source string

	TX     TXLayout
	RX     RXLayout
	Credit CreditFormula
	Limit  QueueLimit
	// LimitCountsUnread: the receive check is rx_bytes + len > buf_alloc,
	// counting only unread bytes, not those of a partly read skb
	// (virtio_transport_inc_rx_pkt before 45ca7e9f0730 "fix rx_bytes
	// accounting", 6.12; not in 6.6.y or 6.1.y; Linux notes section 1).
	LimitCountsUnread bool

	// RXHdrLenCheck drops a used RX buffer whose hdr.len exceeds the bytes
	// the device wrote after the header (0dab92484474).
	RXHdrLenCheck bool
	// CreditUpdateOnDrain: after a read, send CREDIT_UPDATE when fwd_cnt
	// moved and either less than 64 KiB would be free or the read emptied
	// the queue (93b808876682, v6.8). Without it: only the 64 KiB test.
	CreditUpdateOnDrain bool
	// ShutdownRemoves: a peer SHUTDOWN with both flags removes the socket
	// from the connected table (3a5cc90a4d17, v6.7).
	ShutdownRemoves bool
	// DropRequestOnLive: a REQUEST that finds a live connected socket with
	// the same 4-tuple is dropped silently (Linux); false would answer RST
	// as a reset socket does. Reset sockets (TCP_CLOSE) always answer RST.
	// Kept as a knob because Fly's write-up says only "rejected".
	DropRequestOnLive bool
}

var profiles = []Profile{
	{
		Name:   "linux-5.15",
		Source: "Linux 5.15 (virtio_vsock_pkt era): header + one data descriptor TX, 44+4096 RX buffers, u32 credit, byte-only receive check; facts section 2 and 4",
		TX:     TXTwoDesc, RX: RXTwoDesc, Credit: CreditU32, Limit: QueueLimitBytes, LimitCountsUnread: true,
		DropRequestOnLive: true,
	},
	{
		Name:   "linux-6.6",
		Source: "Linux 6.6 (sk_buff rewrite 71dc9ec9ac7d, linear TX, 4140-byte RX buffers); 3a5cc90a4d17 shutdown removal; 93b808876682 credit update on drain",
		TX:     TXLinear, RX: RX4140, Credit: CreditS64, Limit: QueueLimitBytes, LimitCountsUnread: true,
		CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
	{
		Name:   "linux-6.12.67",
		Source: "Linux 6.12.67: linear TX; 3776-byte RX buffers and the hdr.len check (03a92f036a04, 0dab92484474 in 6.12.y, Aug 2025); before the nonlinear TX backport",
		TX:     TXLinear, RX: RX3776, Credit: CreditS64, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
	{
		Name:   "linux-6.12.68",
		Source: "Linux 6.12.68: nonlinear TX above 32,404 bytes (6693731487a8 as 69c5bf306115), credit min over both buffers (c0e42fb0e054)",
		TX:     TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
	{
		Name:   "linux-6.17",
		Source: "Linux 6.17: nonlinear TX (6693731487a8), 3776-byte RX buffers (03a92f036a04), hdr.len check (0dab92484474)",
		TX:     TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
	{
		Name:   "linux-6.12.94-drop",
		Source: "Linux 6.12.94-rc1 shortlog: 059b7dbd20a6 + c6087c5aaad6 receive-queue limit counting skbs, overrun dropped (CVE-2026-53132)",
		TX:     TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitDrop,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
	{
		Name:   "linux-7.0-reset",
		Source: "Linux 7.0 with a4f0b001782b + c6087c5aaad6: receive-queue overrun resets the connection with ENOBUFS (libkrun #795)",
		TX:     TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitReset,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
	},
}

// Profiles returns every named kernel profile.
func Profiles() []Profile { return append([]Profile(nil), profiles...) }

// LookupProfile finds a kernel profile by name.
func LookupProfile(name string) (Profile, error) {
	var names []string
	for _, p := range profiles {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("unknown guest kernel profile %q (known: %s)", name, strings.Join(names, ", "))
}
