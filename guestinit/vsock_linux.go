package guestinit

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// VsockAddr is an AF_VSOCK address.
type VsockAddr struct {
	CID  uint32
	Port uint32
}

// Network returns "vsock".
func (a *VsockAddr) Network() string { return "vsock" }

func (a *VsockAddr) String() string { return fmt.Sprintf("%d:%d", a.CID, a.Port) }

// vsockConn is an AF_VSOCK stream on a non-blocking descriptor driven by
// the runtime poller, so deadlines work as on any net.Conn.
type vsockConn struct {
	*os.File
	local, remote *VsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite sends SHUTDOWN(SEND) to the peer.
func (c *vsockConn) CloseWrite() error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

func newVsockSocket() (int, error) {
	return unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// ListenVsock listens on port of this VM (any CID).
func ListenVsock(port uint32) (net.Listener, error) {
	fd, err := newVsockSocket()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("listen", err)
	}
	local := &VsockAddr{CID: unix.VMADDR_CID_ANY, Port: port}
	if sa, err := unix.Getsockname(fd); err == nil {
		if vm, ok := sa.(*unix.SockaddrVM); ok {
			local = &VsockAddr{CID: vm.CID, Port: vm.Port}
		}
	}
	return &vsockListener{f: os.NewFile(uintptr(fd), "vsock-listener"), addr: local}, nil
}

type vsockListener struct {
	f    *os.File
	addr *VsockAddr
}

func (l *vsockListener) Accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var sa unix.Sockaddr
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return aerr != unix.EAGAIN
	})
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: "vsock", Addr: l.addr, Err: err}
	}
	if aerr != nil {
		return nil, &net.OpError{Op: "accept", Net: "vsock", Addr: l.addr, Err: os.NewSyscallError("accept4", aerr)}
	}
	remote := &VsockAddr{}
	if vm, ok := sa.(*unix.SockaddrVM); ok {
		remote = &VsockAddr{CID: vm.CID, Port: vm.Port}
	}
	return &vsockConn{File: os.NewFile(uintptr(nfd), "vsock"), local: l.addr, remote: remote}, nil
}

func (l *vsockListener) Close() error   { return l.f.Close() }
func (l *vsockListener) Addr() net.Addr { return l.addr }

// DialVsock connects to (cid, port), honouring ctx's deadline.
func DialVsock(ctx context.Context, cid uint32, port uint32) (net.Conn, error) {
	remote := &VsockAddr{CID: cid, Port: port}
	fail := func(call string, err error) error {
		return &net.OpError{Op: "dial", Net: "vsock", Addr: remote, Err: os.NewSyscallError(call, err)}
	}
	fd, err := newVsockSocket()
	if err != nil {
		return nil, fail("socket", err)
	}
	err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, fail("connect", err)
	}
	f := os.NewFile(uintptr(fd), "vsock")
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var soErr error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			soErr = err
			return true
		}
		if v == 0 {
			// Connected, or still in progress: the poller says writable
			// only once the handshake ended.
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false
			}
			return true
		}
		soErr = unix.Errno(v)
		return true
	})
	if werr != nil {
		f.Close()
		if ctx.Err() != nil {
			return nil, &net.OpError{Op: "dial", Net: "vsock", Addr: remote, Err: ctx.Err()}
		}
		return nil, &net.OpError{Op: "dial", Net: "vsock", Addr: remote, Err: werr}
	}
	if soErr != nil {
		f.Close()
		return nil, fail("connect", soErr)
	}
	_ = f.SetWriteDeadline(time.Time{})
	local := &VsockAddr{}
	if sa, err := unix.Getsockname(fd); err == nil {
		if vm, ok := sa.(*unix.SockaddrVM); ok {
			local = &VsockAddr{CID: vm.CID, Port: vm.Port}
		}
	}
	return &vsockConn{File: f, local: local, remote: remote}, nil
}
