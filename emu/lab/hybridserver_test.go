package lab

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A HybridServer joins a real client to the device and reports the
// device's answer; behind a gate that is down a client waits, and a closed
// gate drops it with an error.
func TestHybridServerJoinsWaitsAndReports(t *testing.T) {
	l, err := Start(Config{})
	require.NoError(t, err)
	defer l.Stop()
	gln, err := l.Guest.Listen(7000)
	require.NoError(t, err)
	defer gln.Close()
	go func() {
		for {
			c, err := gln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()

	var mu sync.Mutex
	var got []HybridClient
	gate := NewDeviceGate()
	gate.Up()
	srv := &HybridServer{Host: l.Host, WaitDevice: gate.Wait, OnClient: func(c HybridClient) {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}}
	uds := filepath.Join(t.TempDir(), "h.sock")
	ln, err := net.Listen("unix", uds)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	c, err := net.Dial("unix", uds)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("CONNECT 7000\nping"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "OK 1073741824\n", line)
	echo := make([]byte, 4)
	_, err = io.ReadFull(r, echo)
	require.NoError(t, err)
	require.Equal(t, "ping", string(echo), "bytes after the line in the same write reach the guest")

	gate.Down()
	c2, err := net.Dial("unix", uds)
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.Write([]byte("CONNECT 7000\n"))
	require.NoError(t, err)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "waits while the device is down")
	gate.Close()
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c2.Read(make([]byte, 1))
	require.Error(t, err)
	require.False(t, os.IsTimeout(err), "closed when the gate closes")

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, HybridClient{Line: "CONNECT 7000", Reply: "OK 1073741824"}, got[0])
	require.Equal(t, "CONNECT 7000", got[1].Line)
	require.Error(t, got[1].Err)
	require.Equal(t, HybridStats{Accepted: 2, Answered: 1, Dropped: 1}, srv.Stats())
}
