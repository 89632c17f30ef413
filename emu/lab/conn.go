package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// Addr is a vsock address as programs see it, struct sockaddr_vm: a
// 32-bit context ID and port, as github.com/mdlayher/vsock's Addr.
type Addr struct {
	ContextID, Port uint32
}

// Network returns "vsock".
func (a *Addr) Network() string { return "vsock" }

// String renders the address the way github.com/mdlayher/vsock does:
// "host(2):1024", "vm(3):10000".
func (a *Addr) String() string {
	var name string
	switch a.ContextID {
	case 0:
		name = "hypervisor(0)"
	case 1:
		name = "local(1)"
	case 2:
		name = "host(2)"
	default:
		name = fmt.Sprintf("vm(%d)", a.ContextID)
	}
	return fmt.Sprintf("%s:%d", name, a.Port)
}

// backend is the world object under a connection: a guest socket or a host
// Unix socket end. Its methods run on the driver goroutine and never block.
type backend interface {
	read(p []byte, cont bool) (int, error) // (0, io.EOF) at end of stream; EAGAIN to park
	write(p []byte, cont bool) (int, error)
	readEnds() bool   // a read would return at once without data, touching nothing
	writeFails() bool // a write would fail at once, touching nothing
	closeWrite() error
	closeRead() error // nil, or the reason it cannot be done, without touching the world
	shutRead() error
	close()
	object() any // what the world's readiness hooks name
	guestSide() bool
}

// Conn is a net.Conn over the world. Every method is a request to the
// driver; blocking methods park until the world is ready, a deadline (in
// virtual time) passes, or the connection is closed.
type Conn struct {
	d             *driver
	id            uint64
	b             backend
	network       string
	local, remote net.Addr
	name          string

	// Set by the program's goroutines without waiting for the driver
	// (see driver.post), read by the driver.
	mu     sync.Mutex
	rd, wd time.Time
	closed bool

	readOp, writeOp *ioOp // see ioOp
	// deadline is the request setDeadline posts, a copy each time:
	// programs set deadlines around most reads and writes, and building
	// its description and closures per call cost more than the call.
	deadline request
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Conn) deadlines() (rd, wd time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rd, c.wd
}

var _ net.Conn = (*Conn)(nil)

func (d *driver) newConn(b backend, network string, local, remote net.Addr) *Conn {
	c := &Conn{d: d, id: d.newID(), b: b, network: network, local: local, remote: remote}
	c.name = fmt.Sprintf("%s conn %d %s->%s", network, c.id, local, remote)
	c.readOp, c.writeOp = c.newReadOp(), c.newWriteOp()
	c.deadline = *c.request(opDeadline, "SetDeadline")
	c.deadline.attempt = func(bool) bool { return true }
	c.deadline.fail = func(error) {}
	return c
}

// opError wraps a world error the way the net package does: errno values
// inside *os.SyscallError inside *net.OpError, so errors.Is works for
// syscall.ECONNRESET and friends; io.EOF bare.
func opError(op, network string, src, dst net.Addr, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		call := op
		if op == "dial" {
			call = "connect"
		}
		err = os.NewSyscallError(call, errno)
	}
	return &net.OpError{Op: op, Net: network, Source: src, Addr: dst, Err: err}
}

func (c *Conn) request(o op, desc string) *request {
	return &request{
		key:   reqKey{obj: c.id, op: o},
		obj:   c.b.object(),
		guest: c.b.guestSide(),
		desc:  desc + " on " + c.name,
		gone:  c.isClosed,
	}
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	op := takeOp(c.readOp, c.newReadOp)
	n, err := op.runOn(c, p)
	return n, opError("read", c.network, c.local, c.remote, err)
}

// Write implements net.Conn: it returns once every byte is queued, or with
// the count so far and an error.
func (c *Conn) Write(p []byte) (int, error) {
	op := takeOp(c.writeOp, c.newWriteOp)
	n, err := op.runOn(c, p)
	return n, opError("write", c.network, c.local, c.remote, err)
}

// ioOp is one Read or Write in flight on a Conn or a pipe end: the
// request the driver runs, and the call's buffer and results, which the
// request's functions read and write. Read and Write are the lab's hottest
// path: a fresh request with its closures per call was most of a fuzz
// exec's allocations. So each Conn keeps one op per direction, and each
// pipe end one, made with it and reused by every call that finds it free;
// a call that finds it busy (net.Conn allows concurrent Reads, and
// concurrent Writes) makes its own.
type ioOp struct {
	r    request
	b    []byte
	n    int
	err  error
	busy atomic.Bool // a call owns the op; only that call touches b, n, err and r
	own  bool        // the call's own op, not the cached one
}

// takeOp returns the cached op when it is free, else a fresh one.
func takeOp(cached *ioOp, newOp func() *ioOp) *ioOp {
	if cached.busy.CompareAndSwap(false, true) {
		return cached
	}
	op := newOp()
	op.own = true
	return op
}

// run submits the op's request for b and returns its results. When it
// returns, the driver holds the request nowhere: a request is dropped from
// every list before its owner is woken, and do returns only then (or
// without queuing it at all). The request keeps its done channel, which
// holds no signal between calls.
func (op *ioOp) run(d *driver, b []byte) (int, error) {
	op.b, op.n, op.err = b, 0, nil
	r := &op.r
	r.parked, r.parkedAt, r.seq = false, 0, 0
	d.do(r)
	n, err := op.n, op.err
	op.b = nil
	if !op.own {
		op.busy.Store(false)
	}
	return n, err
}

// runOn runs op on c: the request acts on c's buffer as it is now (a
// Conn's object changes when its socket is accepted or reset).
func (op *ioOp) runOn(c *Conn, b []byte) (int, error) {
	op.r.obj, op.r.guest = c.b.object(), c.b.guestSide()
	return op.run(c.d, b)
}

func (c *Conn) newReadOp() *ioOp {
	op := &ioOp{r: *c.request(opRead, "Read")}
	op.r.attempt = func(cont bool) bool {
		if c.isClosed() {
			op.err = net.ErrClosed
			return true
		}
		op.n, op.err = c.b.read(op.b, cont)
		return !errors.Is(op.err, syscall.EAGAIN)
	}
	op.r.ends = func() bool {
		if !c.b.readEnds() {
			return false
		}
		op.n, op.err = c.b.read(op.b, false)
		return true
	}
	op.r.deadline = func() time.Time { rd, _ := c.deadlines(); return rd }
	op.r.expire = func() { op.err = os.ErrDeadlineExceeded }
	op.r.fail = func(e error) { op.err = e }
	return op
}

func (c *Conn) newWriteOp() *ioOp {
	op := &ioOp{r: *c.request(opWrite, "Write")}
	op.r.attempt = func(cont bool) bool {
		if c.isClosed() {
			op.err = net.ErrClosed
			return true
		}
		for op.n < len(op.b) {
			m, e := c.b.write(op.b[op.n:], cont || op.n > 0)
			op.n += m
			if errors.Is(e, syscall.EAGAIN) {
				return false
			}
			if e != nil {
				op.err = e
				return true
			}
		}
		return true
	}
	op.r.ends = func() bool {
		if len(op.b) == 0 || !c.b.writeFails() {
			return false
		}
		op.n, op.err = c.b.write(op.b, false)
		return true
	}
	op.r.deadline = func() time.Time { _, wd := c.deadlines(); return wd }
	op.r.expire = func() { op.err = os.ErrDeadlineExceeded }
	op.r.fail = func(e error) { op.err = e }
	return op
}

// CloseWrite shuts down the writing side: SHUTDOWN(SEND) from the guest,
// shutdown(SHUT_WR) on a host Unix socket. Like Close it does not wait for
// the driver; the shutdown reaches the world before anything the caller
// does next.
func (c *Conn) CloseWrite() error {
	if c.isClosed() {
		return opError("close", c.network, c.local, c.remote, net.ErrClosed)
	}
	r := c.request(opShutdown, "CloseWrite")
	r.attempt = func(bool) bool {
		if err := c.b.closeWrite(); err != nil {
			c.d.w.Eng.Logf(engine.KindProgram, "lab", "CloseWrite on %s: %v", c.name, err)
		}
		return true
	}
	r.fail = func(error) {}
	c.d.post(r)
	return nil
}

// CloseRead shuts down the reading side, shutdown(SHUT_RD): on a guest
// connection the kernel sends SHUTDOWN(RCV) and reads return io.EOF at once
// (Linux af_vsock.c vsock_shutdown, v6.12). A host Unix socket's SHUT_RD is
// not modelled (emu/uds): there it fails with errors.ErrUnsupported. Like
// CloseWrite it does not wait for the driver.
func (c *Conn) CloseRead() error {
	if c.isClosed() {
		return opError("close", c.network, c.local, c.remote, net.ErrClosed)
	}
	if err := c.b.closeRead(); err != nil {
		return opError("close", c.network, c.local, c.remote, err)
	}
	r := c.request(opShutdown, "CloseRead")
	r.attempt = func(bool) bool {
		if err := c.b.shutRead(); err != nil {
			c.d.w.Eng.Logf(engine.KindProgram, "lab", "CloseRead on %s: %v", c.name, err)
		}
		return true
	}
	r.fail = func(error) {}
	c.d.post(r)
	return nil
}

// Close implements net.Conn; it unblocks pending reads and writes, which
// return net.ErrClosed.
func (c *Conn) Close() error {
	c.d.mu.Lock()
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		c.d.mu.Unlock()
		return opError("close", c.network, c.local, c.remote, net.ErrClosed)
	}
	c.d.failNow(c.b.object(), net.ErrClosed)
	c.d.mu.Unlock()
	r := c.request(opClose, "Close")
	r.attempt = func(bool) bool {
		c.b.close()
		return true
	}
	r.fail = func(error) {}
	c.d.post(r)
	return nil
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) setDeadline(read, write bool, t time.Time) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return opError("set", c.network, c.local, c.remote, net.ErrClosed)
	}
	if read {
		c.rd = t
	}
	if write {
		c.wd = t
	}
	c.d.deadlineGen.Add(1)
	c.mu.Unlock()
	// Tell the driver, so that a parked read or write sees the new
	// deadline now.
	r := new(request)
	*r = c.deadline
	c.d.post(r)
	return nil
}

// SetDeadline implements net.Conn; deadlines are in the lab's virtual time.
func (c *Conn) SetDeadline(t time.Time) error { return c.setDeadline(true, true, t) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(true, false, t) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(false, true, t) }

func (c *Conn) String() string { return c.name }

// Listener is a net.Listener over the world.
type Listener struct {
	d      *driver
	id     uint64
	addr   net.Addr
	name   string
	guest  bool
	obj    any
	accept func() (*Conn, error) // non-blocking, EAGAIN to park
	shut   func()

	mu     sync.Mutex
	closed bool
	dl     time.Time // Accept's deadline
}

var _ net.Listener = (*Listener)(nil)

// SetDeadline sets the deadline of Accept, in the lab's virtual time (zero:
// none), as github.com/mdlayher/vsock's Listener.SetDeadline: a pending or
// later Accept past it fails with os.ErrDeadlineExceeded.
func (l *Listener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return opError("set", l.addr.Network(), nil, l.addr, net.ErrClosed)
	}
	l.dl = t
	l.d.deadlineGen.Add(1)
	l.mu.Unlock()
	l.d.post(&request{
		key:     reqKey{obj: l.id, op: opDeadline},
		desc:    "SetDeadline on " + l.name,
		attempt: func(bool) bool { return true },
		fail:    func(error) {},
	})
	return nil
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	var c *Conn
	var err error
	l.d.do(&request{
		gone: func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.closed
		},
		key:   reqKey{obj: l.id, op: opAccept},
		obj:   l.obj,
		guest: l.guest,
		desc:  "Accept on " + l.name,
		attempt: func(bool) bool {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				err = net.ErrClosed
				return true
			}
			c, err = l.accept()
			return !errors.Is(err, syscall.EAGAIN)
		},
		deadline: func() time.Time {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.dl
		},
		expire: func() { err = os.ErrDeadlineExceeded },
		fail:   func(e error) { err = e },
	})
	if err != nil {
		return nil, opError("accept", l.addr.Network(), nil, l.addr, err)
	}
	return c, nil
}

// Close implements net.Listener; a pending Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.d.mu.Lock()
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if closed {
		l.d.mu.Unlock()
		return opError("close", l.addr.Network(), nil, l.addr, net.ErrClosed)
	}
	l.d.failNow(l.obj, net.ErrClosed)
	l.d.mu.Unlock()
	l.d.post(&request{
		key:     reqKey{obj: l.id, op: opClose},
		desc:    "Close on " + l.name,
		attempt: func(bool) bool { l.shut(); return true },
		fail:    func(error) {},
	})
	return nil
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.addr }
