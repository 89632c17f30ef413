package uds

import (
	"io"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConnectAcceptAndData(t *testing.T) {
	ns := NewNamespace()
	_, err := ns.Connect("/v.sock")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	l, err := ns.Listen("/v.sock", 1)
	require.NoError(t, err)
	_, err = ns.Listen("/v.sock", 1)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	ready := 0
	l.OnReady = func() { ready++ }
	_, err = l.Accept()
	require.ErrorIs(t, err, syscall.EAGAIN)

	c, err := ns.Connect("/v.sock")
	require.NoError(t, err)
	require.Equal(t, 1, ready)
	second, err := ns.Connect("/v.sock")
	require.NoError(t, err, "af_unix.c unix_recvq_full: a backlog of 1 admits two")
	_, err = ns.Connect("/v.sock")
	require.ErrorIs(t, err, syscall.EAGAIN, "backlog of 1 is full at two")
	second.Close()
	s, err := l.Accept()
	require.NoError(t, err)

	sReady := 0
	s.OnReady = func() { sReady++ }
	n, err := c.Write([]byte("CONNECT 52\n"))
	require.NoError(t, err)
	require.Equal(t, 11, n)
	require.Equal(t, 1, sReady)
	require.Equal(t, 11, s.Buffered())
	buf := make([]byte, 4)
	n, err = s.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "CONN", string(buf[:n]))
	rest := make([]byte, 100)
	n, err = s.Read(rest)
	require.NoError(t, err)
	require.Equal(t, "ECT 52\n", string(rest[:n]))
	_, err = s.Read(rest)
	require.ErrorIs(t, err, syscall.EAGAIN)
}

func TestBufferLimitAndReadiness(t *testing.T) {
	a, b := Pair(10)
	aReady := 0
	a.OnReady = func() { aReady++ }
	n, err := a.Write(make([]byte, 25))
	require.NoError(t, err)
	require.Equal(t, 10, n)
	require.Zero(t, a.Space())
	_, err = a.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EAGAIN)
	n, err = b.Read(make([]byte, 4))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Equal(t, 1, aReady, "reading makes the writer writable again")
	require.Equal(t, 4, a.Space())
}

func TestShutdownAndClose(t *testing.T) {
	a, b := Pair(DefaultBuffer)
	_, err := a.Write([]byte("tail"))
	require.NoError(t, err)
	require.NoError(t, a.CloseWrite())
	_, err = a.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE)
	buf := make([]byte, 10)
	n, err := b.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "tail", string(buf[:n]))
	_, err = b.Read(buf)
	require.ErrorIs(t, err, io.EOF)
	// The other direction still works after a half close.
	_, err = b.Write([]byte("back"))
	require.NoError(t, err)
	n, err = a.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "back", string(buf[:n]))

	b.Close()
	_, err = a.Write([]byte("x"))
	require.ErrorIs(t, err, syscall.EPIPE)
	_, err = b.Read(buf)
	require.ErrorIs(t, err, syscall.EBADF)
}

func TestCloseWithUnreadDataResetsPeer(t *testing.T) {
	// Linux unix_release_sock: closing with unread data sets ECONNRESET on
	// the peer.
	a, b := Pair(DefaultBuffer)
	_, err := a.Write([]byte("unread"))
	require.NoError(t, err)
	b.Close()
	_, err = a.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = a.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
}

func TestListenerCloseResetsQueued(t *testing.T) {
	ns := NewNamespace()
	l, err := ns.Listen("/p", 4)
	require.NoError(t, err)
	c, err := ns.Connect("/p")
	require.NoError(t, err)
	l.Close()
	require.False(t, ns.Lookup("/p"))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = ns.Connect("/p")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestQueueCompacts(t *testing.T) {
	var q queue
	total := 0
	for i := 0; i < 1000; i++ {
		q.write(make([]byte, 100))
		total += 100
		total -= q.read(make([]byte, 90))
	}
	require.Equal(t, total, q.len())
	require.Less(t, cap(q.buf), 64*1024, "the buffer follows what it holds")
}
