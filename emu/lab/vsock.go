package lab

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/vsocklab/vsocklab/hybrid"
	"github.com/vsocklab/vsocklab/virtio"
)

// DialVsock connects to a guest port from the host the way a Firecracker
// host does (package hybrid): a Unix stream to UDSPath, "CONNECT <port>\n",
// then "OK <host port>\n" once the guest accepts. The Conn's LocalAddr is
// the host's vsock address with the port of the OK line (host(2):<port>),
// its RemoteAddr the guest's (vm(<cid>):<port>). A guest that refuses, or
// nobody listening, gives an error wrapping hybrid.ErrRefused.
func (h *Host) DialVsock(ctx context.Context, port uint32) (*Conn, error) {
	hc, err := hybrid.Connect(ctx, func(context.Context) (net.Conn, error) { return h.Dial(h.UDSPath()) }, port)
	if err != nil {
		return nil, opError("dial", "vsock", nil, &Addr{ContextID: uint32(h.d.w.Config().GuestCID), Port: port}, err)
	}
	c := hc.Conn.(*Conn)
	c.relabel(&Addr{ContextID: uint32(virtio.CIDHost), Port: hc.HostPort}, &Addr{ContextID: uint32(h.d.w.Config().GuestCID), Port: port})
	return c, nil
}

// relabel gives a host Unix connection that now carries a vsock stream
// its vsock addresses. Only before the program has the Conn.
func (c *Conn) relabel(local, remote *Addr) {
	c.network, c.local, c.remote = "vsock", local, remote
	c.name = fmt.Sprintf("vsock conn %d %s->%s", c.id, local, remote)
}

// Vsock is github.com/mdlayher/vsock's API on one side of the lab, so
// that an agent written against that package runs here by swapping its
// constructors: vsock.Listen(port, nil) becomes v.Listen(port, nil),
// vsock.Dial(cid, port, nil) becomes v.Dial(cid, port, nil) (DialContext
// likewise), with the same
// signatures but for the package's own types (*Listener, *Conn,
// *VsockConfig; connections' addresses are *Addr). What it does not have:
// FileListener and Conn.SyscallConn, as the lab's sockets have no file
// descriptors.
//
// On the guest (Guest.Vsock) the calls are the guest kernel's. On the host
// (Host.Vsock) they go through the device as a Firecracker host's do: Dial
// is DialVsock to the guest's CID, and Listen binds UDSPath_<port>, where
// the device delivers the guest's connections to host port <port>; those
// connections' RemoteAddr has the guest's CID and port VMADDR_PORT_ANY, as
// Firecracker does not tell the host the guest's port.
type Vsock struct {
	g *Guest
	h *Host
}

// VsockConfig is github.com/mdlayher/vsock's Config: empty, nil for the
// defaults.
type VsockConfig struct{}

// Vsock returns the guest's vsock API.
func (g *Guest) Vsock() *Vsock { return &Vsock{g: g} }

// Vsock returns the host's vsock API.
func (h *Host) Vsock() *Vsock { return &Vsock{h: h} }

// ContextID is the side's own context ID: the guest's CID, or 2 (the host).
func (v *Vsock) ContextID() (uint32, error) {
	if v.g != nil {
		return uint32(v.g.CID()), nil
	}
	return uint32(virtio.CIDHost), nil
}

// Listen listens on port of the side's own context ID; port 0 asks for an
// ephemeral port, as in github.com/mdlayher/vsock.
func (v *Vsock) Listen(port uint32, cfg *VsockConfig) (*Listener, error) {
	cid, _ := v.ContextID()
	return v.ListenContextID(cid, port, cfg)
}

// ListenContextID listens on (contextID, port). On the guest the context ID
// is the guest's or VMADDR_CID_ANY; on the host it is 2, and port 0 is
// refused (a Firecracker host listens on a named port's socket).
func (v *Vsock) ListenContextID(contextID, port uint32, _ *VsockConfig) (*Listener, error) {
	if v.g != nil {
		if port == 0 {
			port = virtio.PortAny
		}
		return v.g.listen(uint64(contextID), port, 4096)
	}
	if contextID != uint32(virtio.CIDHost) || port == 0 {
		return nil, opError("listen", "vsock", nil, &Addr{ContextID: contextID, Port: port}, syscall.EADDRNOTAVAIL)
	}
	ln, err := v.h.Listen(v.h.UDSPath() + "_" + strconv.FormatUint(uint64(port), 10))
	if err != nil {
		return nil, err
	}
	l := ln.(*Listener)
	local := &Addr{ContextID: contextID, Port: port}
	guestCID := uint32(v.h.d.w.Config().GuestCID)
	accept := l.accept
	l.addr, l.name = local, "vsock listener "+local.String()
	l.accept = func() (*Conn, error) {
		c, err := accept()
		if err == nil {
			c.relabel(local, &Addr{ContextID: guestCID, Port: virtio.PortAny})
		}
		return c, err
	}
	return l, nil
}

// Dial connects to (contextID, port): from the guest, through the guest
// kernel (normally to the host, 2); from the host, to the guest's context
// ID with the hybrid protocol (DialVsock). Another context ID from the host
// is ENODEV, as vhost-vsock answers for a CID no VM has (Linux
// drivers/vhost/vsock.c, vhost_transport_send_pkt, v6.12).
func (v *Vsock) Dial(contextID, port uint32, cfg *VsockConfig) (*Conn, error) {
	return v.DialContext(context.Background(), contextID, port, cfg)
}

// DialContext is Dial with a context that can cut the connect short.
func (v *Vsock) DialContext(ctx context.Context, contextID, port uint32, _ *VsockConfig) (*Conn, error) {
	if v.g != nil {
		return v.g.dial(ctx, nil, uint64(contextID), port)
	}
	if uint64(contextID) != v.h.d.w.Config().GuestCID {
		return nil, opError("dial", "vsock", nil, &Addr{ContextID: contextID, Port: port}, syscall.ENODEV)
	}
	return v.h.DialVsock(ctx, port)
}
