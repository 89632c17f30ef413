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
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/programs"
)

// startServer runs a server in this process on a real Unix socket, over a
// real-time lab whose guest runs init with an idle workload.
func startServer(t *testing.T, cfg emu.Config, lineTimeout time.Duration, maxPending int) (uds string) {
	t.Helper()
	l, err := lab.Start(lab.Config{Config: cfg})
	require.NoError(t, err)
	programs.StartInit(l, guestinit.Options{APIPort: 10000, LogPort: 10001}, []string{"idle"})
	uds = filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", uds)
	require.NoError(t, err)
	srv := &server{lab: l, lineTimeout: lineTimeout, maxPending: maxPending, logf: t.Logf}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		l.Stop()
	})
	return uds
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
	uds := startServer(t, emu.Config{MaxConnections: limit}, 10*time.Second, 64)
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
}

// TestServeClosesSilentClients: a client that sends nothing is closed after
// the line timeout, one that sends its line meanwhile is served, and the
// silent ones held at most maxPending at a time.
func TestServeClosesSilentClients(t *testing.T) {
	uds := startServer(t, emu.Config{}, 300*time.Millisecond, 4)
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
	srv := &server{lab: l, lineTimeout: time.Second, maxPending: 4, logf: func(f string, a ...any) {
		logged = append(logged, fmt.Sprintf(f, a...))
	}}
	start := time.Now()
	err = srv.serve(context.Background(), &flakyListener{errs: []error{emfile, emfile, emfile, emfile, fatal}})
	require.ErrorIs(t, err, syscall.EBADF)
	require.GreaterOrEqual(t, time.Since(start), (5+10+20+40)*time.Millisecond, "5 ms doubling")
	require.Len(t, logged, 1)
	require.Contains(t, logged[0], "too many open files")
}
