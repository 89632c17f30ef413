package lab

import (
	"errors"
	"fmt"
	"net"

	"github.com/vsocklab/vsocklab/emu/uds"
)

// Host is what programs on the host see: Unix stream sockets in the host's
// namespace, where the device serves Firecracker's hybrid vsock protocol at
// UDSPath and connects to UDSPath_<port> for guest-initiated connections.
type Host struct{ d *driver }

type hostSock struct{ c *uds.Conn }

func (h *hostSock) read(p []byte, _ bool) (int, error)  { return h.c.Read(p) }
func (h *hostSock) write(p []byte, _ bool) (int, error) { return h.c.Write(p) }
func (h *hostSock) readEnds() bool                      { return h.c.ReadEnds() }
func (h *hostSock) writeFails() bool                    { return h.c.WriteFails() }
func (h *hostSock) closeWrite() error                   { return h.c.CloseWrite() }
func (h *hostSock) shutRead() error                     { return nil }
func (h *hostSock) closeRead() error {
	return fmt.Errorf("shutdown(SHUT_RD) of a host Unix socket is not modelled: %w", errors.ErrUnsupported)
}
func (h *hostSock) close()          { h.c.Close() }
func (h *hostSock) object() any     { return h.c }
func (h *hostSock) guestSide() bool { return false }

// UDSPath is the device's Unix socket path.
func (h *Host) UDSPath() string { return h.d.w.Config().UDSPath }

func (h *Host) conn(c *uds.Conn, local, remote string) *Conn {
	c.OnReady = func() { h.d.markDirty(c) }
	return h.d.newConn(&hostSock{c: c}, "unix", &net.UnixAddr{Name: local, Net: "unix"}, &net.UnixAddr{Name: remote, Net: "unix"})
}

// Dial connects a Unix stream socket to path. On the device's path the
// caller then speaks the hybrid vsock protocol itself: it writes
// "CONNECT <port>\n" and reads "OK <port>\n", as with Firecracker.
func (h *Host) Dial(path string) (net.Conn, error) {
	var c *Conn
	var err error
	h.d.do(&request{
		key:  reqKey{op: opDial, detail: "host " + path},
		desc: "Dial " + path,
		attempt: func(bool) bool {
			var uc *uds.Conn
			if uc, err = h.d.w.Host.Connect(path); err == nil {
				c = h.conn(uc, "", path)
			}
			return true
		},
		fail: func(e error) { err = e },
	})
	if err != nil {
		return nil, opError("dial", "unix", nil, &net.UnixAddr{Name: path, Net: "unix"}, err)
	}
	return c, nil
}

// Listen binds a Unix stream socket at path, such as UDSPath_<port> for
// connections the guest initiates.
func (h *Host) Listen(path string) (net.Listener, error) {
	var l *Listener
	var err error
	h.d.do(&request{
		key:  reqKey{op: opListen, detail: "host " + path},
		desc: "Listen on " + path,
		attempt: func(bool) bool {
			var ul *uds.Listener
			if ul, err = h.d.w.Host.Listen(path, 128); err != nil {
				return true
			}
			ul.OnReady = func() { h.d.markDirty(ul) }
			addr := &net.UnixAddr{Name: path, Net: "unix"}
			l = &Listener{d: h.d, id: h.d.newID(), addr: addr, obj: ul, name: "unix listener " + path,
				accept: func() (*Conn, error) {
					uc, err := ul.Accept()
					if err != nil {
						return nil, err
					}
					return h.conn(uc, path, ""), nil
				},
				shut: ul.Close,
			}
			return true
		},
		fail: func(e error) { err = e },
	})
	if err != nil {
		return nil, opError("listen", "unix", nil, &net.UnixAddr{Name: path, Net: "unix"}, err)
	}
	return l, nil
}
