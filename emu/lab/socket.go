package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/virtio"
)

// Socket is a guest vsock socket made by Guest.Bind: socket(2) and bind(2)
// done, connect(2) or listen(2) still to come, or neither. Dial connects
// it from its port; Listen makes it a listener; a socket left bound holds
// its port, and a peer's connect to it is reset, as nobody listens.
// Dial and Listen hand the socket over to the Conn or Listener they
// return; Close then does nothing.
type Socket struct {
	g    *Guest
	id   uint64
	s    *guest.Socket
	addr *Addr

	mu     sync.Mutex
	handed bool // a Conn or Listener owns the socket now
	closed bool
}

// Bind creates a guest socket bound to port on the guest's CID, as
// socket(2) and bind(2) do. virtio.PortAny binds an ephemeral port, chosen
// as the kernel chooses it; ports up to 1023 are allowed, as for root.
func (g *Guest) Bind(port uint32) (*Socket, error) {
	var sock *Socket
	var err error
	g.d.do(&request{
		key:   reqKey{op: opListen, detail: fmt.Sprintf("guest bind %d", port)},
		guest: true,
		desc:  fmt.Sprintf("Bind guest port %d", port),
		attempt: func(bool) bool {
			k := g.kernel()
			s := k.Socket()
			if err = k.Bind(s, virtio.CIDAny, port, true); err != nil {
				k.Close(s)
				return true
			}
			sock = &Socket{g: g, id: g.d.newID(), s: s, addr: &Addr{ContextID: uint32(k.CID()), Port: s.Local().Port}}
			return true
		},
		fail: func(e error) { err = e },
	})
	if err != nil {
		return nil, opError("bind", "vsock", nil, &Addr{ContextID: uint32(g.CID()), Port: port}, err)
	}
	return sock, nil
}

// Addr is the address the socket is bound to (an *Addr).
func (s *Socket) Addr() net.Addr { return s.addr }

// take hands the socket over to a Conn or Listener, or reports why it
// cannot be.
func (s *Socket) take(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return opError(op, "vsock", s.addr, nil, net.ErrClosed)
	case s.handed:
		return opError(op, "vsock", s.addr, nil, fmt.Errorf("socket already handed to a Conn or Listener"))
	}
	s.handed = true
	return nil
}

// giveBack returns the socket to its owner after a failed Dial or Listen,
// and releases it if the owner closed it meanwhile.
func (s *Socket) giveBack() {
	s.mu.Lock()
	s.handed = false
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.release()
	}
}

func (s *Socket) release() {
	s.g.d.post(&request{
		key:     reqKey{obj: s.id, op: opClose},
		desc:    "Close on guest socket " + s.addr.String(),
		attempt: func(bool) bool { s.g.kernel().Close(s.s); return true },
		fail:    func(error) {},
	})
}

// Dial connects the socket to (cid, port) from its bound port, as
// connect(2) on a bound socket. On failure the socket stays bound and
// the caller's, to dial again or close, as after a failed connect(2).
func (s *Socket) Dial(ctx context.Context, cid uint64, port uint32) (*Conn, error) {
	if err := s.take("dial"); err != nil {
		return nil, err
	}
	c, err := s.g.dial(ctx, s, cid, port)
	if err != nil {
		s.giveBack()
		return nil, err
	}
	return c, nil
}

// Listen makes the socket a listener with the given accept backlog, as
// listen(2) on a bound socket.
func (s *Socket) Listen(backlog int) (*Listener, error) {
	if err := s.take("listen"); err != nil {
		return nil, err
	}
	var l *Listener
	var err error
	if e := s.g.d.exec(reqKey{obj: s.id, op: opListen}, func() {
		if err = s.g.kernel().Listen(s.s, backlog); err == nil {
			l = s.g.listener(s.s)
		}
	}); e != nil {
		err = e
	}
	if err != nil {
		s.giveBack()
		return nil, opError("listen", "vsock", nil, s.addr, err)
	}
	return l, nil
}

// SetVsockBufferSize is setsockopt(SO_VM_SOCKETS_BUFFER_SIZE) before
// connect or listen: the size is clamped to the socket's limits and kept;
// the connect, or each connection the listener accepts, starts with it as
// buf_alloc (Linux af_vsock.c vsock_update_buffer_size, v6.12).
func (s *Socket) SetVsockBufferSize(n uint64) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.g.d.exec(reqKey{obj: s.id, op: opSockopt, detail: "SO_VM_SOCKETS_BUFFER_SIZE"}, func() { s.g.kernel().SetBufferSize(s.s, n) })
}

// SetRcvlowat is setsockopt(SO_RCVLOWAT) before connect or listen (Linux
// af_vsock.c vsock_set_rcvlowat, v6.12): EINVAL above the buffer size. A
// dial's connection keeps it; a listener's accepted connections start at
// 1, as sock_init_data gives every new socket.
func (s *Socket) SetRcvlowat(n int) error {
	if err := s.usable(); err != nil {
		return err
	}
	var err error
	if e := s.g.d.exec(reqKey{obj: s.id, op: opSockopt, detail: "SO_RCVLOWAT"}, func() { err = s.g.kernel().SetRcvlowat(s.s, n) }); e != nil {
		return e
	}
	if err != nil {
		return opError("setsockopt", "vsock", s.addr, nil, os.NewSyscallError("setsockopt SO_RCVLOWAT", err))
	}
	return nil
}

// usable reports, for a socket option, a socket already closed.
func (s *Socket) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return opError("setsockopt", "vsock", s.addr, nil, net.ErrClosed)
	}
	return nil
}

// Close releases the socket and its port, unless Dial or Listen handed it
// over.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return opError("close", "vsock", s.addr, nil, net.ErrClosed)
	}
	s.closed = true
	handed := s.handed
	s.mu.Unlock()
	if !handed {
		s.release()
	}
	return nil
}
