package guest

import (
	"fmt"
	"strings"
)

// TXLayout is how a kernel lays one vsock packet out over TX descriptors
// (docs/sources.md#linux-tx-layout).
type TXLayout uint8

const (
	// TXTwoDesc: virtio_vsock_pkt era (<= 6.2): the 44-byte header and, when
	// there is a payload, one data descriptor.
	TXTwoDesc TXLayout = iota
	// TXLinear: the sk_buff rewrite (71dc9ec9ac7d, 6.3; backported to
	// 6.1.63): header and one linear data descriptor, physically adjacent.
	TXLinear
	// TXNonlinear: 6693731487a8 (6.17; 6.12.68 as 69c5bf306115): payloads up
	// to NonlinearThreshold stay linear; larger ones become a header
	// descriptor plus one descriptor per page fragment, laid out by
	// alloc_skb_with_frags from order 3 down (skbFrags): 65,536 = 32,768 +
	// 32,768, 50,000 = 32,768 + 16,384 + 848.
	TXNonlinear
)

func (l TXLayout) String() string {
	return [...]string{"two-desc", "linear", "nonlinear"}[l]
}

// RXLayout is the receive buffer a kernel posts (docs/sources.md#linux-rx-buffers).
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
// which bounds merging of small packets into the tail skb (see
// docs/sources.md#linux-fwd-cnt: 4096 in the pkt era, about 7,828 for 6.3-6.16 skbs from an
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

// CreditFormula is how a kernel computes its free credit toward the peer:
// virtio_transport_has_space, which decides whether a writer may proceed,
// and virtio_transport_get_credit, which reserves what it sends (Linux
// net/vmw_vsock/virtio_transport_common.c).
type CreditFormula uint8

const (
	// CreditU32: has_space computes peer_buf_alloc - (tx_cnt -
	// peer_fwd_cnt) in u32 and stores it in an s64, so the "< 0" clamp never
	// fires and a peer that shrinks its buffer below what is in flight
	// leaves ~4 GiB of credit. Fixed by "vsock/virtio: Fix unsigned integer
	// wrap around in virtio_transport_has_space()" (Nikolay Kuratov, v6.7;
	// stable wave of 20 Dec 2023, e.g. 5.4.265).
	CreditU32 CreditFormula = iota
	// CreditS64: has_space in s64, clamped at zero. get_credit still
	// subtracted in u32 until 3ef3d52a1a98 (CVE-2026-23069, v6.19; 6.12.y
	// as d05bc313788f in 6.12.68), but vsock_connectible_sendmsg calls it
	// only after has_space found room, so in a sequential model the u32
	// subtraction never wraps: the two behave alike here. (A real kernel
	// can race a shrinking CREDIT_UPDATE between the two calls.)
	CreditS64
	// CreditMin: min(peer_buf_alloc, buf_alloc) - in flight, s64, clamped
	// (CVE-2026-23086: 8ee784fdf006 "vsock/virtio: cap TX credit to local
	// buffer size", v6.19, January 2026; 6.12.y as c0e42fb0e054 in 6.12.68).
	CreditMin
)

func (c CreditFormula) String() string { return [...]string{"u32", "s64", "min"}[c] }

// QueueLimit is what a receiver does with a packet that overruns it
// (Linux net/vmw_vsock/virtio_transport_common.c,
// virtio_transport_inc_rx_pkt and virtio_transport_recv_enqueue).
type QueueLimit uint8

const (
	// QueueLimitBytes: only bytes count, buf_used + len > buf_alloc drops
	// the packet silently (ae6fcfbf5f03 and later, before 059b7dbd20a6;
	// rx_bytes instead of buf_used before 45ca7e9f0730, see
	// Profile.LimitCountsUnread).
	QueueLimitBytes QueueLimit = iota
	// QueueLimitDrop: queued skbs count too, in c6087c5aaad6's split check
	// (buf_used + len > buf_alloc or (qlen+1) * SKB_TRUESIZE(0) >
	// buf_alloc), and an overrun drops the packet silently: c6087c5aaad6
	// without a4f0b001782b, a combination no release is known to have
	// shipped (see the linux-split-drop profile).
	QueueLimitDrop
	// QueueLimitReset: the split check, and an overrun resets the
	// connection: RST to the peer, sk_err = ENOBUFS, removed from the
	// connected table (a4f0b001782b).
	QueueLimitReset
	// QueueLimitCombined: 059b7dbd20a6 "vsock/virtio: fix potential
	// unbounded skb queue" alone: (qlen+1) * SKB_TRUESIZE(0) + buf_used +
	// len > buf_alloc drops the packet silently. The skb overhead eats into
	// the buf_alloc the peer was told about, so packets within the peer's
	// credit are dropped, their bytes never reach fwd_cnt, and the peer's
	// credit shrinks for good (the deadlock c6087c5aaad6's message
	// describes).
	QueueLimitCombined
)

func (q QueueLimit) String() string {
	return [...]string{"bytes", "drop", "reset", "combined"}[q]
}

// skbTruesize0 is SKB_TRUESIZE(0) on a typical x86_64 configuration.
const skbTruesize0 = 576

// Profile is a guest kernel's vsock behaviour, as data.
type Profile struct {
	Name string
	// Releases is the exact release, or the range of releases, whose vsock
	// code every field below matches, stable backports included.
	Releases string
	Source   string

	TX     TXLayout
	RX     RXLayout
	Credit CreditFormula
	Limit  QueueLimit
	// LimitCountsUnread: the receive check is rx_bytes + len > buf_alloc,
	// counting only unread bytes, not those of a partly read skb
	// (virtio_transport_inc_rx_pkt before 45ca7e9f0730 "fix rx_bytes
	// accounting", 6.12; not in 6.6.y or 6.1.y; docs/sources.md#linux-rx-limit).
	LimitCountsUnread bool

	// RXHdrLenCheck drops a used RX buffer whose hdr.len exceeds the bytes
	// the device wrote after the header (0dab92484474).
	RXHdrLenCheck bool
	// CreditUpdateOnDrain: after a read, send CREDIT_UPDATE when fwd_cnt
	// moved and either less than 64 KiB would be free or the read emptied
	// the queue (93b808876682, v6.8). Without it: only the 64 KiB test.
	CreditUpdateOnDrain bool
	// CreditUpdateOnSetRcvlowat: setting SO_RCVLOWAT above the queued bytes
	// sends CREDIT_UPDATE when fwd_cnt moved since the last one
	// (0fe1798968115, v6.8; the stable waves of Jan 2024 carried
	// 93b808876682 alone, so not 6.6.y or 5.15.y).
	CreditUpdateOnSetRcvlowat bool
	// PollHonoursRcvlowat: EPOLLIN needs SO_RCVLOWAT queued bytes
	// (ee0b3843a269 and e7a3266c9167, v6.1); before, any byte.
	PollHonoursRcvlowat bool
	// ShutdownRemoves: a peer SHUTDOWN with both flags removes the socket
	// from the connected table (3a5cc90a4d17, v6.7).
	ShutdownRemoves bool
	// DropRequestOnLive: a REQUEST that finds a live connected socket with
	// the same 4-tuple is dropped silently (Linux); false would answer RST
	// as a reset socket does. Reset sockets (TCP_CLOSE) always answer RST.
	// Kept as a knob because Fly's write-up says only "rejected" (docs/sources.md#linux-reset-leak).
	DropRequestOnLive bool
}

var profiles = []Profile{
	{
		Name:     "linux-5.15",
		Releases: "v5.15, and 5.15.y until the vsock fixes of its Dec 2023 and Jan 2024 stable waves (the has_space wrap fix and the credit update on drain; both seen in 5.4.y's waves, 5.4.265 and 5.4.268, and inferred for 5.15.y)",
		Source:   "Linux v5.15 (virtio_vsock_pkt era): header + one data descriptor TX, 44+4096 RX buffers (virtio_transport.c virtio_vsock_rx_fill), has_space in u32, receive check on rx_bytes (virtio_transport_inc_rx_pkt), credit update only below 64 KiB free",
		TX:       TXTwoDesc, RX: RXTwoDesc, Credit: CreditU32, Limit: QueueLimitBytes, LimitCountsUnread: true,
		DropRequestOnLive: true,
	},
	{
		Name:     "linux-6.6",
		Releases: "6.6.14 to 6.6.102: after the credit update on drain (93b808876682, v6.8; stable 25 Jan 2024) and before the 3776-byte RX buffers (03a92f036a04, stable wave of 28 Aug 2025 with 6.1.149)",
		Source:   "Linux 6.6.y: sk_buff rewrite (71dc9ec9ac7d, v6.3) linear TX and 4140-byte RX buffers; 3a5cc90a4d17 shutdown removal (v6.7; in the Nov 2023 stable wave, seen in 6.1.63's review series); 93b808876682 credit update on drain; has_space in s64; 45ca7e9f0730 (rx_bytes accounting) never backported, so the receive check counts unread bytes",
		TX:       TXLinear, RX: RX4140, Credit: CreditS64, Limit: QueueLimitBytes, LimitCountsUnread: true,
		CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat: true,
	},
	{
		Name:     "linux-6.12.67",
		Releases: "6.12.44 to 6.12.67: after the 3776-byte RX buffers and hdr.len check (03a92f036a04, 0dab92484474; stable wave of 28 Aug 2025) and before 6.12.68 (30 Jan 2026)",
		Source:   "Linux 6.12.67: linear TX; 3776-byte RX buffers and the hdr.len check; get_credit still u32 (its fix d05bc313788f came in 6.12.68) but gated by the s64 has_space; no credit cap",
		TX:       TXLinear, RX: RX3776, Credit: CreditS64, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-6.12.68",
		Releases: "6.12.68 (30 Jan 2026) to 6.12.93: before the receive-queue limit series (059b7dbd20a6, a4f0b001782b, c6087c5aaad6) of 6.12.94",
		Source:   "Linux 6.12.68 announcement: nonlinear TX above 32,404 bytes (6693731487a8 backported to include/linux/virtio_vsock.h), get_credit underflow fix (d05bc313788f) and credit cap min(peer buf_alloc, buf_alloc) (c0e42fb0e054 = mainline 8ee784fdf006, CVE-2026-23086)",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-6.17",
		Releases: "v6.17 to 6.17.13, the last 6.17.y (December 2025), all before the January 2026 credit fixes",
		Source:   "Linux v6.17: nonlinear TX (6693731487a8), 3776-byte RX buffers (03a92f036a04), hdr.len check (0dab92484474); no credit cap: 8ee784fdf006 and 3ef3d52a1a98 were merged for v6.19 in January 2026, after 6.17.y had ended",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditS64, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-debian-6.12.117",
		Releases: "Debian 12's linux-image-6.12.117+deb12-cloud-amd64 (6.12.117): everything of 6.12.68 (nonlinear TX, the credit cap); the TX chain shapes, RX buffers and their refills, buf_alloc, the close and linger sequences, host CONNECTs, the driver's remove and probe and the receive queue are checked against a boot of this build by realkernel's TestConformance (docs/conformance.md); the credit cap is confirmed by its CreditCap cases; its Flood case f100x129 (100 unmergeable 129-byte packets into a 16,384-byte buffer, 12,900 bytes, 101 skbs) was queued whole with no RST, so this build has no skb-count receive limit: neither 059b7dbd20a6 nor a4f0b001782b nor c6087c5aaad6, whatever the stable numbering suggests",
		Source:   "Linux 6.12.117 (stable, Debian build): include/linux/virtio_vsock.h virtio_vsock_alloc_skb (nonlinear above 32,404 payload bytes, 6693731487a8 as 69c5bf306115 in 6.12.68), net/vmw_vsock/virtio_transport.c virtio_vsock_rx_fill (3,776-byte buffers, 03a92f036a04; refilled when fewer than half the ring's are posted, virtio_transport_rx_work), virtio_transport_common.c virtio_transport_get_credit (min(peer_buf_alloc, buf_alloc), c0e42fb0e054 in 6.12.68), virtio_transport_inc_rx_pkt (buf_used + len > buf_alloc only, as probed) and virtio_transport_recv_enqueue (payloads up to GOOD_COPY_LEN, 128 bytes, merged into the tail skb)",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitBytes,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-debian-6.1.192",
		Releases: "Debian 12's linux-image-6.1.0-56-cloud-amd64 (6.1.192): 6.1.y after the sk_buff rewrite backport (6.1.63), the credit update on drain (Jan 2024 wave) and the 3,776-byte RX buffers with the hdr.len check (6.1.149, Aug 2025); nonlinear TX (6693731487a8) was never backported to 6.1.y, so every payload is one linear descriptor up to 65,536 bytes; the TX chain shapes, RX buffers and their refills, buf_alloc, the close and linger sequences, host CONNECTs, the driver's remove and probe and the receive queue are checked against a boot of this build by realkernel's TestConformance (docs/conformance.md); it caps its TX credit at its own buffer (the 6.1.y backport of 8ee784fdf006, CVE-2026-23086), as TestConformance's CreditCap cases showed (with a 4,096-byte buffer it sent 4,096 of a 65,536-byte write against a device advertising 65,536); its Flood case f100x129 was queued whole with no RST: no skb-count receive limit",
		Source:   "Linux 6.1.192 (stable): net/vmw_vsock/virtio_transport.c virtio_transport_send_pkt_work (header + linear data), virtio_vsock_rx_fill (3,776-byte buffers, 03a92f036a04 backported); virtio_transport_common.c virtio_transport_has_space and virtio_transport_get_credit on min(peer_buf_alloc, buf_alloc) in s64 (8ee784fdf006 backported); 45ca7e9f0730 (rx_bytes accounting, v6.12) not in 6.1.y, so the receive check counts unread bytes; 0fe1798968115 (credit update on SO_RCVLOWAT) not in 6.1.y",
		TX:       TXLinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitBytes, LimitCountsUnread: true,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat: true,
	},
	{
		Name:     "linux-split-drop",
		Releases: "none known: a what-if between two commits that were merged and backported together",
		Source:   "c6087c5aaad6's split receive check (buf_used + len > buf_alloc, or (qlen+1) * SKB_TRUESIZE(0) > buf_alloc) with the silent drop of the kernels before a4f0b001782b; every stable review cycle that carried c6087c5aaad6 (June 2026: 6.12, 6.18, 7.0) also carried a4f0b001782b",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitDrop,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-7.0-reset",
		Releases: "7.0.13 and later 7.0.y; the same vsock code as 6.12.94+ and 6.18.36+ (the fixed versions of CVE-2026-53132), and mainline from the rc that merged a4f0b001782b + c6087c5aaad6",
		Source:   "Linux 059b7dbd20a6 + a4f0b001782b + c6087c5aaad6: split receive check; an overrun resets the connection with ENOBUFS (libkrun #795)",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitReset,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
	},
	{
		Name:     "linux-7.1-rc3",
		Releases: "mainline v7.1-rc3 (059b7dbd20a6 merged through net in May 2026) up to the rc that merged a4f0b001782b + c6087c5aaad6 together; the May 2026 stable review cycles (6.6, 6.12, 6.18, 7.0) carried 059b7dbd20a6 alone but it was dropped from those queues before release",
		Source:   "Linux 059b7dbd20a6 \"vsock/virtio: fix potential unbounded skb queue\" without c6087c5aaad6: virtio_transport_inc_rx_pkt drops a packet when (qlen+1) * SKB_TRUESIZE(0) + buf_used + len > buf_alloc, silently; the peer is never told, so its credit shrinks by every dropped packet (host->guest credit leak)",
		TX:       TXNonlinear, RX: RX3776, Credit: CreditMin, Limit: QueueLimitCombined,
		RXHdrLenCheck: true, CreditUpdateOnDrain: true, ShutdownRemoves: true, DropRequestOnLive: true,
		PollHonoursRcvlowat:       true,
		CreditUpdateOnSetRcvlowat: true,
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
