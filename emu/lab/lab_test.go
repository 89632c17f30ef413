package lab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hybridDial connects to guest port through the device's Unix socket, the
// way a Firecracker host does: "CONNECT <port>\n", then "OK <port>\n".
func hybridDial(t testing.TB, l *Lab, port uint32) (net.Conn, string) {
	c, err := l.Host.Dial(l.Host.UDSPath())
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "CONNECT %d\n", port)
	require.NoError(t, err)
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := c.Read(b)
		if err != nil {
			return c, "error: " + err.Error()
		}
		if n == 1 && b[0] == '\n' {
			break
		}
		line = append(line, b[:n]...)
	}
	return c, string(line)
}

func TestHostClientGetsItsLineEchoedByAGuestServer(t *testing.T) {
	res := Run(t, Config{}, func(l *Lab) {
		ln, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}()
		c, ok := hybridDial(t, l, 5000)
		require.Equal(t, "OK 1073741824", ok)
		_, err = c.Write([]byte("hello vsock\n"))
		require.NoError(t, err)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "hello vsock\n", line)
		require.NoError(t, c.Close())
		require.NoError(t, ln.Close())
	})
	require.Empty(t, res.Blocked)
	require.Contains(t, res.Log, "OK")
	t.Log("\n" + res.Log)
}

func TestBulkBothWays(t *testing.T) {
	const size = 1 << 20
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuv"), size/32)
	Run(t, Config{}, func(l *Lab) {
		ln, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			buf, _ := io.ReadAll(io.LimitReader(c, size))
			got <- buf
			c.Write(data)
			// Firecracker does not pass a guest half-close on to the host
			// stream (notes 2.2): only a full close ends it.
			c.Close()
		}()
		c, ok := hybridDial(t, l, 5000)
		require.True(t, strings.HasPrefix(ok, "OK "), ok)
		_, err = c.Write(data)
		require.NoError(t, err)
		require.Equal(t, data, <-got)
		back, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, len(data), len(back))
		require.Equal(t, data, back)
	})
}

// A dial made while the VM is suspended waits for the resume; cancelling
// its context meanwhile ends it with the context's error, as it does a
// parked dial, instead of letting it run after the resume.
func TestDialCancelledWhileSuspended(t *testing.T) {
	res := Run(t, Config{}, func(l *Lab) {
		require.NoError(t, l.Suspend())
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			_, err := l.Guest.DialContext(ctx, 2, 7000)
			got <- err
		}()
		time.Sleep(time.Second)
		cancel()
		time.Sleep(time.Second)
		select {
		case err := <-got:
			require.ErrorIs(t, err, context.Canceled)
		default:
			t.Fatal("the cancelled dial is still waiting for the resume")
		}
		require.NoError(t, l.Resume())
	})
	require.Empty(t, res.Leaked)
}
