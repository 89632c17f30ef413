package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultLineTimeout is how long a HybridServer waits for a new client's
// first bytes. Firecracker waits forever: it registers an accepted host
// stream for EPOLLIN and reads its CONNECT line only when data arrives
// (FC@v1.14.0 src/vmm/src/devices/virtio/vsock/unix/muxer.rs,
// VsockMuxer::handle_event, EpollListener::LocalStream), and its kill queue
// (muxer_killq.rs) expires only connections already in the connection map,
// after a shutdown (CONN_SHUTDOWN_TIMEOUT_MS). A host stream that never
// writes is held until it closes, and every such stream costs Firecracker a
// descriptor. The server bounds that wait instead, so that idle sockets
// cannot pile up to its descriptor limit; real hosts (hostd, socat) write
// the line right after connecting, far within the bound.
const DefaultLineTimeout = 10 * time.Second

// DefaultMaxPending bounds the clients a HybridServer holds between accept
// and the hand-off to the device: about half of the usual descriptor limit
// of 1,024, leaving the other half to connected clients. Firecracker has no
// such bound (its pending host streams count against nothing, not even
// MAX_CONNECTIONS, which counts the connection map only).
const DefaultMaxPending = 512

// peekSize is how much of a new client's first bytes the server looks at:
// at least Firecracker's 32-byte CONNECT line buffer, and whatever follows
// the line in the same write.
const peekSize = 4096

// HybridServer takes real clients on a Unix socket — the socket a VMM's
// hybrid vsock host side listens on — and joins each to a new connection
// on the device's socket in the world (Host.UDSPath), where the device
// reads the CONNECT line as Firecracker does. Both `vsocklab serve` and the
// vhost-user back-end serve their host side with it.
type HybridServer struct {
	Host *Host
	// LineTimeout closes a client that has sent nothing for this long
	// (0: DefaultLineTimeout).
	LineTimeout time.Duration
	// MaxPending bounds the clients accepted but not yet handed to the
	// device; more wait in the kernel's listen queue (0: DefaultMaxPending).
	MaxPending int
	// WaitDevice, if set, is called before a client is handed to the
	// device and blocks while the device is down (a suspended VM, stopped
	// rings); it returns false to give the client up. A client arriving
	// then waits as in a listen backlog. If the device's socket refuses the
	// connection anyway (it went down in between), the server waits again.
	// Without WaitDevice a refused hand-off closes the client.
	WaitDevice func(ctx context.Context) bool
	// Logf receives the server's own troubles (accept errors); nil: none.
	Logf func(format string, args ...any)
	// OnClient, if set, is told once what became of each client: when the
	// device answers its line, closes it unanswered, or the client never
	// reaches the device. It runs on the client's goroutine.
	OnClient func(HybridClient)

	stats hybridCounters
}

// HybridClient is what became of one real client of a HybridServer.
type HybridClient struct {
	Line  string // its first line as sent, without the newline (at most 64 bytes)
	Reply string // the device's answer ("OK 1073741824"); empty if it closed the connection unanswered
	// Err is why the client never reached the device: no line within the
	// line timeout, a client that broke, the device down for good. Nil
	// once the device had the line.
	Err error
}

// HybridStats counts a HybridServer's clients.
type HybridStats struct {
	Accepted uint64 // taken from the listener
	Answered uint64 // the device answered the line (OK <port>)
	Refused  uint64 // the device closed them unanswered: a bad line, nobody listening on the guest port, the connection limit
	Dropped  uint64 // closed before the device had the line (see HybridClient.Err)
}

type hybridCounters struct{ accepted, answered, refused, dropped atomic.Uint64 }

// Stats returns the counts so far.
func (s *HybridServer) Stats() HybridStats {
	return HybridStats{
		Accepted: s.stats.accepted.Load(), Answered: s.stats.answered.Load(),
		Refused: s.stats.refused.Load(), Dropped: s.stats.dropped.Load(),
	}
}

// ErrNoLine is a HybridClient's Err when it sent nothing within the line
// timeout.
var ErrNoLine = errors.New("sent no line within the line timeout")

func (s *HybridServer) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve accepts clients until ctx ends (then it returns nil) or accept
// fails for good (then it returns the error). It never gives up on a
// temporary accept error such as EMFILE: like net/http's Server.Serve (Go
// 1.26 src/net/http/server.go, the tempDelay loop) it sleeps 5 ms, doubling
// up to 1 s, and retries; it logs one line per episode of errors, at its
// first error, not every retry. Serve closes ln when ctx ends.
func (s *HybridServer) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	maxPending := s.MaxPending
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	pending := make(chan struct{}, maxPending)
	var delay time.Duration
	for {
		select {
		case pending <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			<-pending
			if ctx.Err() != nil {
				return nil
			}
			// net/http's own test: Temporary is deprecated for its vague
			// meaning elsewhere, but on accept errors it is what Serve uses
			// (EMFILE, ENFILE, ECONNABORTED, EAGAIN, EINTR).
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Temporary() {
				return err
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
				s.logf("accept: %v; retrying every 5 ms, doubling up to 1 s, until an accept succeeds", err)
			} else {
				delay = min(2*delay, time.Second)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		s.stats.accepted.Add(1)
		go func() {
			emuConn, line, err := s.handOff(ctx, c)
			<-pending
			if errors.Is(err, errTurnedAway) {
				s.stats.refused.Add(1)
				if s.OnClient != nil {
					s.OnClient(HybridClient{Line: line})
				}
				return
			}
			if err != nil {
				s.stats.dropped.Add(1)
				if s.OnClient != nil {
					s.OnClient(HybridClient{Line: line, Err: err})
				}
				return
			}
			w := &answerWatch{Conn: emuConn, report: func(reply string) {
				if reply == "" {
					s.stats.refused.Add(1)
				} else {
					s.stats.answered.Add(1)
				}
				if s.OnClient != nil {
					s.OnClient(HybridClient{Line: line, Reply: reply})
				}
			}}
			Bridge(c, w)
			w.end()
		}()
	}
}

// handOff waits for the client's first bytes (at most the line timeout),
// then connects to the device's socket and passes them on; it returns the
// device's end, or why the client was closed instead. The bytes are only
// peeked until the device has them: if the device turns the connection away
// at once (its connection limit, Firecracker's "connection limit reached;
// refusing new host connection"), the client is closed with its line
// unread, and Linux tells it ECONNRESET, as a Firecracker that accepts and
// drops a host stream whose line is already queued (af_unix.c
// unix_release_sock: a socket closed with unread data resets its peer).
func (s *HybridServer) handOff(ctx context.Context, c net.Conn) (net.Conn, string, error) {
	lineTimeout := s.LineTimeout
	if lineTimeout <= 0 {
		lineTimeout = DefaultLineTimeout
	}
	_ = c.SetReadDeadline(time.Now().Add(lineTimeout))
	first, err := peek(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil { // no line in time, or a broken client: nothing for the device
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = ErrNoLine
		}
		return nil, "", err
	}
	line := firstLine(first)
	emuConn, err := s.dialDevice(ctx, lineTimeout)
	if err != nil {
		c.Close()
		return nil, line, err
	}
	if len(first) > 0 {
		if _, err := emuConn.Write(first); err != nil {
			// The device accepted and closed the connection already:
			// Firecracker's connection limit.
			emuConn.Close()
			c.Close()
			return nil, line, errTurnedAway
		}
		// The peeked bytes are the device's now: take them off the client.
		if _, err := io.ReadFull(c, first); err != nil {
			emuConn.Close()
			c.Close()
			return nil, line, err
		}
	}
	return emuConn, line, nil
}

// errTurnedAway is a hand-off the device closed before it could take the
// line: for the client, the same as a line the device closed unanswered.
var errTurnedAway = errors.New("closed by the device")

// firstLine is the first line of p for reports: at most 64 bytes, without
// its newline.
func firstLine(p []byte) string {
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		p = p[:i]
	}
	if len(p) > 64 {
		p = p[:64]
	}
	return string(p)
}

// dialDevice connects to the device's socket. Its listen queue holds 129
// connections (std's UnixListener backlog of 128, plus one as Linux
// admits); a burst fills it faster than the device's next pass empties it,
// and a non-blocking connect to a full queue fails with EAGAIN, which here
// means "wait", not "refused": a blocking connect would sleep until the
// device accepts (af_unix.c unix_stream_connect, unix_wait_for_peer). With
// WaitDevice, ECONNREFUSED means the device is down: wait for it.
func (s *HybridServer) dialDevice(ctx context.Context, lineTimeout time.Duration) (net.Conn, error) {
	for {
		if s.WaitDevice != nil && !s.WaitDevice(ctx) {
			return nil, errors.New("the device is gone")
		}
		deadline := time.Now().Add(lineTimeout)
		for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
			c, err := s.Host.Dial(s.Host.UDSPath())
			if errors.Is(err, syscall.ECONNREFUSED) && s.WaitDevice != nil {
				break // down again in between: wait for it
			}
			if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
				return c, err
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
	}
}

// peek waits for the client's first bytes and returns them without taking
// them off the socket; an empty result means the client shut down its
// writing side without a word.
func peek(c net.Conn) ([]byte, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, peekSize)
	var n int
	var perr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(perr, syscall.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, os.NewSyscallError("recvfrom", perr)
	}
	return buf[:max(n, 0)], nil
}

// answerWatch passes the device's end through unchanged and reports the
// device's first line (the hybrid protocol's "OK <port>") once, or "" if
// the stream ends before a whole line.
type answerWatch struct {
	net.Conn
	once   sync.Once
	line   []byte
	done   bool
	report func(reply string)
}

// maxAnswer bounds the answer watched for: "OK 4294967295" is 13 bytes.
const maxAnswer = 32

func (a *answerWatch) Read(p []byte) (int, error) {
	n, err := a.Conn.Read(p)
	if !a.done && n == 0 && err != nil {
		// The device closed the connection unanswered: report it now,
		// not when the client gets round to closing its side.
		a.finish("")
	}
	if !a.done {
		if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
			a.line = append(a.line, p[:i]...)
			a.finish(string(a.line))
		} else {
			a.line = append(a.line, p[:n]...)
			if len(a.line) > maxAnswer {
				a.finish(string(a.line[:maxAnswer]))
			}
		}
	}
	return n, err
}

// WriteTo hides the embedded conn's io.WriterTo, if any, so that copies
// read through Read.
func (a *answerWatch) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{a})
}

// CloseWrite passes a client's end of stream on as a write-shutdown, as
// Bridge does for the device's end itself.
func (a *answerWatch) CloseWrite() error {
	if hc, ok := a.Conn.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return a.Conn.Close()
}

func (a *answerWatch) finish(reply string) {
	a.done = true
	a.once.Do(func() { a.report(reply) })
}

// end reports an unanswered client once the bridge is over.
func (a *answerWatch) end() { a.once.Do(func() { a.report("") }) }

// DeviceGate tells a HybridServer whether the device is there. The device
// comes and goes — a VM suspended and resumed, a guest's rings stopped and
// started — but the host socket stays bound for the server's whole life,
// like Firecracker's or vhost-device-vsock's listener: a client that
// connects while the device is down waits, as in a listen backlog, and is
// joined to the device when it is up again. Its Wait is a
// HybridServer.WaitDevice. A new gate is down.
type DeviceGate struct {
	mu    sync.Mutex
	up    chan struct{} // closed while the device runs
	done  chan struct{} // closed by Close
	close sync.Once
}

// NewDeviceGate returns a gate that is down.
func NewDeviceGate() *DeviceGate {
	return &DeviceGate{up: make(chan struct{}), done: make(chan struct{})}
}

// Up lets waiting and new clients through.
func (g *DeviceGate) Up() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.up:
	default:
		close(g.up)
	}
}

// Down makes new clients wait.
func (g *DeviceGate) Down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.up:
		g.up = make(chan struct{})
	default:
	}
}

// Close releases every waiting client for good: Wait returns false.
func (g *DeviceGate) Close() { g.close.Do(func() { close(g.done) }) }

// Wait blocks while the device is down; it returns false once the gate is
// closed or ctx is done.
func (g *DeviceGate) Wait(ctx context.Context) bool {
	g.mu.Lock()
	up := g.up
	g.mu.Unlock()
	select {
	case <-g.done:
		return false
	default:
	}
	select {
	case <-up:
		return true
	case <-g.done:
		return false
	case <-ctx.Done():
		return false
	}
}

func (e HybridClient) String() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("%q: dropped: %v", e.Line, e.Err)
	case e.Reply == "":
		return fmt.Sprintf("%q: closed by the device without an answer", e.Line)
	}
	return fmt.Sprintf("%q: %s", e.Line, e.Reply)
}
