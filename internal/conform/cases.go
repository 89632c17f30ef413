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
)

// Case is one probe case.
type Case struct {
	Kind Kind
	N    int // bytes (Write, HalfClose)
}

// MaxN is the largest payload of a case: one packet of the largest size a
// guest sends (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
const MaxN = 64 << 10

func (c Case) String() string {
	if c.Kind == NoListener {
		return "n"
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
		default:
			return nil, fmt.Errorf("case %d %q: unknown kind %q (w, h, n)", i, f, f[0])
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
	return cs
}

// HostHold is how long the host keeps a HalfClose connection open after
// reading its bytes.
const HostHold = 300 * time.Millisecond

// Conn is what a case needs of a guest connection.
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
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
	b := make([]byte, c.N)
	pattern.Fill(b, 0)
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("write %d: %w", c.N, err)
	}
	if c.Kind == HalfClose {
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
