package lab

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/vsocklab/vsocklab/emu/uds"
)

// ReachRealSockets makes a connect to a path no listener of the world is
// bound at go to the real Unix socket at that path, bridged byte for byte:
// a device's guest-initiated connections then reach real listeners on
// <uds>_<port>, and where nothing listens the device sees the connect fail
// as Firecracker would. For labs that run in real time (Start, StartWorld);
// a bubble must not do real I/O.
func (h *Host) ReachRealSockets() { h.ReachRealSocketsNotify(nil) }

// ReachRealSocketsNotify is ReachRealSockets that also tells onConnect of
// every connect it passes on to a real socket: the path, and the error if
// the real connect failed (the device then refuses the guest, RST for
// Firecracker). onConnect runs on the lab's driver and must not block.
func (h *Host) ReachRealSocketsNotify(onConnect func(path string, err error)) {
	_ = h.d.exec(reqKey{op: opWorld}, func() {
		ns := h.d.w.Host
		own := h.UDSPath()
		ns.SetOutside(func(path string) (*uds.Conn, error) {
			if path == own {
				// The device's own socket, unbound while the device is
				// down: its real twin is the socket host clients come
				// in on, and dialing it would loop back here.
				return nil, syscall.ECONNREFUSED
			}
			// A Unix connect does not block: Go's sockets are non-blocking
			// and a full backlog fails with EAGAIN.
			real, err := net.Dial("unix", path)
			if onConnect != nil {
				onConnect(path, err)
			}
			if err != nil {
				var errno syscall.Errno
				if errors.As(err, &errno) {
					return nil, errno
				}
				return nil, syscall.ECONNREFUSED
			}
			client, server := uds.Pair(ns.BufferSize())
			go Bridge(real, h.conn(server, path, ""))
			return client, nil
		})
	})
}

type halfCloser interface{ CloseWrite() error }

// Bridge copies both ways between a and b; an end of stream on one side
// becomes a write-shutdown on the other, and both are closed when both
// directions end.
func Bridge(a, b net.Conn) {
	var wg sync.WaitGroup
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok && (err == nil || errors.Is(err, io.EOF)) {
			_ = hc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go copyHalf(a, b)
	go copyHalf(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
