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

func TestWriteAdmissionIsLinuxs(t *testing.T) {
	// Linux net/unix/af_unix.c unix_stream_sendmsg (v6.12): skbs of at most
	// SKB_MAX_HEAD(0) + UNIX_SKB_FRAGS_SZ = 36,544 bytes (truesize 37,120),
	// each admitted while sk_wmem_alloc < sk_sndbuf (212,992): six fit, the
	// sixth taking the socket 9,728 bytes past its buffer.
	a, b := Pair(DefaultBuffer)
	aReady := 0
	a.OnReady = func() { aReady++ }
	require.Equal(t, 6*36544, a.Space())
	n, err := a.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	require.Equal(t, 6*36544, n, "a partial write, at an skb boundary")
	require.Equal(t, 6*37120, a.wmem)
	require.Zero(t, a.Space())
	_, err = a.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EAGAIN)

	// Reading part of an skb frees nothing; its last byte frees all of it.
	_, err = b.Read(make([]byte, 36543))
	require.NoError(t, err)
	require.Zero(t, aReady)
	_, err = a.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EAGAIN)
	_, err = b.Read(make([]byte, 1))
	require.NoError(t, err)
	require.Equal(t, 1, aReady, "consuming an skb makes the writer writable again")
	n, err = a.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	require.Equal(t, 36544, n, "one more skb: 5 * 37,120 < 212,992")
}

func TestSmallWritesFillTheBufferWithOverhead(t *testing.T) {
	// A 100-byte skb costs 768 bytes of truesize (a 512-byte kmalloc head
	// and the sk_buff): 278 of them fill 212,992 bytes of send buffer.
	a, _ := Pair(DefaultBuffer)
	writes := 0
	for {
		_, err := a.Write(make([]byte, 100))
		if err != nil {
			require.ErrorIs(t, err, syscall.EAGAIN)
			break
		}
		writes++
	}
	require.Equal(t, 278, writes)
}

func TestSkbTruesize(t *testing.T) {
	for _, tc := range []struct{ size, truesize int }{
		{0, 768},
		{100, 768},
		{3776, 4096 + 256},
		{3777, 512 + 256 + 4096}, // data_len = min(3777, PAGE_ALIGN(1)): all of it in one page, an empty head
		{36544, 4096 + 256 + 32768},
	} {
		require.Equal(t, tc.truesize, skbTruesize(tc.size), tc.size)
	}
	a, _ := Pair(1)
	require.Equal(t, MinBuffer, a.sndbuf, "SOCK_MIN_SNDBUF")
	require.Equal(t, MinBuffer/2-64, a.skbSize(1<<20), "half the buffer less 64")
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
