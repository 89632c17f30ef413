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

// DefaultBuffer is a Unix stream socket's default send buffer, sk_sndbuf =
// net.core.wmem_default = 212992. A Unix stream socket charges what it
// queues at its peer to its own sk_wmem_alloc until the peer has read it.
const DefaultBuffer = 212992

// MinBuffer is SOCK_MIN_SNDBUF on x86_64 (include/net/sock.h: twice
// TCP_SKB_MIN_TRUESIZE, 2048 + a cache-aligned struct sk_buff).
const MinBuffer = 2 * (2048 + skbStructSize)

// The sk_buff geometry of x86_64 with 64-byte cache lines and 4 KiB pages.
const (
	pageSize       = 4096
	skbStructSize  = 256                      // SKB_DATA_ALIGN(sizeof(struct sk_buff))
	skbSharedInfo  = 320                      // SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
	skbMaxHead0    = pageSize - skbSharedInfo // SKB_MAX_HEAD(0)
	unixFragsSize  = 32768                    // UNIX_SKB_FRAGS_SZ: PAGE_SIZE << get_order(32768)
	skbMaxUnixSize = skbMaxHead0 + unixFragsSize
)

// Namespace is the set of bound socket paths of one host.
type Namespace struct {
	listeners map[string]*Listener
	bufSize   int
}

// NewNamespace returns an empty namespace whose sockets have the default
// send buffer.
func NewNamespace() *Namespace {
	return &Namespace{listeners: map[string]*Listener{}, bufSize: DefaultBuffer}
}

// SetBufferSize changes sk_sndbuf of the sockets of connections made from
// now on; like sock_setsockopt it never goes below SOCK_MIN_SNDBUF.
func (ns *Namespace) SetBufferSize(n int) { ns.bufSize = max(n, MinBuffer) }

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
	peer *Conn
	in   queue     // bytes written by the peer, not yet read here
	skbs []unixSkb // the skbs those bytes arrived in, oldest first

	sndbuf int // sk_sndbuf
	wmem   int // sk_wmem_alloc: truesize of this end's skbs the peer has not consumed

	wrShut bool // this end will write no more (shutdown(SHUT_WR) or close)
	closed bool
	err    error // pending socket error, reported once by Read or Write

	// OnReady is called whenever this end may have become readable,
	// writable or errored. It must not call back into the socket
	// synchronously in a way that recurses without bound; scheduling work is
	// the intended use.
	OnReady func()
}

// unixSkb is one skb in a receive queue: its unread bytes and the truesize
// charged to the sender until it is consumed.
type unixSkb struct {
	left     int
	truesize int
}

// Pair returns two connected ends whose send buffers are sndbuf bytes
// (at least MinBuffer).
func Pair(sndbuf int) (*Conn, *Conn) {
	sndbuf = max(sndbuf, MinBuffer)
	a := &Conn{sndbuf: sndbuf}
	b := &Conn{sndbuf: sndbuf}
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

// skbSize is how many bytes unix_stream_sendmsg puts in its next skb when
// n remain (Linux net/unix/af_unix.c, v6.12): half the send buffer less 64
// ("keep two messages in the pipe"), and at most a page-sized head plus
// UNIX_SKB_FRAGS_SZ of fragments.
func (c *Conn) skbSize(n int) int {
	return min(n, c.sndbuf>>1-64, skbMaxUnixSize)
}

// skbTruesize is the truesize of the skb unix_stream_sendmsg allocates for
// size bytes: data beyond a page-sized head goes in page fragments
// (data_len = min(size, PAGE_ALIGN(size - SKB_MAX_HEAD(0)))), the head is
// a kmalloc'ed buffer plus skb_shared_info, the struct sk_buff on top
// (sock_alloc_send_pskb, alloc_skb_with_frags, __alloc_skb's SKB_TRUESIZE).
// Approximate for heads small enough for skb_small_head_cache.
func skbTruesize(size int) int {
	data := min(size, pageAlign(max(size-skbMaxHead0, 0)))
	head := size - data
	return kmallocSize(cacheAlign(head)+skbSharedInfo) + skbStructSize + pageAlign(data)
}

func pageAlign(n int) int  { return (n + pageSize - 1) &^ (pageSize - 1) }
func cacheAlign(n int) int { return (n + 63) &^ 63 }

// kmallocSize is the kmalloc bucket that serves n bytes.
func kmallocSize(n int) int {
	for _, b := range []int{64, 96, 128, 192, 256, 512, 1024, 2048, 4096} {
		if n <= b {
			return b
		}
	}
	return pageAlign(n) // kmalloc_large: whole pages
}

// Space returns how many bytes one write from this end would queue now:
// 0 when it would block.
func (c *Conn) Space() int {
	if c.peer == nil || c.peer.closed {
		return 0
	}
	n, wmem := 0, c.wmem
	for wmem < c.sndbuf {
		size := c.skbSize(skbMaxUnixSize)
		n += size
		wmem += skbTruesize(size)
	}
	return n
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
// (ECONNRESET when the peer closed with unread data) comes first. An skb
// read to its end gives its truesize back to the writer
// (unix_stream_read_generic consumes it), which may make the writer
// writable again.
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
	freed := 0
	for left := n; left > 0; {
		s := &c.skbs[0]
		k := min(left, s.left)
		s.left -= k
		left -= k
		if s.left == 0 {
			freed += s.truesize
			c.skbs = c.skbs[1:]
		}
	}
	if len(c.skbs) == 0 {
		c.skbs = nil
	}
	if freed > 0 && c.peer != nil {
		c.peer.wmem -= freed
		c.peer.ready() // the peer may write again
	}
	return n, nil
}

// Write is unix_stream_sendmsg on a non-blocking socket (Linux
// net/unix/af_unix.c, v6.12): p goes out in skbs of skbSize bytes, and
// each skb is admitted while sk_wmem_alloc is below sk_sndbuf
// (sock_alloc_send_pskb), so the last one may take the socket past its
// buffer by a whole skb. A write stops at the first skb not admitted and
// returns what was queued, or EAGAIN when nothing was: partial writes
// happen at skb boundaries, never mid-skb. EPIPE when this end was shut
// down for writing or the peer is gone.
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
	sent := 0
	for sent < len(p) && c.wmem < c.sndbuf {
		size := c.skbSize(len(p) - sent)
		ts := skbTruesize(size)
		c.wmem += ts
		c.peer.in.write(p[sent : sent+size])
		c.peer.skbs = append(c.peer.skbs, unixSkb{left: size, truesize: ts})
		sent += size
	}
	if sent == 0 {
		return 0, syscall.EAGAIN
	}
	c.peer.ready()
	return sent, nil
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
	c.skbs = nil
	if c.peer != nil {
		c.peer.wmem = 0 // the purged skbs give their truesize back
	}
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
