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
	"strconv"
	"strings"
	"time"

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
)

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

func (c Case) String() string {
	switch c.Kind {
	case NoListener:
		return "n"
	case Read:
		return "r" + strconv.Itoa(c.N) + "x" + strconv.Itoa(c.R)
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
		switch c.Kind {
		case NoListener:
			if len(f) != 1 {
				return nil, fmt.Errorf("case %d %q: n takes no size", i, f)
			}
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
			return nil, fmt.Errorf("case %d %q: unknown kind %q (w, h, n, r, b, c)", i, f, f[0])
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
}

// RunGuest runs case c's guest side on a connection dial opened to the
// case's port (dial's error is the case's result for NoListener). The
// bytes are the test stream of package internal/pattern from offset 0.
func RunGuest(c Case, dial func() (Conn, error)) error {
	conn, err := dial()
	if c.Kind == NoListener {
		if err == nil {
			conn.Close()
			return errors.New("connect to a port nobody listens on succeeded")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	switch c.Kind {
	case Read:
		time.Sleep(ReadDelay)
		b := make([]byte, c.N)
		for got := 0; got < c.N; {
			n, err := conn.Read(b[got:min(c.N, got+c.R)])
			got += n
			if err != nil {
				return fmt.Errorf("read after %d of %d bytes: %w", got, c.N, err)
			}
		}
		return pattern.Check(b, 0)
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

// RunHost runs case c's host side on the connection the device made for
// it.
func RunHost(c Case, conn io.ReadWriteCloser) error {
	defer conn.Close()
	switch c.Kind {
	case Read:
		b := make([]byte, c.N)
		pattern.Fill(b, 0)
		if _, err := conn.Write(b); err != nil {
			return fmt.Errorf("host: write %d: %w", c.N, err)
		}
		if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
			return fmt.Errorf("host: read to the guest's close: %d bytes, %v", n, err)
		}
		return nil
	case CreditCap:
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

// Listens says whether the host listens on the case's port.
func (c Case) Listens() bool { return c.Kind != NoListener }
