package pattern

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStreamBytesAreAHashOfTheirOffset(t *testing.T) {
	p := make([]byte, 3*Period+17)
	Fill(p, 12345)
	require.NoError(t, Check(p, 12345))
	require.Equal(t, int64(-1), Mismatch(p, 12345))
	for i := 0; i < 1000; i++ {
		require.Equal(t, byte((uint32(12345+i)*0x9e3779b1)>>24), p[i])
		require.Equal(t, p[i], Byte(uint64(12345+i)))
	}
}

func TestChunksAtTheWrongOffsetAreCaught(t *testing.T) {
	p := make([]byte, 3*Period+17)
	Fill(p, 12345)
	// Whatever size a model moves, a chunk shifted by it differs.
	for _, shift := range []uint64{1, 4096, 32768, 65536, 212992} {
		require.Error(t, Check(p[:70000], 12345+shift), "shift %d", shift)
	}
	p[2*Period+5]++
	require.Equal(t, int64(2*Period+5), Mismatch(p, 12345))
	require.ErrorContains(t, Check(p, 12345), "offset 2109496")
}
