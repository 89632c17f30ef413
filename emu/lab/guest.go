package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/virtio"
)

// Guest is what programs inside the VM see: AF_VSOCK listeners and dialers
// and pipes, all in the guest kernel model.
type Guest struct{ d *driver }

type guestSock struct {
	k *guest.Kernel
	s *guest.Socket
}

func (g *guestSock) read(p []byte, cont bool) (int, error) {
	n, err := g.k.Recv(g.s, p, cont)
	if err == nil && n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, err
}

func (g *guestSock) write(p []byte, cont bool) (int, error) { return g.k.Send(g.s, p, cont) }
func (g *guestSock) readEnds() bool                         { return g.k.RecvEnds(g.s) }
func (g *guestSock) writeFails() bool                       { return g.k.SendEnds(g.s) }
func (g *guestSock) closeWrite() error                      { return g.k.Shutdown(g.s, guest.ShutSend) }
func (g *guestSock) closeRead() error                       { return nil }
func (g *guestSock) shutRead() error                        { return g.k.Shutdown(g.s, guest.ShutRcv) }
func (g *guestSock) close()                                 { g.k.Close(g.s) }
func (g *guestSock) object() any                            { return g.s }
func (g *guestSock) guestSide() bool                        { return true }

func (g *Guest) kernel() *guest.Kernel { return g.d.w.Guest }

func (g *Guest) conn(s *guest.Socket) *Conn {
	k := g.kernel()
	return g.d.newConn(&guestSock{k: k, s: s}, "vsock",
		&Addr{ContextID: uint32(k.CID()), Port: s.Local().Port}, &Addr{ContextID: uint32(s.Remote().CID), Port: s.Remote().Port})
}

// CID returns the guest's context ID.
func (g *Guest) CID() uint64 { return g.d.w.Config().GuestCID }

// Listen listens on a vsock port of the guest (any CID), with the backlog
// Go's net package would use (somaxconn, 4096 on current kernels).
func (g *Guest) Listen(port uint32) (net.Listener, error) { return g.ListenBacklog(port, 4096) }

// ListenBacklog is Listen with an explicit accept backlog.
func (g *Guest) ListenBacklog(port uint32, backlog int) (net.Listener, error) {
	l, err := g.listen(virtio.CIDAny, port, backlog)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// listen is socket, bind and listen in one request.
func (g *Guest) listen(cid uint64, port uint32, backlog int) (*Listener, error) {
	var l *Listener
	var err error
	g.d.do(&request{
		key:   reqKey{op: opListen, detail: fmt.Sprintf("guest %d:%d", cid, port)},
		guest: true,
		desc:  fmt.Sprintf("Listen on guest port %d", port),
		attempt: func(bool) bool {
			k := g.kernel()
			s := k.Socket()
			if err = k.Bind(s, cid, port, true); err == nil {
				err = k.Listen(s, backlog)
			}
			if err != nil {
				k.Close(s)
				return true
			}
			l = g.listener(s)
			return true
		},
		fail: func(e error) { err = e },
	})
	if err != nil {
		return nil, opError("listen", "vsock", nil, &Addr{ContextID: uint32(cid), Port: port}, err)
	}
	return l, nil
}

// listener wraps a listening guest socket; called by the driver.
func (g *Guest) listener(s *guest.Socket) *Listener {
	addr := &Addr{ContextID: uint32(g.kernel().CID()), Port: s.Local().Port}
	return &Listener{d: g.d, id: g.d.newID(), addr: addr, guest: true, obj: s,
		name: "vsock listener " + addr.String(),
		accept: func() (*Conn, error) {
			c, err := g.kernel().Accept(s)
			if err != nil {
				return nil, err
			}
			return g.conn(c), nil
		},
		shut: func() { g.kernel().Close(s) },
	}
}

// Dial connects to (cid, port), normally the host (CID 2).
func (g *Guest) Dial(cid uint64, port uint32) (net.Conn, error) {
	return g.DialContext(context.Background(), cid, port)
}

// DialContext connects to (cid, port). The kernel's 2 s connect timeout
// applies (ETIMEDOUT); ctx can cut it shorter.
func (g *Guest) DialContext(ctx context.Context, cid uint64, port uint32) (net.Conn, error) {
	c, err := g.dial(ctx, nil, cid, port)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dial connects bound (a Socket's), or a new socket on an ephemeral port
// when bound is nil. A new socket is closed when the connect fails; a bound
// one stays its owner's, as after a failed connect(2).
func (g *Guest) dial(ctx context.Context, bound *Socket, cid uint64, port uint32) (*Conn, error) {
	var c *Conn
	var err error
	var s *guest.Socket
	dst := &Addr{ContextID: uint32(cid), Port: port}
	key := reqKey{op: opDial, detail: "guest " + dst.String()}
	if bound != nil {
		key.obj = bound.id
		s = bound.s
	}
	r := &request{key: key, guest: true, desc: "Dial " + dst.String()}
	giveUp := func(e error) {
		err = e
		if s != nil && bound == nil {
			g.kernel().Close(s)
		}
	}
	r.attempt = func(cont bool) bool {
		k := g.kernel()
		if !cont {
			if bound == nil {
				s = k.Socket()
			}
			r.obj = s
			if e := k.Connect(s, cid, port); !errors.Is(e, syscall.EINPROGRESS) {
				giveUp(e)
				return true
			}
		}
		done, e := k.ConnectResult(s)
		if !done {
			return false
		}
		if e != nil {
			giveUp(e)
			return true
		}
		c = g.conn(s)
		return true
	}
	if dl, ok := ctx.Deadline(); ok {
		r.deadline = func() time.Time { return dl }
	}
	r.expire = func() { giveUp(os.ErrDeadlineExceeded) }
	r.fail = giveUp
	if ctx.Done() != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-ctx.Done():
				g.d.do(&request{
					key:  reqKey{op: opCancel, detail: "guest " + dst.String()},
					desc: "cancel Dial " + dst.String(),
					attempt: func(bool) bool {
						g.d.cancel(r, ctx.Err())
						return true
					},
					fail: func(error) {},
				})
			case <-stop:
			}
		}()
	}
	g.d.do(r)
	if err != nil {
		return nil, opError("dial", "vsock", nil, dst, err)
	}
	return c, nil
}

// cancel completes r with err if it still waits: parked, or held while
// the VM is suspended.
func (d *driver) cancel(r *request, err error) {
	is := func(p *request) bool { return p == r }
	switch {
	case r.parked:
		d.parked = slices.DeleteFunc(d.parked, is)
	case slices.Contains(d.held, r):
		d.held = slices.DeleteFunc(d.held, is)
	default:
		return
	}
	r.fail(err)
	d.complete(r)
}

// Pipe creates a guest pipe of Linux's default 64 KiB, as a workload's
// stdout is.
func (g *Guest) Pipe() (*PipeReader, *PipeWriter, error) {
	var r *PipeReader
	var w *PipeWriter
	err := g.d.exec(reqKey{op: opListen, detail: "pipe"}, func() {
		p := g.kernel().NewPipe()
		st := &PipeStats{ID: p.ID}
		g.d.pipes = append(g.d.pipes, st)
		r = &PipeReader{d: g.d, p: p, id: g.d.newID()}
		w = &PipeWriter{d: g.d, p: p, st: st, id: g.d.newID()}
		r.op, w.op = r.newReadOp(), w.newWriteOp()
	})
	if err != nil {
		return nil, nil, err
	}
	return r, w, nil
}

// PipeStats is what the lab saw of a pipe's writer.
type PipeStats struct {
	ID       int
	Written  uint64
	MaxBlock time.Duration // longest time one write waited for room
	Blocks   int           // writes that had to wait
	Blocked  bool          // a write is waiting right now
	Since    time.Duration // when the waiting write started waiting
}

// PipeReader is the read end of a guest pipe.
type PipeReader struct {
	d      *driver
	p      *guest.Pipe
	id     uint64
	closed bool
	op     *ioOp // the Read op Read reuses (ioOp)
}

// Read blocks until bytes are available or the write end is closed (EOF).
func (r *PipeReader) Read(b []byte) (int, error) {
	return takeOp(r.op, r.newReadOp).run(r.d, b)
}

func (r *PipeReader) newReadOp() *ioOp {
	op := &ioOp{r: request{key: reqKey{obj: r.id, op: opRead}, obj: r.p, guest: true,
		desc: fmt.Sprintf("Read on pipe %d", r.p.ID)}}
	read := func() {
		op.n, op.err = r.p.Read(op.b)
		if op.err == nil && op.n == 0 && len(op.b) > 0 {
			op.err = io.EOF
		}
	}
	op.r.ends = func() bool {
		if r.closed || !r.p.ReadEnds() {
			return false
		}
		read()
		return true
	}
	op.r.attempt = func(bool) bool {
		if r.closed {
			op.err = os.ErrClosed
			return true
		}
		read()
		return !errors.Is(op.err, syscall.EAGAIN)
	}
	op.r.fail = func(e error) { op.err = e }
	return op
}

// Close closes the read end; writers get EPIPE.
func (r *PipeReader) Close() error {
	r.d.post(&request{key: reqKey{obj: r.id, op: opClose}, desc: "Close pipe reader", fail: func(error) {},
		attempt: func(bool) bool {
			if !r.closed {
				r.closed = true
				r.p.CloseRead()
			}
			return true
		}})
	return nil
}

// PipeWriter is the write end of a guest pipe.
type PipeWriter struct {
	d      *driver
	p      *guest.Pipe
	st     *PipeStats
	id     uint64
	closed bool
	op     *ioOp // the Write op Write reuses (ioOp)
}

// Write blocks until every byte is in the pipe, as a blocking pipe write
// does, and records how long it waited for room.
func (w *PipeWriter) Write(b []byte) (int, error) {
	return takeOp(w.op, w.newWriteOp).run(w.d, b)
}

func (w *PipeWriter) newWriteOp() *ioOp {
	op := &ioOp{r: request{key: reqKey{obj: w.id, op: opWrite}, obj: w.p, guest: true}}
	r := &op.r
	// Described only when the write waits (request.describe).
	r.describe = func() string { return fmt.Sprintf("Write of %d bytes on pipe %d", len(op.b), w.p.ID) }
	r.attempt = func(bool) bool {
		if w.closed {
			op.err = os.ErrClosed
			return true
		}
		for op.n < len(op.b) {
			m, e := w.p.Write(op.b[op.n:])
			op.n += m
			w.st.Written += uint64(m)
			if errors.Is(e, syscall.EAGAIN) {
				return false
			}
			if e != nil {
				op.err = e
				return true
			}
		}
		if r.parked || w.st.Blocked {
			w.unblocked()
		}
		return true
	}
	r.ends = func() bool {
		if w.closed || len(op.b) == 0 || !w.p.WriteFails() {
			return false
		}
		_, op.err = w.p.Write(op.b)
		return true
	}
	r.onPark = func() {
		w.st.Blocked = true
		w.st.Since = w.d.now()
		w.st.Blocks++
	}
	r.fail = func(e error) { op.err = e; w.unblocked() }
	return op
}

func (w *PipeWriter) unblocked() {
	if !w.st.Blocked {
		return
	}
	w.st.Blocked = false
	waited := w.d.now() - w.st.Since
	w.st.MaxBlock = max(w.st.MaxBlock, waited)
	w.d.w.Eng.Logf(engine.KindProgram, "guest", "pipe %d writer waited %s for room", w.p.ID, waited)
}

// Close closes the write end; the reader sees EOF after draining.
func (w *PipeWriter) Close() error {
	w.d.post(&request{key: reqKey{obj: w.id, op: opClose}, desc: "Close pipe writer", fail: func(error) {},
		attempt: func(bool) bool {
			if !w.closed {
				w.closed = true
				w.p.CloseWrite()
			}
			return true
		}})
	return nil
}

// SetVsockBufferSize is setsockopt(SO_VM_SOCKETS_BUFFER_SIZE) on a guest
// connection: the size is clamped to the socket's limits and, as the socket
// has a transport, becomes its buf_alloc at once with a CREDIT_UPDATE to
// the peer (Linux af_vsock.c vsock_update_buffer_size). On a host
// connection it fails with ENOPROTOOPT.
func (c *Conn) SetVsockBufferSize(n uint64) error {
	return c.sockopt("SO_VM_SOCKETS_BUFFER_SIZE", func(k *guest.Kernel, s *guest.Socket) error {
		k.SetBufferSize(s, n)
		return nil
	})
}

// SetRcvlowat is setsockopt(SO_RCVLOWAT) on a guest connection (Linux
// af_vsock.c vsock_set_rcvlowat): EINVAL above the buffer size; a read that
// blocks then waits until that many bytes are queued. On a host connection
// it fails with ENOPROTOOPT (Unix stream sockets are not modelled that far).
func (c *Conn) SetRcvlowat(n int) error {
	return c.sockopt("SO_RCVLOWAT", func(k *guest.Kernel, s *guest.Socket) error { return k.SetRcvlowat(s, n) })
}

// SetLinger is setsockopt(SO_LINGER) on a guest connection, on for d. It
// changes no packet: a real close(2) then waits for the peer's RST, up
// to d, while the lab's Close returns at once as always (guest.Kernel
// SetLinger). On a host connection it fails with ENOPROTOOPT.
func (c *Conn) SetLinger(d time.Duration) error {
	return c.sockopt("SO_LINGER", func(k *guest.Kernel, s *guest.Socket) error {
		k.SetLinger(s, true, d)
		return nil
	})
}

// sockopt applies a socket option to the guest socket under c, in order with
// the world's other operations.
func (c *Conn) sockopt(name string, set func(*guest.Kernel, *guest.Socket) error) error {
	g, ok := c.b.(*guestSock)
	if !ok {
		return opError("setsockopt", c.network, c.local, c.remote, os.NewSyscallError("setsockopt "+name, syscall.ENOPROTOOPT))
	}
	var err error
	r := c.request(opSockopt, "setsockopt "+name)
	r.attempt = func(bool) bool {
		if c.isClosed() {
			err = net.ErrClosed
			return true
		}
		if e := set(g.k, g.s); e != nil {
			err = os.NewSyscallError("setsockopt "+name, e)
		}
		return true
	}
	r.fail = func(e error) { err = e }
	c.d.do(r)
	if err != nil {
		return opError("setsockopt", c.network, c.local, c.remote, err)
	}
	return nil
}
