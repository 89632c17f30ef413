package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/programs"
)

// startServer runs serve's host side in this process on a real Unix
// socket, over a real-time lab whose guest runs init with an idle workload;
// the world's device socket has the real path, as in serve. Its concise log
// goes to the test's log and to the returned recorder.
func startServer(t *testing.T, cfg emu.Config, lineTimeout time.Duration, maxPending int) (uds string, s *serveSession, log *lines) {
	t.Helper()
	uds = filepath.Join(t.TempDir(), "s.sock")
	cfg.UDSPath = uds
	l, err := lab.Start(lab.Config{Config: cfg})
	require.NoError(t, err)
	log = &lines{t: t}
	s = newServeSession(l, log.logf)
	s.srv.LineTimeout, s.srv.MaxPending = lineTimeout, maxPending
	programs.StartInit(l, guestinit.Options{APIPort: 10000, LogPort: 10001}, []string{"idle"})
	// Clients start once init's API listens, so that the first CONNECT is
	// not reset by a guest that has no listener yet.
	require.Eventually(t, func() bool {
		listening := false
		_ = l.Do(func(w *emu.World) error {
			for _, sk := range w.Guest.Sockets() {
				listening = listening || sk.State() == guest.StateListen && sk.Local().Port == 10000
			}
			return nil
		})
		return listening
	}, 10*time.Second, time.Millisecond)
	ln, err := net.Listen("unix", uds)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		s.gate.Close()
		l.Stop()
	})
	return uds, s, log
}

// answer sends line on a new client and returns the first line back, or
// how the connection ended.
func answer(c net.Conn, line string) string {
	if _, err := io.WriteString(c, line); err != nil {
		return "write: " + err.Error()
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	switch {
	case err == nil:
		return strings.TrimSuffix(got, "\n")
	case errors.Is(err, io.EOF) && got == "":
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "closed" // the device dropped it with its line unread
	}
	return "error: " + err.Error()
}

// TestServeBurstGetsExactlyTheDeviceLimit releases 300 clients' CONNECT
// lines at once against a device limited to 40 connections: exactly 40 get
// their OK, the rest are closed, as Firecracker closes a host stream beyond
// MAX_CONNECTIONS (FC@v1.14.0 unix/muxer.rs handle_event HostSock: "connection
// limit reached; refusing new host connection", and add_connection's
// TooManyConnections). Before, the hand-off's non-blocking dial into the
// device's listen queue of 129 closed clients the device would have taken.
func TestServeBurstGetsExactlyTheDeviceLimit(t *testing.T) {
	const clients, limit = 300, 40
	uds, s, log := startServer(t, emu.Config{MaxConnections: limit}, 10*time.Second, 64)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("unix", uds)
		require.NoError(t, err)
		conns[i] = c
		defer c.Close()
	}
	got := make([]string, clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { got[i] = answer(c, "CONNECT 10000\n") })
	}
	wg.Wait()
	count := map[string]int{}
	for _, g := range got {
		if strings.HasPrefix(g, "OK 10737") {
			g = "OK"
		}
		count[g]++
	}
	require.Equal(t, map[string]int{"OK": limit, "closed": clients - limit}, count)
	// One line per client in the concise log, naming the real socket.
	require.Eventually(t, func() bool { return len(log.with("host client on "+uds)) == clients }, 10*time.Second, 10*time.Millisecond)
	require.Len(t, log.with(`"CONNECT 10000": OK 10737`), limit)
	st := s.srv.Stats()
	require.Equal(t, lab.HybridStats{Accepted: clients, Answered: limit, Refused: clients - limit}, st)
}

// TestServeClosesSilentClients: a client that sends nothing is closed after
// the line timeout, one that sends its line meanwhile is served, and the
// silent ones held at most maxPending at a time.
func TestServeClosesSilentClients(t *testing.T) {
	uds, _, log := startServer(t, emu.Config{}, 300*time.Millisecond, 4)
	var silent []net.Conn
	for range 6 {
		c, err := net.Dial("unix", uds)
		require.NoError(t, err)
		defer c.Close()
		silent = append(silent, c)
	}
	start := time.Now()
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF)
	}
	// Four at once, then the two that waited in the listen queue.
	require.GreaterOrEqual(t, time.Since(start), 2*300*time.Millisecond)

	c, err := net.Dial("unix", uds)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "OK 1073741824", answer(c, "CONNECT 10000\n"))
	require.Eventually(t, func() bool { return len(log.with("dropped: "+lab.ErrNoLine.Error())) == 6 }, 10*time.Second, 10*time.Millisecond)
}

// flakyListener fails its accepts with errs, in order, then blocks.
type flakyListener struct {
	net.Listener
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if len(f.errs) == 0 {
		select {}
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return nil, err
}

func (f *flakyListener) Close() error { return nil }

// TestServeAcceptErrors: temporary accept errors (EMFILE) are retried with
// one log line per episode; any other error ends serve with that error.
func TestServeAcceptErrors(t *testing.T) {
	l, err := lab.Start(lab.Config{})
	require.NoError(t, err)
	defer l.Stop()
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	fatal := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EBADF)}
	var logged []string
	srv := &lab.HybridServer{Host: l.Host, LineTimeout: time.Second, MaxPending: 4, Logf: func(f string, a ...any) {
		logged = append(logged, fmt.Sprintf(f, a...))
	}}
	start := time.Now()
	err = srv.Serve(context.Background(), &flakyListener{errs: []error{emfile, emfile, emfile, emfile, fatal}})
	require.ErrorIs(t, err, syscall.EBADF)
	require.GreaterOrEqual(t, time.Since(start), (5+10+20+40)*time.Millisecond, "5 ms doubling")
	require.Len(t, logged, 1)
	require.Contains(t, logged[0], "too many open files")
}

// TestServeGuestConnectRefusedWithoutListener: a guest connect to a host
// port nobody listens on is refused at connect, as Firecracker answers RST
// when UnixStream::connect(<uds>_<port>) fails (FC@v1.14.0 unix/muxer.rs,
// VsockMuxer::handle_peer_request_pkt); once a real listener is there, the
// same connect reaches it. Both are one line of the log, with the real path.
func TestServeGuestConnectRefusedWithoutListener(t *testing.T) {
	uds, s, log := startServer(t, emu.Config{}, 10*time.Second, 4)
	l := s.l
	_, err := l.Guest.Dial(2, 5000)
	require.ErrorIs(t, err, syscall.ECONNRESET, "refused at connect, not accepted and reset later")
	require.Len(t, log.with("guest connect to "+uds+"_5000: refused, the device answers RST"), 1)

	ln, err := net.Listen("unix", uds+"_5000")
	require.NoError(t, err)
	defer ln.Close()
	c, err := l.Guest.Dial(2, 5000)
	require.NoError(t, err)
	defer c.Close()
	real, err := ln.Accept()
	require.NoError(t, err)
	defer real.Close()
	_, err = c.Write([]byte("to the host"))
	require.NoError(t, err)
	got := make([]byte, 11)
	require.NoError(t, real.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(real, got)
	require.NoError(t, err)
	require.Equal(t, "to the host", string(got))
	require.Len(t, log.with("guest connect to "+uds+"_5000: connected"), 1)
	sum := s.summary()
	require.Equal(t, uint64(2), sum.GuestConnects)
	require.Equal(t, uint64(1), sum.GuestFails)
	require.Equal(t, uint64(1), sum.Resets[1], "the RST of the refused connect, to the guest")
}

// TestServeSuspendResume: a suspend closes host connections as a snapshot
// does; a client arriving while suspended waits and is answered after the
// resume, by the restored device whose fixed-start ports begin again.
func TestServeSuspendResume(t *testing.T) {
	uds, s, log := startServer(t, emu.Config{}, 10*time.Second, 4)
	c1, err := net.Dial("unix", uds)
	require.NoError(t, err)
	defer c1.Close()
	require.Equal(t, "OK 1073741824", answer(c1, "CONNECT 10000\n"))

	s.suspend()
	require.NoError(t, c1.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c1.Read(make([]byte, 1))
	require.Error(t, err, "closed with the device")
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "closed with the device")

	c2, err := net.Dial("unix", uds)
	require.NoError(t, err)
	defer c2.Close()
	_, err = io.WriteString(c2, "CONNECT 10000\n")
	require.NoError(t, err)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "waits while suspended")

	s.suspend() // a second suspend is refused, with a message
	require.Len(t, log.with("SIGUSR1: suspend: already suspended"), 1)
	s.resume()
	// Released at the resume, c2 races the guest's handling of the
	// transport reset, as a client connecting right at a real restore does:
	// it is answered by the restored device, whose fixed-start ports begin
	// again at 2^30, or reset with the guest's sockets. A later client is
	// answered.
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(30*time.Second)))
	line, err := bufio.NewReader(c2).ReadString('\n')
	if err == nil {
		require.Equal(t, "OK 1073741824\n", line)
	} else {
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
		t.Logf("c2, released at the resume, was reset with the guest's sockets: %v", err)
	}
	require.Eventually(t, func() bool {
		c3, err := net.Dial("unix", uds)
		require.NoError(t, err)
		defer c3.Close()
		return strings.HasPrefix(answer(c3, "CONNECT 10000\n"), "OK 10737418")
	}, 30*time.Second, 10*time.Millisecond)
	s.resume()
	require.Len(t, log.with("SIGUSR2: resume: not suspended"), 1)
	require.Len(t, log.with("suspended (snapshot)"), 1)
	require.Len(t, log.with("resumed (restore, cycle 1)"), 1)
	require.Equal(t, 1, s.summary().Cycles)
}
