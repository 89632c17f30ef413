package device

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// sink takes at most room bytes per write, or fails with err.
type sink struct {
	got  []byte
	room []int
	err  error
}

func (s *sink) write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	if len(s.room) > 0 {
		n = min(n, s.room[0])
		s.room = s.room[1:]
	}
	s.got = append(s.got, p[:n]...)
	return n, nil
}

// FC@v1.14.0 csm/txbuf.rs test_push_nowrap, test_push_wrap, test_push_error,
// test_incomplete_flush, test_flush_error (docs/sources.md#fc-txbuf).
func TestTxBuf(t *testing.T) {
	t.Run("push and flush without wrap", func(t *testing.T) {
		var b txBuf
		require.False(t, b.allocated(), "allocated on first push")
		require.NoError(t, b.push([]byte("abc")))
		require.True(t, b.allocated())
		s := &sink{}
		n, err := b.flushTo(s.write)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Equal(t, "abc", string(s.got))
		require.True(t, b.empty())
	})
	t.Run("push wraps around the end", func(t *testing.T) {
		var b txBuf
		require.NoError(t, b.push(make([]byte, txBufSize-2)))
		_, err := b.flushTo((&sink{}).write)
		require.NoError(t, err)
		require.NoError(t, b.push([]byte("wrap")))
		s := &sink{}
		n, err := b.flushTo(s.write)
		require.NoError(t, err)
		require.Equal(t, 4, n, "both parts in one flush")
		require.Equal(t, "wrap", string(s.got))
	})
	t.Run("push that does not fit stores nothing", func(t *testing.T) {
		var b txBuf
		require.NoError(t, b.push(make([]byte, txBufSize-1)))
		require.ErrorIs(t, b.push([]byte{1, 2}), errTxBufFull)
		require.Equal(t, txBufSize-1, b.len())
		require.NoError(t, b.push([]byte{1}))
	})
	t.Run("incomplete flush keeps the rest", func(t *testing.T) {
		var b txBuf
		require.NoError(t, b.push([]byte("1234")))
		s := &sink{room: []int{2}}
		n, err := b.flushTo(s.write)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, 2, b.len())
		n, err = b.flushTo(s.write)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, "1234", string(s.got))
	})
	t.Run("first write error surfaces, wrapped write error is swallowed", func(t *testing.T) {
		var b txBuf
		require.NoError(t, b.push([]byte("x")))
		_, err := b.flushTo((&sink{err: syscall.EPIPE}).write)
		require.ErrorIs(t, err, syscall.EPIPE)

		var w txBuf
		require.NoError(t, w.push(make([]byte, txBufSize-2)))
		_, _ = w.flushTo((&sink{}).write)
		require.NoError(t, w.push([]byte("wrap")))
		calls := 0
		n, err := w.flushTo(func(p []byte) (int, error) {
			calls++
			if calls == 2 {
				return 0, syscall.EPIPE
			}
			return len(p), nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})
}

// FC@v1.14.0 unix/muxer.rs allocate_local_port (docs/sources.md#fc-port-allocation): 2^30 first,
// ports in the set skipped, 2^31-1 wraps to 2^30; a freed port is reused
// only when the counter comes round again.
func TestPortAllocatorFirecracker(t *testing.T) {
	a := newPortAllocator(PortsFixedStart, nil)
	p, ok := a.alloc()
	require.True(t, ok)
	require.Equal(t, uint32(1<<30), p)
	a.used[1<<30+1] = struct{}{}
	p, _ = a.alloc()
	require.Equal(t, uint32(1<<30+2), p, "skips a port in use")
	a.free(1 << 30)
	a.last = 1<<31 - 2
	p, _ = a.alloc()
	require.Equal(t, uint32(1<<31-1), p)
	p, _ = a.alloc()
	require.Equal(t, uint32(1<<30), p, "wraps to 2^30")

	r := newPortAllocator(PortsRandomStart, rand.New(rand.NewPCG(1, 1)))
	require.GreaterOrEqual(t, r.last, uint32(1<<30))
	require.Less(t, r.last, uint32(1<<31))
}

// VD@d7ec5e4 vhu_vsock_thread.rs allocate_local_port: from 0 up, skipping
// used ports, wrapping, and failing after a full turn.
func TestPortAllocatorFromZero(t *testing.T) {
	a := newPortAllocator(PortsFromZero, nil)
	a.reserve(1)
	var got []uint32
	for range 3 {
		p, ok := a.alloc()
		require.True(t, ok)
		got = append(got, p)
	}
	require.Equal(t, []uint32{0, 2, 3}, got)
	a.last = 0xffffffff
	p, _ := a.alloc()
	require.Equal(t, uint32(0xffffffff), p)
	p, _ = a.alloc()
	require.Equal(t, uint32(4), p, "wrapped past the used 0..3")
}

// Rust's <u32 as FromStr> (docs/sources.md#fc-connect-line: '+' and leading zeros accepted, no
// '-', at most 4294967295).
func TestParseRustU32(t *testing.T) {
	for s, want := range map[string]int64{
		"0": 0, "52": 52, "+52": 52, "0052": 52, "+0": 0, "4294967295": 4294967295,
		"4294967296": -1, "": -1, "+": -1, "-1": -1, "-0": -1, "++1": -1, "1_000": -1, "٣": -1, " 1": -1,
	} {
		got, ok := parseRustU32(s)
		if want < 0 {
			require.False(t, ok, "%q", s)
			continue
		}
		require.True(t, ok, "%q", s)
		require.Equal(t, uint32(want), got, "%q", s)
	}
}

func TestParseConnectLineWhitespace(t *testing.T) {
	for _, line := range []string{"CONNECT 52\n", "\u00a0connect\u300052\u2028", "CONNECT\v52\f", "connect 52 53 54\n"} {
		p, err := parseConnectLine([]byte(line))
		require.NoError(t, err, "%q", line)
		require.Equal(t, uint32(52), p)
	}
	_, err := parseConnectLine(bytes.Repeat([]byte{0xc3}, 3))
	require.ErrorIs(t, err, errInvalidPortRequest)
}
