package guest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSkbFragsFollowAllocSkbWithFrags(t *testing.T) {
	// Linux net/core/skbuff.c, alloc_skb_with_frags (v6.17): the order
	// starts at PAGE_ALLOC_COSTLY_ORDER and drops while PAGE_ALIGN(remaining)
	// < PAGE_SIZE << order, so the fragments shrink with the remainder.
	for _, tc := range []struct {
		dataLen uint32
		sizes   []uint32
		orders  []uint8
	}{
		{1, []uint32{1}, []uint8{0}},
		{4096, []uint32{4096}, []uint8{0}},
		{4097, []uint32{4097}, []uint8{1}},
		{32405, []uint32{32405}, []uint8{3}}, // PAGE_ALIGN is 32,768: one order-3 page
		{32768, []uint32{32768}, []uint8{3}},
		{32769, []uint32{32768, 1}, []uint8{3, 0}},
		{36864, []uint32{32768, 4096}, []uint8{3, 0}},
		{40000, []uint32{32768, 7232}, []uint8{3, 1}},
		{49152, []uint32{32768, 16384}, []uint8{3, 2}},
		{50000, []uint32{32768, 16384, 848}, []uint8{3, 2, 0}},
		{60000, []uint32{32768, 16384, 8192, 2656}, []uint8{3, 2, 1, 0}},
		{61440, []uint32{32768, 16384, 8192, 4096}, []uint8{3, 2, 1, 0}},
		{61441, []uint32{32768, 28673}, []uint8{3, 3}}, // PAGE_ALIGN(28,673) = 32,768
		{65535, []uint32{32768, 32767}, []uint8{3, 3}},
		{65536, []uint32{32768, 32768}, []uint8{3, 3}},
		{17 * 32768, fill(17, 32768), fillOrder(17, 3)}, // MAX_SKB_FRAGS of them
	} {
		t.Run(fmt.Sprint(tc.dataLen), func(t *testing.T) {
			l, ok := skbFrags(tc.dataLen, costlyOrder)
			require.True(t, ok)
			require.Equal(t, tc.sizes, l.size[:l.n])
			require.Equal(t, tc.orders, l.order[:l.n])
		})
	}
}

func TestSkbFragsRefusesWhatLinuxRefuses(t *testing.T) {
	// alloc_skb_with_frags: EMSGSIZE when data_len > MAX_SKB_FRAGS *
	// (PAGE_SIZE << order).
	_, ok := skbFrags(17*32768+1, costlyOrder)
	require.False(t, ok)
	_, ok = skbFrags(17*4096+1, 0)
	require.False(t, ok)
	l, ok := skbFrags(17*4096, 0)
	require.True(t, ok)
	require.Equal(t, 17, l.n)
}

func TestEveryVsockPacketFitsTheTXBuffers(t *testing.T) {
	// The header and at most four fragments for any payload up to
	// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE.
	most := 0
	for n := uint32(NonlinearThreshold + 1); n <= 64*1024; n++ {
		l, ok := skbFrags(n, costlyOrder)
		require.True(t, ok)
		most = max(most, l.n)
		var sum uint32
		for _, s := range l.size[:l.n] {
			sum += s
		}
		require.Equal(t, n, sum)
	}
	require.Equal(t, 4, most)
	require.LessOrEqual(t, most+1, maxTXBufs)
}

func fill(n int, v uint32) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func fillOrder(n int, v uint8) []uint8 {
	s := make([]uint8, n)
	for i := range s {
		s[i] = v
	}
	return s
}
