package hostd

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCollectorKeepsWhatKeepAllows: chunks append in order up to Keep,
// Bytes counts them all, and Stream and Inspect see the same stream.
func TestCollectorKeepsWhatKeepAllows(t *testing.T) {
	for _, tc := range []struct {
		keep, kept int
	}{{-1, 300_000}, {0, 0}, {100_000, 100_000}} {
		c := &Collector{Keep: tc.keep}
		s := c.stream("stdout")
		var all []byte
		for i := range 300 {
			chunk := bytes.Repeat([]byte{byte(i)}, 1000)
			all = append(all, chunk...)
			c.record(s, chunk)
		}
		st, ok := c.Stream("stdout")
		require.True(t, ok)
		require.Equal(t, uint64(len(all)), st.Bytes)
		require.Equal(t, string(all[:tc.kept]), string(st.Data), "keep %d", tc.keep)
		require.True(t, c.Inspect("stdout", func(in Stream) { require.Equal(t, st, in) }))
		require.False(t, c.Inspect("stderr", func(Stream) { t.Fatal("no such stream") }))
	}
}
