// Package uds models the host's Unix stream sockets: a namespace of socket
// paths, listeners with a backlog, and connected pairs whose two directions
// are finite byte buffers with explicit readiness.
//
// It is where a Firecracker-style device meets the host: the device listens
// on uds_path for host-initiated connections and connects to
// "<uds_path>_<port>" for guest-initiated ones; host programs do the
// opposite. Every operation is non-blocking (EAGAIN when it would block) and
// calls the endpoints' readiness hooks, so the device model, a test or the
// runtime adapter can drive it without goroutines.
package uds

import (
	"io"
	"syscall"
)

// DefaultBuffer is how many bytes one direction of a connection holds before
// a writer would block: Linux's default socket send buffer
// (net.core.wmem_default = 212992), against which a Unix stream socket
// charges the bytes queued at its peer.
const DefaultBuffer = 212992

// Namespace is the set of bound socket paths of one host.
type Namespace struct {
	listeners map[string]*Listener
	bufSize   int
	outside   func(path string) (*Conn, error)
}

// NewNamespace returns an empty namespace whose connections buffer
// DefaultBuffer bytes per direction.
func NewNamespace() *Namespace {
	return &Namespace{listeners: map[string]*Listener{}, bufSize: DefaultBuffer}
}

// SetBufferSize changes the per-direction buffer of connections made from
// now on.
func (ns *Namespace) SetBufferSize(n int) { ns.bufSize = max(n, 1) }

// BufferSize returns the per-direction buffer of new connections.
func (ns *Namespace) BufferSize() int { return ns.bufSize }

// SetOutside makes Connect hand paths no listener of the namespace is bound
// at to f, which returns the connecting side's end or an error such as
// ECONNREFUSED. It is for a runtime adapter that reaches real sockets beyond
// the model; f must not block.
func (ns *Namespace) SetOutside(f func(path string) (*Conn, error)) { ns.outside = f }

// Listener is a listening Unix stream socket.
type Listener struct {
	ns      *Namespace
	path    string
	backlog int
	queue   []*Conn
	closed  bool
	// OnReady is called when a connection arrives.
	OnReady func()
}

// Listen binds path. It fails with EADDRINUSE when the path is taken.
func (ns *Namespace) Listen(path string, backlog int) (*Listener, error) {
	if _, ok := ns.listeners[path]; ok {
		return nil, syscall.EADDRINUSE
	}
	l := &Listener{ns: ns, path: path, backlog: max(backlog, 1)}
	ns.listeners[path] = l
	return l, nil
}

// Lookup reports whether something listens on path.
func (ns *Namespace) Lookup(path string) bool {
	_, ok := ns.listeners[path]
	return ok
}

// Path returns the bound path.
func (l *Listener) Path() string { return l.path }

// Pending returns the number of connections waiting to be accepted.
func (l *Listener) Pending() int { return len(l.queue) }

// Accept takes the oldest pending connection, or fails with EAGAIN.
func (l *Listener) Accept() (*Conn, error) {
	if l.closed {
		return nil, syscall.EINVAL
	}
	if len(l.queue) == 0 {
		return nil, syscall.EAGAIN
	}
	c := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	return c, nil
}

// Close unbinds the path; connections never accepted are reset.
func (l *Listener) Close() {
	if l.closed {
		return
	}
	l.closed = true
	delete(l.ns.listeners, l.path)
	for _, c := range l.queue {
		c.Abort()
	}
	l.queue = nil
}

// Connect connects to the listener at path and returns the client end. It
// fails with ECONNREFUSED when nobody listens there and with EAGAIN when the
// listener's backlog is full (a non-blocking connect). Full means more
// queued than the backlog, so listen(fd, 1) admits two (af_unix.c
// unix_recvq_full: queue length > sk_max_ack_backlog).
func (ns *Namespace) Connect(path string) (*Conn, error) {
	l, ok := ns.listeners[path]
	if !ok {
		if ns.outside != nil {
			return ns.outside(path)
		}
		return nil, syscall.ECONNREFUSED
	}
	if len(l.queue) > l.backlog {
		return nil, syscall.EAGAIN
	}
	client, server := Pair(ns.bufSize)
	l.queue = append(l.queue, server)
	if l.OnReady != nil {
		l.OnReady()
	}
	return client, nil
}

// Conn is one end of a connected Unix stream socket pair.
type Conn struct {
	peer  *Conn
	in    queue // bytes written by the peer, not yet read here
	limit int   // capacity of in

	wrShut bool // this end will write no more (shutdown(SHUT_WR) or close)
	closed bool
	err    error // pending socket error, reported once by Read or Write

	// OnReady is called whenever this end may have become readable,
	// writable or errored. It must not call back into the socket
	// synchronously in a way that recurses without bound; scheduling work is
	// the intended use.
	OnReady func()
}

// Pair returns two connected ends, each direction holding up to buf bytes.
func Pair(buf int) (*Conn, *Conn) {
	a := &Conn{limit: buf}
	b := &Conn{limit: buf}
	a.peer, b.peer = b, a
	return a, b
}

func (c *Conn) ready() {
	if c != nil && c.OnReady != nil {
		c.OnReady()
	}
}

// Buffered returns how many bytes are waiting to be read at this end.
func (c *Conn) Buffered() int { return c.in.len() }

// Space returns how many bytes a write from this end could queue now.
func (c *Conn) Space() int {
	if c.peer == nil || c.peer.closed {
		return 0
	}
	return max(c.peer.limit-c.peer.in.len(), 0)
}

// Closed reports whether Close was called on this end.
func (c *Conn) Closed() bool { return c.closed }

// PeerClosed reports whether the peer has closed or shut down its write
// side, so that nothing more will arrive once the buffer is drained.
func (c *Conn) PeerClosed() bool { return c.peer == nil || c.peer.wrShut }

// takeErr is what a Read or Write meets first: EBADF on a closed end, then
// a pending socket error, reported once.
func (c *Conn) takeErr() error {
	if c.closed {
		return syscall.EBADF
	}
	err := c.err
	c.err = nil
	return err
}

// Read copies buffered bytes into p. With nothing buffered it returns EOF if
// the peer will write no more, and EAGAIN otherwise. A pending socket error
// (ECONNRESET when the peer closed with unread data) comes first.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.takeErr(); err != nil {
		return 0, err
	}
	if c.in.len() == 0 {
		if c.PeerClosed() {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		return 0, syscall.EAGAIN
	}
	n := c.in.read(p)
	if n > 0 && c.peer != nil {
		c.peer.ready() // the peer may write again
	}
	return n, nil
}

// Write queues as much of p as fits at the peer. It returns EAGAIN when
// nothing fits, EPIPE when this end was shut down for writing or the peer is
// gone.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.takeErr(); err != nil {
		return 0, err
	}
	if c.wrShut || c.peer == nil || c.peer.closed {
		return 0, syscall.EPIPE
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(len(p), c.Space())
	if n == 0 {
		return 0, syscall.EAGAIN
	}
	c.peer.in.write(p[:n])
	c.peer.ready()
	return n, nil
}

// CloseWrite is shutdown(SHUT_WR): the peer reads what is buffered, then EOF.
func (c *Conn) CloseWrite() error {
	if c.closed {
		return syscall.EBADF
	}
	if !c.wrShut {
		c.wrShut = true
		c.peer.ready()
	}
	return nil
}

// Close releases this end. The peer reads what is buffered and then EOF, and
// its writes fail with EPIPE; if this end still had unread bytes, the peer
// gets ECONNRESET instead, as Linux's unix_release_sock does.
func (c *Conn) Close() {
	if c.closed {
		return
	}
	unread := c.in.len() > 0
	c.closed = true
	c.wrShut = true
	c.in.reset()
	if p := c.peer; p != nil && !p.closed {
		if unread {
			p.err = syscall.ECONNRESET
		}
		p.ready()
	}
}

// Abort closes this end so that the peer sees ECONNRESET.
func (c *Conn) Abort() {
	if c.closed {
		return
	}
	if p := c.peer; p != nil && !p.closed {
		p.err = syscall.ECONNRESET
	}
	c.Close()
}

// queue is a byte FIFO whose memory follows what it holds, so that ten
// thousand idle connections cost little.
type queue struct {
	buf []byte
	off int
}

func (q *queue) len() int { return len(q.buf) - q.off }

func (q *queue) write(p []byte) {
	if q.off > 0 && q.off >= len(q.buf)/2 && len(q.buf)+len(p) > cap(q.buf) {
		n := copy(q.buf, q.buf[q.off:])
		q.buf = q.buf[:n]
		q.off = 0
	}
	q.buf = append(q.buf, p...)
}

func (q *queue) read(p []byte) int {
	n := copy(p, q.buf[q.off:])
	q.off += n
	if q.off == len(q.buf) {
		q.buf = q.buf[:0]
		q.off = 0
		if cap(q.buf) > 1<<20 {
			q.buf = nil
		}
	}
	return n
}

func (q *queue) reset() { q.buf, q.off = nil, 0 }

// ReadEnds reports whether Read would return at once with end of stream or
// an error and no data, without waking the peer.
func (c *Conn) ReadEnds() bool {
	return c.closed || c.err != nil || c.in.len() == 0 && c.PeerClosed()
}

// WriteFails reports whether Write would fail at once, touching nothing.
func (c *Conn) WriteFails() bool {
	return c.closed || c.err != nil || c.wrShut || c.peer == nil || c.peer.closed
}
