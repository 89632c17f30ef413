package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// defaultLineTimeout is how long serve waits for a new client's first
// bytes. Firecracker waits forever: it registers an accepted host stream
// for EPOLLIN and reads its CONNECT line only when data arrives (FC@v1.14.0
// src/vmm/src/devices/virtio/vsock/unix/muxer.rs, VsockMuxer::handle_event,
// EpollListener::LocalStream), and its kill queue (muxer_killq.rs) expires
// only connections already in the connection map, after a shutdown
// (CONN_SHUTDOWN_TIMEOUT_MS). A host stream that never writes is held until
// it closes, and every such stream costs Firecracker a descriptor. serve
// bounds that wait instead, so that idle sockets cannot pile up to its
// descriptor limit; real hosts (hostd, socat) write the line right after
// connecting, far within the bound.
const defaultLineTimeout = 10 * time.Second

// defaultMaxPending bounds the clients serve holds between accept and the
// hand-off to the device: about half of the usual descriptor limit of
// 1,024, leaving the other half to connected clients. Firecracker has no
// such bound (its pending host streams count against nothing, not even
// MAX_CONNECTIONS, which counts the connection map only).
const defaultMaxPending = 512

// peekSize is how much of a new client's first bytes serve looks at: at
// least Firecracker's 32-byte CONNECT line buffer, and whatever follows the
// line in the same write.
const peekSize = 4096

// server takes real clients on a Unix socket and hands each to the emulated
// device's socket, where the device reads the hybrid vsock CONNECT line as
// Firecracker does.
type server struct {
	lab         *lab.Lab
	lineTimeout time.Duration
	maxPending  int
	logf        func(format string, args ...any)
}

// serve accepts clients until ctx ends (then it returns nil) or accept
// fails for good (then it returns the error). It never gives up on a
// temporary accept error such as EMFILE: like net/http's Server.Serve (Go
// 1.26 src/net/http/server.go, the tempDelay loop) it sleeps 5 ms, doubling
// up to 1 s, and retries; it logs one line per episode of errors, at
// its first error, not every retry.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	pending := make(chan struct{}, s.maxPending)
	var delay time.Duration
	for {
		select {
		case pending <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			<-pending
			if ctx.Err() != nil {
				return nil
			}
			// net/http's own test: Temporary is deprecated for its vague
			// meaning elsewhere, but on accept errors it is what Serve uses
			// (EMFILE, ENFILE, ECONNABORTED, EAGAIN, EINTR).
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Temporary() {
				return err
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
				s.logf("accept: %v; retrying every 5 ms, doubling up to 1 s, until an accept succeeds", err)
			} else {
				delay = min(2*delay, time.Second)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		go func() {
			emuConn, ok := s.handOff(ctx, c)
			<-pending
			if ok {
				lab.Bridge(c, emuConn)
			}
		}()
	}
}

// handOff waits for the client's first bytes (at most lineTimeout), then
// connects to the device's socket and passes them on, and reports whether
// the client is now joined to the device. The bytes are only peeked until
// the device has them: if the device turns the connection away at once (its
// connection limit, Firecracker's "connection limit reached; refusing new
// host connection"), the client is closed with its line unread, and Linux
// tells it ECONNRESET, as a Firecracker that accepts and drops a host
// stream whose line is already queued (af_unix.c unix_release_sock: a
// socket closed with unread data resets its peer).
func (s *server) handOff(ctx context.Context, c net.Conn) (net.Conn, bool) {
	deadline := time.Now().Add(s.lineTimeout)
	_ = c.SetReadDeadline(deadline)
	first, err := peek(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil { // no line in time, or a broken client: nothing for the device
		c.Close()
		return nil, false
	}
	emuConn, err := s.dialDevice(ctx, deadline)
	if err != nil {
		c.Close()
		return nil, false
	}
	if len(first) > 0 {
		if _, err := emuConn.Write(first); err != nil {
			emuConn.Close()
			c.Close()
			return nil, false
		}
		// The peeked bytes are the device's now: take them off the client.
		if _, err := io.ReadFull(c, first); err != nil {
			emuConn.Close()
			c.Close()
			return nil, false
		}
	}
	return emuConn, true
}

// dialDevice connects to the device's socket. Its listen queue holds 129
// connections (std's UnixListener backlog of 128, plus one as Linux
// admits); a burst fills it faster than the device's next pass empties it,
// and a non-blocking connect to a full queue fails with EAGAIN, which here
// means "wait", not "refused": a blocking connect would sleep until the
// device accepts (af_unix.c unix_stream_connect, unix_wait_for_peer).
func (s *server) dialDevice(ctx context.Context, deadline time.Time) (net.Conn, error) {
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		c, err := s.lab.Host.Dial(s.lab.Host.UDSPath())
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return c, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// peek waits for the client's first bytes and returns them without taking
// them off the socket; an empty result means the client shut down its
// writing side without a word.
func peek(c net.Conn) ([]byte, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, peekSize)
	var n int
	var perr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(perr, syscall.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, os.NewSyscallError("recvfrom", perr)
	}
	return buf[:max(n, 0)], nil
}
