package guest

import "math/bits"

// arena hands out guest-physical buffers for TX packets from a range of
// guest memory. Sizes are rounded up to a power of two between minClass and
// maxClass; freed buffers go to a free list per class and are reused first,
// so the arena's footprint follows the peak number of packets in flight.
// It stands in for the kernel's slab and page allocators: the device only
// sees addresses and lengths, and the exact placement is irrelevant to it
// unless a profile says otherwise.
type arena struct {
	base, size uint64
	next       uint64     // bump pointer, relative to base
	free       [][]uint64 // free[class] = addresses
}

const (
	minClassShift = 6  // 64 bytes
	maxClassShift = 17 // 128 KiB: a 64 KiB payload with its header
)

func newArena(base, size uint64) *arena {
	return &arena{base: base, size: size, free: make([][]uint64, maxClassShift+1)}
}

func classOf(n uint32) int {
	if n <= 1<<minClassShift {
		return minClassShift
	}
	return bits.Len32(n - 1)
}

// alloc returns the address of a buffer of at least n bytes, or false when
// the arena is exhausted.
func (a *arena) alloc(n uint32) (uint64, bool) {
	c := classOf(n)
	if c > maxClassShift {
		return 0, false
	}
	if fl := a.free[c]; len(fl) > 0 {
		addr := fl[len(fl)-1]
		a.free[c] = fl[:len(fl)-1]
		return addr, true
	}
	sz := uint64(1) << c
	start := (a.next + sz - 1) &^ (sz - 1) // natural alignment, as slab objects and pages have
	if start+sz > a.size {
		return 0, false
	}
	a.next = start + sz
	return a.base + start, true
}

// release returns a buffer obtained from alloc(n).
func (a *arena) release(addr uint64, n uint32) {
	c := classOf(n)
	a.free[c] = append(a.free[c], addr)
}
