package guest

// The page geometry of the modelled guest: x86_64 with 4 KiB pages.
const (
	pageSize = 4096
	// costlyOrder is PAGE_ALLOC_COSTLY_ORDER (include/linux/mmzone.h), the
	// page order a vsock skb's fragments start from.
	costlyOrder = 3
	// maxSkbFrags is MAX_SKB_FRAGS with the default CONFIG_MAX_SKB_FRAGS=17
	// (include/linux/skbuff.h, since v6.2).
	maxSkbFrags = 17
)

// NonlinearThreshold is the largest payload a TXNonlinear kernel still puts
// in a linear skb. Linux include/linux/virtio_vsock.h,
// virtio_vsock_alloc_skb (6693731487a8, v6.17): a size (header included)
// up to SKB_WITH_OVERHEAD(PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER) is linear;
// that is 32,768 - 320 (skb_shared_info on x86_64) - 44 = 32,404 payload
// bytes.
const NonlinearThreshold = 32404

// maxTXBufs bounds the descriptors of one packet: the header and up to
// MAX_SKB_FRAGS fragments (Linux net/vmw_vsock/virtio_transport.c,
// virtio_transport_send_skb, sgs[MAX_SKB_FRAGS + 1], v6.17).
const maxTXBufs = maxSkbFrags + 1

// fragLayout is the page fragments of one nonlinear skb.
type fragLayout struct {
	n     int
	size  [maxSkbFrags]uint32 // bytes used in each fragment
	order [maxSkbFrags]uint8  // the page order each fragment was taken from
}

// skbFrags lays dataLen bytes out in page fragments exactly as Linux
// net/core/skbuff.c, alloc_skb_with_frags (v6.17; the order lowering is
// 09c2c90705bb, v6.6) does when every page allocation succeeds: start at
// order, lower it while PAGE_ALIGN(remaining) < PAGE_SIZE << order (never
// raise it again), and take min(remaining, PAGE_SIZE << order) per
// fragment. It returns false where Linux fails: dataLen above
// MAX_SKB_FRAGS * (PAGE_SIZE << order) (EMSGSIZE) or a fragment past
// MAX_SKB_FRAGS (ENOBUFS; "nr_frags == MAX_SKB_FRAGS", the bound since
// Jason Baron's 2025 fix, MAX_SKB_FRAGS - 1 before it).
//
// virtio_vsock_alloc_skb calls it with order PAGE_ALLOC_COSTLY_ORDER and at
// most 64 KiB, so a vsock skb never has more than four fragments (e.g.
// 61,440 = 32,768 + 16,384 + 8,192 + 4,096) and neither bound is reached
// there: the off-by-one between kernel versions is invisible to vsock on
// 4 KiB pages.
func skbFrags(dataLen uint32, order int) (fragLayout, bool) {
	var l fragLayout
	if uint64(dataLen) > maxSkbFrags*(uint64(pageSize)<<order) {
		return l, false
	}
	for dataLen > 0 {
		if l.n == maxSkbFrags {
			return l, false
		}
		for order > 0 && pageAlign(dataLen) < uint64(pageSize)<<order {
			order--
		}
		chunk := uint32(min(uint64(dataLen), uint64(pageSize)<<order))
		l.size[l.n], l.order[l.n] = chunk, uint8(order)
		l.n++
		dataLen -= chunk
	}
	return l, true
}

func pageAlign(n uint32) uint64 { return (uint64(n) + pageSize - 1) &^ (pageSize - 1) }
