package vhostuser

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// deviceUp tells host clients whether the device is there. The device
// comes and goes with the guest's rings, but the back-end's host socket
// stays bound for its whole life, like Firecracker's or
// vhost-device-vsock's listener: a client that connects while the rings
// are stopped waits, as in a listen backlog, and is joined to the device
// when the rings start again.
type deviceUp struct {
	mu    sync.Mutex
	up    chan struct{} // closed while the device runs
	done  chan struct{} // closed when the back-end closes
	close sync.Once
}

func newDeviceUp() *deviceUp {
	return &deviceUp{up: make(chan struct{}), done: make(chan struct{})}
}

func (d *deviceUp) started() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.up:
	default:
		close(d.up)
	}
}

func (d *deviceUp) stopped() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.up:
		d.up = make(chan struct{})
	default:
	}
}

// shut releases every waiting client: the back-end is closing.
func (d *deviceUp) shut() { d.close.Do(func() { close(d.done) }) }

func (d *deviceUp) wait() bool {
	d.mu.Lock()
	up := d.up
	d.mu.Unlock()
	select {
	case <-up:
		return true
	case <-d.done:
		return false
	}
}

// serveHost accepts real host clients on ln until it is closed and joins
// each to a new connection on the device's socket, byte for byte.
func (b *Backend) serveHost(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go b.joinHost(c)
	}
}

func (b *Backend) joinHost(c net.Conn) {
	for b.up.wait() {
		emuConn, err := b.lab.Host.Dial(b.lab.Host.UDSPath())
		if errors.Is(err, syscall.ECONNREFUSED) {
			continue // the rings stopped again in between: wait for the next start
		}
		if err != nil {
			break // the device's backlog is full, or the lab stopped
		}
		lab.Bridge(c, emuConn)
		return
	}
	c.Close()
}
