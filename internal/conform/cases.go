// Package conform holds the conformance probes of the guest model: small
// connection scripts run once in a real Linux guest (by kinit, through the
// vhost-user back-end) and once in the lab on the guest model, so that the
// packets the device saw in the two runs can be set side by side.
//
// A probe is a list of cases. Case i runs on its own connection to host
// port Base+i, so that the device's packet log splits by port whatever
// the order in which the cases' packets interleave.
package conform

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/internal/pattern"
)

// Kind is what a case does.
type Kind byte

const (
	// Write: the guest connects, writes N bytes in one write, reads until
	// the host closes, closes. The host reads N bytes and closes. The RW
	// packet's chain shows how the kernel lays N bytes out.
	Write Kind = 'w'
	// HalfClose: the guest connects, writes N bytes, shuts its sending
	// side down (SHUT_WR), reads until the host closes, closes. The host
	// reads N bytes, holds the connection for HostHold (so that the
	// guest's SHUTDOWN comes first however slow the guest), and closes: a
	// Firecracker device does not pass the
	// guest's SHUTDOWN on to the host socket (Firecracker
	// src/vmm/src/devices/virtio/vsock/csm/connection.rs, send_pkt, only
	// records peer_shutdown), so the host never sees EOF.
	HalfClose Kind = 'h'
	// NoListener: the guest connects to a host port nobody listens on;
	// the connect must fail.
	NoListener Kind = 'n'
	// Read: the host writes N bytes in one write as soon as the
	// connection is up; the guest waits ReadDelay (so that all of them
	// are queued), reads them in reads of R bytes, and closes; the host
	// closes when it sees EOF. The RX packets show the RX buffers the
	// driver posts (their payload is at most a buffer less the header);
	// the guest's CREDIT_UPDATEs show when its reads return credit.
	Read Kind = 'r'
	// BufferSize: the guest connects, sets SO_VM_SOCKETS_BUFFER_SIZE to N,
	// writes one byte, reads until the host closes, closes. The host
	// reads the byte and closes. The guest's buf_alloc after the option
	// shows the clamp and whether the change is announced.
	BufferSize Kind = 'b'
	// CreditCap: the guest connects, sets SO_VM_SOCKETS_BUFFER_SIZE to N
	// and a send timeout of CapTimeout, writes CapWrite bytes against the
	// device's 64 KiB buffer, and closes. A kernel that caps its credit at
	// its own buffer (min(peer_buf_alloc, buf_alloc)) sends at most N
	// bytes, then waits for credit the device does not return (it returns
	// credit only in large steps) until the timeout; one that does not
	// cap sends all 64 KiB. The host reads until EOF.
	CreditCap Kind = 'c'
	// HostNoListener: the host connects through the device's hybrid
	// socket ("CONNECT <port>") to a guest port nobody has bound. The
	// guest first opens a control connection to the case's host port, so
	// that the host knows it is ready, and the host reports the CONNECT's
	// outcome on it with one byte. The guest answers the device's REQUEST
	// with RST; the host sees its stream closed without an OK line.
	HostNoListener Kind = 'o'
	// HostBound: as HostNoListener, to a guest port bound but not
	// listening.
	HostBound Kind = 'u'
	// CloseFirst: the guest connects, writes one byte and closes at once;
	// the host reads the byte and then to EOF. The guest's close comes
	// first: SHUTDOWN(RCV|SEND), answered by the device.
	CloseFirst Kind = 'x'
	// Linger: CloseFirst with SO_LINGER on, N seconds: close(2) waits for
	// the peer's answer (or N seconds) before it returns, which changes
	// when it returns, not the packets.
	Linger Kind = 'l'
	// ConnectTimeout: the guest connects to CID 4, which the device drops
	// without a word, and the kernel's 2 s connect timeout fails it with
	// ETIMEDOUT; nothing but the REQUEST goes out.
	ConnectTimeout Kind = 'k'
	// ResetConnected: the guest connects to the host, then the virtio
	// device is unbound and bound again in the guest (the driver's remove
	// and probe): the connected socket is reset (reads ECONNRESET, then
	// ENOTCONN; writes ENOTCONN) and closing it sends nothing; the host
	// sees EOF when the device stops.
	ResetConnected Kind = 'C'
	// ResetListener: the guest listens on the case's port, the device is
	// unbound and bound again, and the host then connects to the listener
	// through the hybrid socket: a listener is not in the connected table,
	// so it survives and accepts.
	ResetListener Kind = 'L'
	// ResetConnecting: the guest connects to CID 4 (no answer comes), the
	// device is unbound and bound again while it waits, and the connect
	// still ends with the 2 s timeout: a connecting socket is not in the
	// connected table either.
	ResetConnecting Kind = 'S'
	// ResetLeak: the guest listens, resets the device (so that the
	// device's next host-side port is its first, 2^30), accepts one host
	// connection and keeps it open, and resets the device again: the
	// accepted socket stays in the connected table in TCP_CLOSE. The
	// device, rebuilt, gives the host's next CONNECT the same port 2^30,
	// so its REQUEST carries the (cid, port) pair of the leaked socket and
	// is answered with RST, although the listener is there.
	ResetLeak Kind = 'R'
	// ResetLive: the guest resets the device (its host-side ports start
	// again at 2^30), then connects from the case's port to host port
	// 2^30 itself. The device does not count that port as used, so the
	// host's CONNECT to the case's port gets local port 2^30: a REQUEST
	// carrying the (cid, port) pair of the guest's live socket, which the
	// guest drops without a word. The device drops its own connection of
	// that key (the host's end of the guest's connection reads EOF); the
	// host's CONNECT gets no answer within LiveWait and is closed.
	ResetLive Kind = 'V'
	// Refill: the guest resets the device first, so that its driver's
	// receive ring is freshly filled, then connects twice, a data and a
	// control connection. The host writes N single bytes, RefillGap apart,
	// on the data connection, then one byte on the control connection;
	// the guest reads the data only after that byte. Each host byte
	// becomes one RX packet in its own receive buffer, and the device's
	// log shows the buffers the driver posts: the fresh ring, and the
	// refill once fewer than half of them are left.
	Refill Kind = 'p'
	// Flood: as Refill without the reset, the guest's data connection
	// with a FloodBuffer-byte buffer (set before connect), and N packets
	// of R bytes: small packets merge into the tail skb or count against
	// the receive queue's limit, and an overrun shows as the guest's RST.
	Flood Kind = 'f'
	// Advertised: the guest, with its default 262,144-byte buffer, writes
	// N bytes with a send timeout of CapTimeout to a host whose device
	// advertises more than that (AdvertisedSuite's device, AdvertisedBuffer)
	// and closes; the host reads to EOF. A kernel that caps its credit at
	// its own buffer sends 262,144 bytes and waits (the device returns
	// credit only when less than its threshold is left of its own buffer),
	// one that does not sends up to the device's.
	Advertised Kind = 'a'
)

// AdvertisedBuffer is the device's buffer (device.Config.BufAlloc) for
// AdvertisedSuite: four times the guest's largest.
const AdvertisedBuffer = 1 << 20

// AdvertisedSuite is the case list run against a device advertising
// AdvertisedBuffer: CreditCap cases with the guest's buffer below it, and
// writes above the guest's default buffer.
func AdvertisedSuite() []Case {
	var cs []Case
	for _, n := range []int{4096, 65536, 262144} {
		cs = append(cs, Case{Kind: CreditCap, N: n})
	}
	for _, n := range []int{262144, 400000} {
		cs = append(cs, Case{Kind: Advertised, N: n})
	}
	return cs
}

// FloodBuffer is the guest's buffer in a Flood case: small, so that the
// queue's skb limit ((qlen + 1) * SKB_TRUESIZE(0) > buf_alloc) is reached
// within a few packets (the 8th, with SKB_TRUESIZE(0) = 576).
const FloodBuffer = 4096

// FloodGap is how long the host waits between the small writes of Refill
// and Flood cases, so that each reaches the device, and becomes a packet,
// on its own.
const FloodGap = 30 * time.Millisecond

// RefillGap is FloodGap for Refill cases, longer: the driver refills after
// the work run that finds fewer than half its buffers left, so the size
// of the refill is how many packets that run took, one when each arrives
// alone.
const RefillGap = 50 * time.Millisecond

// LiveHostPort is the host port a ResetLive guest connects to: the first
// local port a Firecracker device gives a host CONNECT.
const LiveHostPort = 1 << 30

// LiveWait is how long the host of a ResetLive case waits for an answer to
// its CONNECT.
const LiveWait = 500 * time.Millisecond

// ResetDelay is how long a ResetConnecting guest waits after starting its
// connect before it resets the device.
const ResetDelay = 200 * time.Millisecond

// UnreachableCID is the CID a ConnectTimeout guest connects to: not the
// host's, so a Firecracker-style device drops the REQUEST.
const UnreachableCID = 4

// CapWrite is what the guest of a CreditCap case writes, and CapTimeout
// its send timeout (SO_SNDTIMEO).
const (
	CapWrite   = 65536
	CapTimeout = 500 * time.Millisecond
)

// SettleDelay is how long the guest of a HalfClose case waits between
// its write and its SHUT_WR.
const SettleDelay = 100 * time.Millisecond

// ReadDelay is how long the guest of a Read case waits before its first
// read.
const ReadDelay = 300 * time.Millisecond

// Case is one probe case.
type Case struct {
	Kind Kind
	N    int // bytes (Write, HalfClose, Read), buffer size (BufferSize)
	R    int // bytes per read (Read)
}

// MaxN is the largest payload of a case: one packet of the largest size a
// guest sends (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
const MaxN = 64 << 10

// resetNames are the names of the ResetX kinds.
var resetNames = map[Kind]string{ResetConnected: "tc", ResetListener: "tl", ResetConnecting: "ts", ResetLeak: "tr", ResetLive: "tv"}

func (c Case) String() string {
	switch c.Kind {
	case NoListener, HostNoListener, HostBound, CloseFirst, ConnectTimeout:
		return string(c.Kind)
	case ResetConnected, ResetListener, ResetConnecting, ResetLeak, ResetLive:
		return resetNames[c.Kind]
	case Read, Flood:
		return string(c.Kind) + strconv.Itoa(c.N) + "x" + strconv.Itoa(c.R)
	}
	return string(c.Kind) + strconv.Itoa(c.N)
}

// Parse reads a comma-separated case list, as String and Format write it.
func Parse(s string) ([]Case, error) {
	var out []Case
	for i, f := range strings.Split(s, ",") {
		if f == "" {
			return nil, fmt.Errorf("case %d: empty", i)
		}
		c := Case{Kind: Kind(f[0])}
		if c.Kind == 't' {
			c.Kind = 0
			for k, name := range resetNames {
				if f == name {
					c.Kind = k
				}
			}
			if c.Kind == 0 {
				return nil, fmt.Errorf("case %d %q: reset cases are tc, tl, ts, tr and tv", i, f)
			}
			out = append(out, c)
			continue
		}
		switch c.Kind {
		case NoListener, HostNoListener, HostBound, CloseFirst, ConnectTimeout:
			if len(f) != 1 {
				return nil, fmt.Errorf("case %d %q: %c takes no size", i, f, f[0])
			}
		case Linger:
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 0 || n > 10 {
				return nil, fmt.Errorf("case %d %q: linger must be 0 to 10 seconds", i, f)
			}
			c.N = n
		case Advertised:
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 1 || n > AdvertisedBuffer {
				return nil, fmt.Errorf("case %d %q: write must be 1 to %d bytes", i, f, AdvertisedBuffer)
			}
			c.N = n
		case Refill:
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 1 || n > 200 {
				return nil, fmt.Errorf("case %d %q: packets must be 1 to 200", i, f)
			}
			c.N = n
		case Flood:
			a, b, ok := strings.Cut(f[1:], "x")
			n, err1 := strconv.Atoi(a)
			r, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil || n < 1 || n > 200 || r < 1 || r > 3732 || n*r > FloodBuffer {
				return nil, fmt.Errorf("case %d %q: want fNxR, N 1 to 200 packets of R 1 to 3732 bytes, N*R at most %d", i, f, FloodBuffer)
			}
			c.N, c.R = n, r
		case Write, HalfClose:
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 1 || n > MaxN {
				return nil, fmt.Errorf("case %d %q: size must be 1 to %d", i, f, MaxN)
			}
			c.N = n
		case Read:
			a, b, ok := strings.Cut(f[1:], "x")
			n, err1 := strconv.Atoi(a)
			r, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil || n < 1 || n > MaxN || r < 1 || r > MaxN {
				return nil, fmt.Errorf("case %d %q: want rNxR, N and R 1 to %d", i, f, MaxN)
			}
			c.N, c.R = n, r
		case BufferSize, CreditCap:
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 1 || n > 1<<30 {
				return nil, fmt.Errorf("case %d %q: buffer size must be 1 to %d", i, f, 1<<30)
			}
			c.N = n
		default:
			return nil, fmt.Errorf("case %d %q: unknown kind %q (w, h, n, r, b, c, o, u, x, l, k, t, p, f, a)", i, f, f[0])
		}
		out = append(out, c)
	}
	return out, nil
}

// Format writes a case list for Parse.
func Format(cs []Case) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

// BoundarySizes are the payload sizes around every layout boundary of the
// modelled kernels: the 3,732 bytes of a 3,776-byte RX buffer, a page,
// the 32,404-byte linear limit of nonlinear TX, the order-3 fragment, the
// largest packet.
var BoundarySizes = []int{1, 4096, 4097, 32403, 32404, 32405, 32768, 32769, 40000, 50000, 60000, 61440, 65536}

// Seed draws the extra sizes: fixed, so that every run probes the same.
const Seed = 12

// Suite is the standard case list: a Write of every boundary size, then
// n Writes of sizes drawn from Seed in [1, MaxN], a few half-closes and
// connects to a port nobody listens on.
func Suite(n int) []Case {
	var cs []Case
	for _, s := range BoundarySizes {
		cs = append(cs, Case{Kind: Write, N: s})
	}
	r := rand.New(rand.NewPCG(Seed, Seed))
	for range n {
		cs = append(cs, Case{Kind: Write, N: 1 + r.IntN(MaxN)})
	}
	for _, s := range []int{1, 4096, 32405, 65536} {
		cs = append(cs, Case{Kind: HalfClose, N: s})
	}
	cs = append(cs, Case{Kind: NoListener}, Case{Kind: NoListener})
	// Read sizes stop at 32,768: the back-end's proxy copies the host's
	// real Unix socket into the device in io.Copy's 32 KiB reads, so a
	// larger host write reaches the device in pieces whose timing the
	// lab cannot know (the device then ends an RX packet short where a
	// piece ends).
	for _, n := range []int{1, 3732, 3733, 7464, 10000, 20000, 32768} {
		for _, r := range []int{100, 4096, 65536} {
			cs = append(cs, Case{Kind: Read, N: n, R: r})
		}
	}
	for _, n := range []int{1, 128, 4096, 65536, 262144, 262145, 1 << 20} {
		cs = append(cs, Case{Kind: BufferSize, N: n})
	}
	for _, n := range []int{128, 4096, 32768, 65535, 65536, 262144} {
		cs = append(cs, Case{Kind: CreditCap, N: n})
	}
	cs = append(cs, Case{Kind: HostNoListener}, Case{Kind: HostBound})
	cs = append(cs, Case{Kind: CloseFirst}, Case{Kind: Linger, N: 0}, Case{Kind: Linger, N: 1}, Case{Kind: ConnectTimeout})
	cs = append(cs, Case{Kind: ResetConnected}, Case{Kind: ResetListener}, Case{Kind: ResetConnecting}, Case{Kind: ResetLeak}, Case{Kind: ResetLive})
	// 70 single bytes and the two connections' RESPONSEs use 72 buffers
	// (a few fewer when some bytes reach the device together): past the 65
	// that make the driver refill, short of the 130 that would make it
	// refill twice.
	for _, n := range []int{1, 70} {
		cs = append(cs, Case{Kind: Refill, N: n})
	}
	// 30 packets of up to 128 bytes merge into one skb; 12 of 129 bytes
	// are 12 skbs, over what a 4,096-byte buffer admits where skbs are
	// counted ((qlen + 1) * SKB_TRUESIZE(0) > buf_alloc from the 8th).
	cs = append(cs, Case{Kind: Flood, N: 30, R: 1}, Case{Kind: Flood, N: 30, R: 128}, Case{Kind: Flood, N: 12, R: 129})
	return cs
}

// HostHold is how long the host keeps a HalfClose connection open after
// reading its bytes.
const HostHold = 300 * time.Millisecond

// Conn is what a case needs of a guest connection.
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
	// SetBufferSize is setsockopt(SO_VM_SOCKETS_BUFFER_SIZE).
	SetBufferSize(n uint64) error
	// SetWriteTimeout bounds how long a write waits for credit
	// (SO_SNDTIMEO; a deadline in the lab).
	SetWriteTimeout(d time.Duration) error
	// SetLinger is setsockopt(SO_LINGER) with l_onoff 1 and l_linger sec.
	SetLinger(sec int) error
}

// Listener is a listening guest socket.
type Listener interface {
	Accept() (Conn, error)
	Close() error
}

// Guest is what a case needs of the guest kernel.
type Guest interface {
	// Dial connects a new socket to (cid, port); a bufSize other than 0
	// is set with SO_VM_SOCKETS_BUFFER_SIZE before the connect.
	Dial(cid, port uint32, bufSize uint64) (Conn, error)
	// DialFrom binds a new socket to local and connects it to (cid, port).
	DialFrom(local, cid, port uint32) (Conn, error)
	// Listen binds port and listens on it.
	Listen(port uint32) (Listener, error)
	// Bind binds port and does nothing more with it.
	Bind(port uint32) (io.Closer, error)
	// ResetDevice unbinds the virtio device from the vsock driver and
	// binds it again: the driver's remove and probe.
	ResetDevice() error
}

// Host is what a case needs of the host.
type Host interface {
	// Accept takes the next connection the guest made to the case's port.
	Accept() (io.ReadWriteCloser, error)
	// DialHybrid connects to the device's hybrid vsock socket, where the
	// host writes "CONNECT <port>\n".
	DialHybrid() (io.ReadWriteCloser, error)
	// Listen listens where the device connects a guest's connection to
	// port (other than the case's own).
	Listen(port uint32) (HostListener, error)
}

// HostListener is a host listener for the guest's connections to a port.
type HostListener interface {
	Accept() (io.ReadWriteCloser, error)
	Close() error
}

// errnoOf is the errno under err, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// errName names an error for a case's result: its errno's name, EOF or
// ok.
func errName(err error) string {
	switch e := errnoOf(err); {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "EOF"
	case e != 0:
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// The host's report of its CONNECT on the control connection.
const (
	connectAccepted   = '1'
	connectRefused    = '0'
	connectUnanswered = '-'
)

// RunGuest runs case c's guest side; port is the case's port, the host's
// for connections the guest makes and the guest's own for the host's
// CONNECT. The bytes are the test stream of package internal/pattern.
func RunGuest(c Case, port uint32, g Guest) error {
	switch c.Kind {
	case NoListener:
		conn, err := g.Dial(2, port, 0)
		if err == nil {
			conn.Close()
			return errors.New("connect to a port nobody listens on succeeded")
		}
		return nil
	case ConnectTimeout:
		return wantDialErr(g, port, syscall.ETIMEDOUT)
	case HostNoListener:
		return awaitConnect(g, port, connectRefused)
	case HostBound:
		b, err := g.Bind(port)
		if err != nil {
			return fmt.Errorf("bind %d: %w", port, err)
		}
		defer b.Close()
		return awaitConnect(g, port, connectRefused)
	case ResetConnected:
		return resetConnected(g, port)
	case ResetListener:
		return resetListener(g, port)
	case ResetConnecting:
		res := make(chan error, 1)
		go func() { res <- wantDialErr(g, port, syscall.ETIMEDOUT) }()
		time.Sleep(ResetDelay)
		if err := g.ResetDevice(); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
		return <-res
	case ResetLeak:
		return resetLeak(g, port)
	case ResetLive:
		return resetLive(g, port)
	case Refill, Flood:
		return flood(c, port, g)
	}
	bufSize := uint64(0)
	if c.Kind == Flood {
		bufSize = FloodBuffer
	}
	conn, err := g.Dial(2, port, bufSize)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	switch c.Kind {
	case Read:
		time.Sleep(ReadDelay)
		return readN(conn, c.N, c.R)
	case CloseFirst, Linger:
		if c.Kind == Linger {
			if err := conn.SetLinger(c.N); err != nil {
				return fmt.Errorf("SO_LINGER %d: %w", c.N, err)
			}
		}
		b := make([]byte, 1)
		pattern.Fill(b, 0)
		if _, err := conn.Write(b); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	case Advertised:
		if err := conn.SetWriteTimeout(CapTimeout); err != nil {
			return fmt.Errorf("send timeout: %w", err)
		}
		b := make([]byte, c.N)
		pattern.Fill(b, 0)
		_, _ = conn.Write(b) // ends with the timeout where the credit is capped
		time.Sleep(SettleDelay)
		return nil
	case BufferSize, CreditCap:
		if err := conn.SetBufferSize(uint64(c.N)); err != nil {
			return fmt.Errorf("SO_VM_SOCKETS_BUFFER_SIZE %d: %w", c.N, err)
		}
		c.N = 1
		if c.Kind == CreditCap {
			if err := conn.SetWriteTimeout(CapTimeout); err != nil {
				return fmt.Errorf("send timeout: %w", err)
			}
			b := make([]byte, CapWrite)
			pattern.Fill(b, 0)
			// The write ends with the timeout when the kernel caps its
			// credit; what it sent shows in the packets.
			_, _ = conn.Write(b)
			// Let the device's CREDIT_UPDATE for what the host drained
			// come before the close, in a real guest as in the lab.
			time.Sleep(SettleDelay)
			return nil
		}
	}
	b := make([]byte, c.N)
	pattern.Fill(b, 0)
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("write %d: %w", c.N, err)
	}
	if c.Kind == HalfClose {
		// The device answers a write the host has drained with a
		// CREDIT_UPDATE; wait for it, so that the SHUTDOWN does not race
		// it in a real guest.
		time.Sleep(SettleDelay)
		if err := conn.CloseWrite(); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
		return fmt.Errorf("read to the host's close: %d bytes, %v", n, err)
	}
	return nil
}

// flood: the data connection, then the control connection; the host's
// byte on the latter says the flood is over.
func flood(c Case, port uint32, g Guest) error {
	bufSize := uint64(0)
	if c.Kind == Refill {
		if err := g.ResetDevice(); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	} else {
		bufSize = FloodBuffer
	}
	data, err := g.Dial(2, port, bufSize)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer data.Close() // closed first: the host drains it before the control connection
	ctl, err := g.Dial(2, port, 0)
	if err != nil {
		return fmt.Errorf("control connect: %w", err)
	}
	defer ctl.Close()
	if err := readReport(ctl, connectAccepted); err != nil {
		return err
	}
	n := max(c.N*c.R, c.N)
	b := make([]byte, n)
	got, _ := io.ReadAtLeast(data, b, n)
	// An overrun resets the connection: what arrived before must be the
	// stream's first bytes all the same.
	if i := pattern.Mismatch(b[:got], 0); i >= 0 {
		return fmt.Errorf("byte %d of %d read is wrong", i, got)
	}
	return data.Close()
}

// readN reads n bytes in reads of r and checks them.
func readN(conn io.Reader, n, r int) error {
	b := make([]byte, n)
	for got := 0; got < n; {
		k, err := conn.Read(b[got:min(n, got+r)])
		got += k
		if err != nil {
			return fmt.Errorf("read after %d of %d bytes: %w", got, n, err)
		}
	}
	return pattern.Check(b, 0)
}

// wantDialErr connects to the unreachable CID and wants the connect to
// fail with want.
func wantDialErr(g Guest, port uint32, want syscall.Errno) error {
	conn, err := g.Dial(UnreachableCID, port, 0)
	if err == nil {
		conn.Close()
		return fmt.Errorf("connect to CID %d succeeded", UnreachableCID)
	}
	if errnoOf(err) != want {
		return fmt.Errorf("connect to CID %d: %v, want %s", UnreachableCID, err, unix.ErrnoName(want))
	}
	return nil
}

// awaitConnect opens the control connection to the case's host port, on
// which the host reports its CONNECT to the guest's port, and checks the
// report.
func awaitConnect(g Guest, port uint32, want byte) error {
	ctl, err := g.Dial(2, port, 0)
	if err != nil {
		return fmt.Errorf("control connect: %w", err)
	}
	defer ctl.Close()
	return readReport(ctl, want)
}

func readReport(ctl io.Reader, want byte) error {
	var b [1]byte
	if _, err := io.ReadFull(ctl, b[:]); err != nil {
		return fmt.Errorf("control: read the host's report: %w", err)
	}
	if b[0] != want {
		return fmt.Errorf("host's CONNECT: got %q, want %q", b[0], want)
	}
	return nil
}

// resetConnected: a blocked read wakes with ECONNRESET when the device is
// reset; after it, reads and writes find the socket unconnected.
func resetConnected(g Guest, port uint32) error {
	conn, err := g.Dial(2, port, 0)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	blocked := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := conn.Read(b[:])
		blocked <- err
	}()
	time.Sleep(ResetDelay)
	if err := g.ResetDevice(); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	var b [1]byte
	err1 := <-blocked
	_, err2 := conn.Read(b[:])
	_, err3 := conn.Write(b[:])
	got := fmt.Sprintf("blocked read %s, read %s, write %s", errName(err1), errName(err2), errName(err3))
	if want := "blocked read ECONNRESET, read ENOTCONN, write ENOTCONN"; got != want {
		return fmt.Errorf("after the reset: %s, want %s", got, want)
	}
	return nil
}

// resetListener: the listener survives the reset and accepts the host's
// CONNECT.
func resetListener(g Guest, port uint32) error {
	ln, err := g.Listen(port)
	if err != nil {
		return fmt.Errorf("listen %d: %w", port, err)
	}
	defer ln.Close()
	ctl, c, err := acceptAfterReset(g, ln, port, "reset")
	if err != nil {
		return err
	}
	defer ctl.Close()
	defer c.Close()
	// The host closes its side after the OK line: read to that EOF, so
	// that the close comes after the device's SHUTDOWN in every run.
	if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
		return fmt.Errorf("accepted connection: read to the host's close: %d bytes, %v", n, err)
	}
	return nil
}

// acceptAfterReset resets the device (named what in errors), opens the
// control connection, waits for the host to report its CONNECT to ln's
// port accepted, and accepts that connection. The caller closes both
// connections, in the order its case's packets need.
func acceptAfterReset(g Guest, ln Listener, port uint32, what string) (ctl, c Conn, err error) {
	if err := g.ResetDevice(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	ctl, err = g.Dial(2, port, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control connect: %w", err)
	}
	if err := readReport(ctl, connectAccepted); err != nil {
		ctl.Close()
		return nil, nil, err
	}
	c, err = ln.Accept()
	if err != nil {
		ctl.Close()
		return nil, nil, fmt.Errorf("accept: %w", err)
	}
	return ctl, c, nil
}

// resetLeak: a socket the reset left in TCP_CLOSE, never closed, answers
// the next REQUEST from the same host port with RST.
func resetLeak(g Guest, port uint32) error {
	ln, err := g.Listen(port)
	if err != nil {
		return fmt.Errorf("listen %d: %w", port, err)
	}
	defer ln.Close()
	// The first reset starts the device's ports again.
	ctl, leaked, err := acceptAfterReset(g, ln, port, "first reset")
	if err != nil {
		return err
	}
	defer leaked.Close() // only at the end: until then it leaks
	if err := g.ResetDevice(); err != nil {
		ctl.Close()
		return fmt.Errorf("second reset: %w", err)
	}
	ctl.Close()
	return awaitConnect(g, port, connectRefused)
}

// resetLive: a REQUEST from the (cid, port) pair of a live socket is
// dropped.
func resetLive(g Guest, port uint32) error {
	if err := g.ResetDevice(); err != nil { // the device's ports start again
		return fmt.Errorf("reset: %w", err)
	}
	live, err := g.DialFrom(port, 2, LiveHostPort)
	if err != nil {
		return fmt.Errorf("connect from %d to 2:%d: %w", port, LiveHostPort, err)
	}
	defer live.Close()
	if err := awaitConnect(g, port, connectUnanswered); err != nil {
		return err
	}
	// The device's answer to the host's close of its CONNECT comes
	// before this close, in every run.
	time.Sleep(SettleDelay)
	return nil
}

// RunHost runs case c's host side.
func RunHost(c Case, port uint32, h Host) error {
	switch c.Kind {
	case NoListener, ConnectTimeout, ResetConnecting:
		return nil
	case HostNoListener, HostBound:
		return reportConnect(h, port, false, nil)
	case ResetListener:
		return reportConnect(h, port, true, func(hc io.ReadWriteCloser) error { return hc.Close() })
	case ResetLive:
		return hostResetLive(h, port)
	case ResetLeak:
		var first io.ReadWriteCloser
		if err := reportConnect(h, port, true, func(hc io.ReadWriteCloser) error { first = hc; return nil }); err != nil {
			return err
		}
		// The device's second stop closes the first CONNECT's stream.
		_, _ = io.Copy(io.Discard, first)
		first.Close()
		return reportConnect(h, port, false, nil)
	}
	conn, err := h.Accept()
	if err != nil {
		return fmt.Errorf("host: accept: %w", err)
	}
	defer conn.Close()
	switch c.Kind {
	case Read:
		b := make([]byte, c.N)
		pattern.Fill(b, 0)
		if _, err := conn.Write(b); err != nil {
			return fmt.Errorf("host: write %d: %w", c.N, err)
		}
		return drain(conn)
	case Refill, Flood:
		ctl, err := h.Accept()
		if err != nil {
			return fmt.Errorf("host: accept the control connection: %w", err)
		}
		defer ctl.Close()
		size := max(c.R, 1)
		b := make([]byte, size)
		for i := range c.N {
			pattern.Fill(b, uint64(i*size))
			if _, err := conn.Write(b); err != nil {
				break // the guest reset the connection on an overrun
			}
			if c.Kind == Refill {
				time.Sleep(RefillGap)
			} else {
				time.Sleep(FloodGap)
			}
		}
		if _, err := ctl.Write([]byte{connectAccepted}); err != nil {
			return fmt.Errorf("host: report: %w", err)
		}
		_, _ = io.Copy(io.Discard, conn)
		return drain(ctl)
	case ResetConnected:
		// The device stops at the reset: EOF, nothing read.
		n, err := io.Copy(io.Discard, conn)
		if err != nil || n != 0 {
			return fmt.Errorf("host: read to the reset: %d bytes, %v", n, err)
		}
		return nil
	case CloseFirst, Linger:
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil {
			return fmt.Errorf("host: read 1: %w", err)
		}
		if err := pattern.Check(b, 0); err != nil {
			return err
		}
		return drain(conn)
	case CreditCap, Advertised:
		b, err := io.ReadAll(conn)
		if err != nil {
			return fmt.Errorf("host: read to EOF: %w", err)
		}
		return pattern.Check(b, 0)
	case BufferSize:
		c.N = 1
		fallthrough
	case Write, HalfClose:
		b := make([]byte, c.N)
		if _, err := io.ReadFull(conn, b); err != nil {
			return fmt.Errorf("host: read %d: %w", c.N, err)
		}
		if c.Kind == HalfClose {
			time.Sleep(HostHold)
		}
		return pattern.Check(b, 0)
	}
	return fmt.Errorf("host: case %s has no host side", c)
}

// hostResetLive is ResetLive's host: it takes the guest's connection to
// LiveHostPort, then its control connection, connects to the guest's port
// and wants no answer.
func hostResetLive(h Host, port uint32) error {
	ln, err := h.Listen(LiveHostPort)
	if err != nil {
		return fmt.Errorf("host: listen on %d: %w", LiveHostPort, err)
	}
	defer ln.Close()
	live, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("host: accept on %d: %w", LiveHostPort, err)
	}
	defer live.Close()
	ctl, err := h.Accept()
	if err != nil {
		return fmt.Errorf("host: accept the control connection: %w", err)
	}
	defer ctl.Close()
	hc, err := h.DialHybrid()
	if err != nil {
		return fmt.Errorf("host: dial the hybrid socket: %w", err)
	}
	if _, err := fmt.Fprintf(hc, "CONNECT %d\n", port); err != nil {
		hc.Close()
		return fmt.Errorf("host: write CONNECT %d: %w", port, err)
	}
	// The new connection takes the key of the guest's: the device drops
	// that one.
	if n, err := io.Copy(io.Discard, live); err != nil || n != 0 {
		hc.Close()
		return fmt.Errorf("host: the guest's connection to %d: %d bytes, %v, want EOF", LiveHostPort, n, err)
	}
	dl, ok := hc.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		hc.Close()
		return errors.New("host: the hybrid connection has no read deadline")
	}
	if err := dl.SetReadDeadline(time.Now().Add(LiveWait)); err != nil {
		hc.Close()
		return err
	}
	var b [1]byte
	n, err := hc.Read(b[:])
	hc.Close()
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("host: CONNECT %d: answered (%d bytes, %v), want no answer", port, n, err)
	}
	if _, err := ctl.Write([]byte{connectUnanswered}); err != nil {
		return fmt.Errorf("host: report: %w", err)
	}
	return drain(ctl)
}

// drain reads to EOF and wants nothing.
func drain(conn io.Reader) error {
	if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
		return fmt.Errorf("host: read to the guest's close: %d bytes, %v", n, err)
	}
	return nil
}

// reportConnect accepts the guest's control connection, connects to the
// guest's port through the hybrid socket, wants it accepted or refused,
// hands an accepted stream to keep (nil: close it), reports the outcome on
// the control connection and waits for the guest to close it.
func reportConnect(h Host, port uint32, wantOK bool, keep func(io.ReadWriteCloser) error) error {
	ctl, err := h.Accept()
	if err != nil {
		return fmt.Errorf("host: accept the control connection: %w", err)
	}
	defer ctl.Close()
	hc, err := h.DialHybrid()
	if err != nil {
		return fmt.Errorf("host: dial the hybrid socket: %w", err)
	}
	ok, err := hostConnect(hc, port)
	if err != nil {
		hc.Close()
		return err
	}
	if ok != wantOK {
		hc.Close()
		return fmt.Errorf("host: CONNECT %d: accepted %v, want %v", port, ok, wantOK)
	}
	if ok && keep != nil {
		if err := keep(hc); err != nil {
			return err
		}
	} else {
		hc.Close()
	}
	report := []byte{connectRefused}
	if ok {
		report[0] = connectAccepted
	}
	if _, err := ctl.Write(report); err != nil {
		return fmt.Errorf("host: report: %w", err)
	}
	return drain(ctl)
}

// hostConnect writes the CONNECT line and reads the answer: an "OK <port>"
// line, or the stream closed without one.
func hostConnect(hc io.ReadWriter, port uint32) (bool, error) {
	if _, err := fmt.Fprintf(hc, "CONNECT %d\n", port); err != nil {
		return false, fmt.Errorf("host: write CONNECT %d: %w", port, err)
	}
	var line []byte
	var b [1]byte
	for len(line) < 32 {
		n, err := hc.Read(b[:])
		if n == 1 {
			line = append(line, b[0])
			if b[0] == '\n' {
				break
			}
		}
		if err != nil {
			if len(line) == 0 {
				return false, nil // closed without a word: refused
			}
			return false, fmt.Errorf("host: CONNECT %d: answer %q cut short: %w", port, line, err)
		}
	}
	if !strings.HasPrefix(string(line), "OK ") {
		return false, fmt.Errorf("host: CONNECT %d: answer %q", port, line)
	}
	return true, nil
}

// FreshRing says whether the case resets the device before its first
// packet, so that every receive buffer the device sees posted in it was
// posted in it: elsewhere a refill the earlier cases made due may show
// in one case or the next, as the device only looks when it writes.
func (c Case) FreshRing() bool {
	switch c.Kind {
	case Refill, ResetListener, ResetLeak, ResetLive:
		return true
	}
	return false
}

// TimedWrites says whether the host writes the case's data in pieces some
// time apart (FloodGap, RefillGap): the device may see two together under load, so
// the comparison joins its consecutive RX packets (MergeRX).
func (c Case) TimedWrites() bool { return c.Kind == Refill || c.Kind == Flood }

// Listens says whether the host listens on the case's port.
func (c Case) Listens() bool {
	switch c.Kind {
	case NoListener, ConnectTimeout, ResetConnecting:
		return false
	}
	return true
}
