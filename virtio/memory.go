package virtio

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
)

// Memory is guest physical memory as a device sees it. Every access is
// bounds-checked and fails with an error, never a panic, so that a device
// model can be fed arbitrary guest addresses.
//
// The interface is deliberately small: real mmapped guest RAM can implement
// it as well as the flat slices the lab uses.
type Memory interface {
	// ReadAt fills p from guest memory starting at addr.
	ReadAt(p []byte, addr uint64) error
	// WriteAt copies p to guest memory starting at addr.
	WriteAt(p []byte, addr uint64) error
	// Check reports whether [addr, addr+n) is backed by memory.
	Check(addr, n uint64) error
	// Slice returns the bytes at [addr, addr+n) without copying. It fails
	// when the range is not inside one region; callers then fall back to
	// ReadAt and WriteAt, which may cross adjacent regions.
	Slice(addr, n uint64) ([]byte, error)
}

// AccessError is an out-of-range guest memory access.
type AccessError struct {
	Op   string // "read", "write", "check", "slice"
	Addr uint64
	Len  uint64
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("virtio: guest memory %s of %d bytes at %#x is out of range", e.Op, e.Len, e.Addr)
}

// Region is one contiguous piece of guest physical memory.
type Region struct {
	Base uint64
	Data []byte
}

func (r *Region) end() uint64 { return r.Base + uint64(len(r.Data)) }

// AddressSpace is a Memory made of non-overlapping regions.
type AddressSpace struct {
	regions []Region // sorted by Base
	// flat and flatBase are the one region of a single-region space (nil
	// otherwise), for fast: every ring index and descriptor a device or
	// driver model reads or writes goes through it, and in a fuzzing build
	// each comparison there is a call (coverage instrumentation traces
	// comparisons).
	flat     []byte
	flatBase uint64
	// [dirtyLo, dirtyHi) covers every byte that may have been written
	// since the space was made or last zeroed (empty when dirtyLo >=
	// dirtyHi): what Zero clears.
	dirtyLo, dirtyHi uint64
}

// markDirty records that [addr, addr+n) may have been written.
func (m *AddressSpace) markDirty(addr, n uint64) {
	if n == 0 {
		return
	}
	if m.dirtyLo >= m.dirtyHi {
		m.dirtyLo, m.dirtyHi = addr, addr+n
		return
	}
	m.dirtyLo = min(m.dirtyLo, addr)
	m.dirtyHi = max(m.dirtyHi, addr+n)
}

// Zero clears every byte written since the address space was made or
// last zeroed, through WriteAt or through a slice that Slice or Regions
// handed out, so that it reads as freshly made. A world that recycles its
// guest memory pays for the bytes it touched, not for the whole memory
// (16 MiB by default, most of it never written).
func (m *AddressSpace) Zero() {
	if m.dirtyLo >= m.dirtyHi {
		return
	}
	for i := range m.regions {
		r := &m.regions[i]
		lo, hi := max(m.dirtyLo, r.Base), min(m.dirtyHi, r.end())
		if lo < hi {
			clear(r.Data[lo-r.Base : hi-r.Base])
		}
	}
	m.dirtyLo, m.dirtyHi = 0, 0
}

// NewFlatMemory is an address space of one zeroed region of size bytes at
// guest physical address base.
func NewFlatMemory(base uint64, size int) *AddressSpace {
	as, err := NewAddressSpace(Region{Base: base, Data: make([]byte, size)})
	if err != nil {
		panic(err) // a single region cannot overlap; only base+size overflow can fail
	}
	return as
}

// NewAddressSpace builds an address space from regions, which must not
// overlap or wrap past the end of the 64-bit space.
func NewAddressSpace(regions ...Region) (*AddressSpace, error) {
	rs := append([]Region(nil), regions...)
	slices.SortFunc(rs, func(a, b Region) int { return cmp.Compare(a.Base, b.Base) })
	for i := range rs {
		if rs[i].end() < rs[i].Base {
			return nil, fmt.Errorf("virtio: region at %#x of %d bytes wraps the address space", rs[i].Base, len(rs[i].Data))
		}
		if i > 0 && rs[i-1].end() > rs[i].Base {
			return nil, fmt.Errorf("virtio: region at %#x overlaps region at %#x", rs[i].Base, rs[i-1].Base)
		}
	}
	as := &AddressSpace{regions: rs}
	if len(rs) == 1 {
		as.flat, as.flatBase = rs[0].Data, rs[0].Base
	}
	return as, nil
}

// Regions returns the regions, sorted by base address. Their bytes are
// then the caller's to write: Zero clears them all.
func (m *AddressSpace) Regions() []Region {
	for i := range m.regions {
		m.markDirty(m.regions[i].Base, uint64(len(m.regions[i].Data)))
	}
	return m.regions
}

// find returns the index of the region holding addr, or -1.
func (m *AddressSpace) find(addr uint64) int {
	if len(m.regions) == 1 { // the common case, without the search
		if r := &m.regions[0]; addr >= r.Base && addr < r.end() {
			return 0
		}
		return -1
	}
	i := sort.Search(len(m.regions), func(i int) bool { return m.regions[i].end() > addr })
	if i < len(m.regions) && addr >= m.regions[i].Base {
		return i
	}
	return -1
}

// walk calls f for each region-local piece of [addr, addr+n), failing unless
// the whole range is backed (adjacent regions may be crossed).
func (m *AddressSpace) walk(op string, addr, n uint64, f func(b []byte, off uint64)) error {
	if n == 0 {
		if len(m.regions) > 0 && (m.find(addr) >= 0 || (addr > 0 && m.find(addr-1) >= 0)) {
			return nil
		}
		return &AccessError{Op: op, Addr: addr, Len: n}
	}
	if addr+n < addr {
		return &AccessError{Op: op, Addr: addr, Len: n}
	}
	// Check first so that a failed write leaves memory untouched.
	if err := m.check(op, addr, n); err != nil {
		return err
	}
	var done uint64
	for done < n {
		i := m.find(addr + done)
		r := &m.regions[i]
		start := addr + done - r.Base
		take := min(uint64(len(r.Data))-start, n-done)
		f(r.Data[start:start+take], done)
		done += take
	}
	return nil
}

func (m *AddressSpace) check(op string, addr, n uint64) error {
	cur := addr
	end := addr + n
	for cur < end {
		i := m.find(cur)
		if i < 0 {
			return &AccessError{Op: op, Addr: addr, Len: n}
		}
		cur = m.regions[i].end()
		if cur == 0 { // region ends exactly at 2^64
			break
		}
	}
	return nil
}

// ReadAt implements Memory.
func (m *AddressSpace) ReadAt(p []byte, addr uint64) error {
	if r := m.fast(addr, uint64(len(p))); r != nil {
		copy(p, r)
		return nil
	}
	return m.walk("read", addr, uint64(len(p)), func(b []byte, off uint64) { copy(p[off:], b) })
}

// WriteAt implements Memory.
func (m *AddressSpace) WriteAt(p []byte, addr uint64) error {
	if r := m.fast(addr, uint64(len(p))); r != nil {
		copy(r, p)
		m.markDirty(addr, uint64(len(p)))
		return nil
	}
	err := m.walk("write", addr, uint64(len(p)), func(b []byte, off uint64) { copy(b, p[off:]) })
	if err == nil {
		m.markDirty(addr, uint64(len(p)))
	}
	return err
}

// Check implements Memory.
func (m *AddressSpace) Check(addr, n uint64) error {
	if m.fast(addr, n) != nil {
		return nil
	}
	return m.walk("check", addr, n, func([]byte, uint64) {})
}

// Slice implements Memory. The caller may write the slice: Zero clears it.
func (m *AddressSpace) Slice(addr, n uint64) ([]byte, error) {
	if r := m.fast(addr, n); r != nil {
		m.markDirty(addr, n)
		return r, nil
	}
	if n == 0 {
		if err := m.Check(addr, 0); err != nil {
			return nil, &AccessError{Op: "slice", Addr: addr, Len: n}
		}
		return []byte{}, nil
	}
	i := m.find(addr)
	if i < 0 || addr+n < addr {
		return nil, &AccessError{Op: "slice", Addr: addr, Len: n}
	}
	r := &m.regions[i]
	if addr+n > r.end() {
		return nil, &AccessError{Op: "slice", Addr: addr, Len: n}
	}
	m.markDirty(addr, n)
	return r.Data[addr-r.Base : addr-r.Base+n], nil
}

// fast returns the bytes of [addr, addr+n) when the address space is a single
// region that holds them, which is what the lab uses on its hot path.
func (m *AddressSpace) fast(addr, n uint64) []byte {
	// addr below the base wraps to an offset past the end. n == 0 inside
	// the region gives an empty slice, which every caller takes as the
	// slow path would (an empty range inside a region is backed).
	off := addr - m.flatBase
	if off >= uint64(len(m.flat)) || n > uint64(len(m.flat))-off {
		return nil
	}
	return m.flat[off : off+n : off+n]
}
