package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/hybrid"
	"github.com/vsocklab/vsocklab/virtio"
)

// The lab API for other modules' tests (issue 15): the host's hybrid dial,
// bound guest sockets, CloseRead, Accept deadlines. Each scenario also runs
// five times in TestSocketScenariosAreDeterministic.
var socketScenarios = []struct {
	name string
	run  func(t *testing.T, l *Lab)
}{
	{"DialVsock does CONNECT/OK and labels the conn with vsock addresses", func(t *testing.T, l *Lab) {
		guestAccept(t, l, 5000, func(c net.Conn) { io.Copy(c, c); c.Close() })
		c, err := l.Host.DialVsock(context.Background(), 5000)
		require.NoError(t, err)
		require.Equal(t, &Addr{ContextID: 2, Port: 1 << 30}, c.LocalAddr())
		require.Equal(t, &Addr{ContextID: 3, Port: 5000}, c.RemoteAddr())
		fmt.Fprintf(c, "hello\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "hello\n", line)
		require.NoError(t, c.Close())
	}},
	{"DialVsock to a port nobody listens on is refused", func(t *testing.T, l *Lab) {
		_, err := l.Host.DialVsock(context.Background(), 5000)
		require.ErrorIs(t, err, hybrid.ErrRefused)
		require.ErrorContains(t, err, "dial vsock vm(3):5000")
		_, err = l.Host.Vsock().Dial(7, 5000, nil)
		require.ErrorIs(t, err, syscall.ENODEV)
	}},
	{"a bound socket dials from its port", func(t *testing.T, l *Lab) {
		ln, err := l.Host.Vsock().Listen(7000, nil)
		require.NoError(t, err)
		s, err := l.Guest.Bind(4000)
		require.NoError(t, err)
		require.Equal(t, &Addr{ContextID: 3, Port: 4000}, s.Addr())
		require.NoError(t, s.SetVsockBufferSize(64*1024))
		require.ErrorIs(t, s.SetRcvlowat(64*1024+1), syscall.EINVAL)
		require.NoError(t, s.SetRcvlowat(3))
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		c, err := s.Dial(context.Background(), 2, 7000)
		require.NoError(t, err)
		require.Equal(t, &Addr{ContextID: 3, Port: 4000}, c.LocalAddr())
		require.Equal(t, &Addr{ContextID: 2, Port: 7000}, c.RemoteAddr())
		require.Equal(t, "host(2):7000", (<-accepted).LocalAddr().String())
		require.NoError(t, s.Close(), "Close after Dial leaves the conn alone")
		_, err = c.Write([]byte("still open"))
		require.NoError(t, err)
		require.Contains(t, logSoFar(t, l), "tx REQUEST 3:4000->2:7000 buf_alloc=65536")
		var lowat int
		require.NoError(t, l.Do(func(*emu.World) error { lowat = c.b.(*guestSock).s.Rcvlowat(); return nil }))
		require.Equal(t, 3, lowat, "the connection keeps the socket's SO_RCVLOWAT")
	}},
	{"a failed dial leaves the bound socket to its owner", func(t *testing.T, l *Lab) {
		s, err := l.Guest.Bind(4000)
		require.NoError(t, err)
		_, err = s.Dial(context.Background(), 2, 7000)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		_, err = l.Guest.Bind(4000)
		require.ErrorIs(t, err, syscall.EADDRINUSE, "the port is still the socket's")
		ln, err := l.Host.Vsock().Listen(7000, nil)
		require.NoError(t, err)
		go ln.Accept()
		c, err := s.Dial(context.Background(), 2, 7000)
		require.NoError(t, err, "a second connect from the same socket")
		require.Equal(t, uint32(4000), c.LocalAddr().(*Addr).Port)
	}},
	{"bound without listen: the host's CONNECT is reset, the port stays taken until Close", func(t *testing.T, l *Lab) {
		s, err := l.Guest.Bind(5000)
		require.NoError(t, err)
		_, err = l.Host.DialVsock(context.Background(), 5000)
		require.ErrorIs(t, err, hybrid.ErrRefused)
		_, err = l.Guest.Listen(5000)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		require.NoError(t, s.Close())
		require.ErrorIs(t, s.Close(), net.ErrClosed)
		ln, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		require.NoError(t, ln.Close())
	}},
	{"a bound socket listens; its connections inherit the buffer size", func(t *testing.T, l *Lab) {
		s, err := l.Guest.Bind(virtio.PortAny)
		require.NoError(t, err)
		port := s.Addr().(*Addr).Port
		require.GreaterOrEqual(t, port, uint32(1024))
		require.NoError(t, s.SetVsockBufferSize(32*1024))
		ln, err := s.Listen(16)
		require.NoError(t, err)
		_, err = s.Listen(16)
		require.ErrorContains(t, err, "already handed")
		go ln.Accept()
		c, err := l.Host.DialVsock(context.Background(), port)
		require.NoError(t, err)
		c.Close()
		require.Contains(t, logSoFar(t, l), fmt.Sprintf("tx RESPONSE 3:%d->2:1073741824 buf_alloc=32768", port))
	}},
	{"CloseRead: the guest's pending read ends with EOF and the peer hears SHUTDOWN(RCV)", func(t *testing.T, l *Lab) {
		got := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			go func() {
				_, err := c.Read(make([]byte, 1))
				got <- err
			}()
			time.Sleep(time.Second)
			require.NoError(t, c.(*Conn).CloseRead())
		})
		c, err := l.Host.DialVsock(context.Background(), 5000)
		require.NoError(t, err)
		require.ErrorIs(t, <-got, io.EOF)
		require.ErrorIs(t, c.CloseRead(), errors.ErrUnsupported, "a host Unix socket's SHUT_RD")
		require.Contains(t, logSoFar(t, l), "tx SHUTDOWN 3:5000->2:1073741824 flags=RCV")
	}},
	{"Accept's deadline is virtual time", func(t *testing.T, l *Lab) {
		ln, err := l.Guest.Vsock().Listen(5000, nil)
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, ln.SetDeadline(start.Add(3*time.Second)))
		_, err = ln.Accept()
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Equal(t, 3*time.Second, time.Since(start))
	}},
}

func TestSocketScenarios(t *testing.T) {
	for _, sc := range socketScenarios {
		t.Run(sc.name, func(t *testing.T) {
			Test(t, Config{}, sc.run)
		})
	}
}

func TestSocketScenariosAreDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("five runs of each scenario")
	}
	for _, sc := range socketScenarios {
		t.Run(sc.name, func(t *testing.T) {
			Deterministic(t, 5, Config{}, func(l *Lab) { sc.run(l.T(), l) })
		})
	}
}

// logSoFar is the event log up to now.
func logSoFar(t *testing.T, l *Lab) string {
	var log string
	require.NoError(t, l.Do(func(w *emu.World) error { log = w.Eng.Log.String(); return nil }))
	return log
}
