package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Descriptor flags of a split virtqueue (virtio 1.x, 2.7.5).
const (
	DescFNext     uint16 = 1
	DescFWrite    uint16 = 2
	DescFIndirect uint16 = 4
)

// MaxQueueSize is the largest split virtqueue the specification allows.
const MaxQueueSize = 32768

// DescLen is the size of one descriptor: le64 addr, le32 len, le16 flags,
// le16 next.
const DescLen = 16

// Desc is one entry of a descriptor table.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Layout places a split virtqueue in guest memory.
type Layout struct {
	Size  uint16 // number of entries, a power of two
	Desc  uint64 // descriptor table, 16*Size bytes, 16-byte aligned
	Avail uint64 // available ring, 6+2*Size bytes, 2-byte aligned
	Used  uint64 // used ring, 6+8*Size bytes, 4-byte aligned
}

// ContiguousLayout lays out a queue of size entries from base: the
// descriptor table, then the available ring, then the used ring 4-aligned.
// It returns the layout and the number of bytes it spans.
func ContiguousLayout(base uint64, size uint16) (Layout, uint64) {
	l := Layout{Size: size, Desc: base}
	l.Avail = l.Desc + DescLen*uint64(size)
	l.Used = (l.Avail + 6 + 2*uint64(size) + 3) &^ 3
	end := l.Used + 6 + 8*uint64(size)
	return l, end - base
}

// Validate checks the size and the alignment rules of the specification.
func (l Layout) Validate() error {
	switch {
	case l.Size == 0 || l.Size&(l.Size-1) != 0 || l.Size > MaxQueueSize:
		return fmt.Errorf("virtio: queue size %d is not a power of two in [1, %d]", l.Size, MaxQueueSize)
	case l.Desc%16 != 0:
		return fmt.Errorf("virtio: descriptor table at %#x is not 16-byte aligned", l.Desc)
	case l.Avail%2 != 0:
		return fmt.Errorf("virtio: available ring at %#x is not 2-byte aligned", l.Avail)
	case l.Used%4 != 0:
		return fmt.Errorf("virtio: used ring at %#x is not 4-byte aligned", l.Used)
	}
	return nil
}

func (l Layout) check(mem Memory) error {
	if err := l.Validate(); err != nil {
		return err
	}
	n := uint64(l.Size)
	for _, r := range [...]struct{ addr, n uint64 }{{l.Desc, 16 * n}, {l.Avail, 6 + 2*n}, {l.Used, 6 + 8*n}} {
		if err := mem.Check(r.addr, r.n); err != nil {
			return fmt.Errorf("virtio: queue layout: %w", err)
		}
	}
	return nil
}

// ReadDesc reads descriptor i of a table at table.
func ReadDesc(mem Memory, table uint64, i uint16) (Desc, error) {
	var b [DescLen]byte
	if err := mem.ReadAt(b[:], table+DescLen*uint64(i)); err != nil {
		return Desc{}, err
	}
	return decodeDesc(b[:]), nil
}

func decodeDesc(b []byte) Desc {
	le := binary.LittleEndian
	return Desc{Addr: le.Uint64(b), Len: le.Uint32(b[8:]), Flags: le.Uint16(b[12:]), Next: le.Uint16(b[14:])}
}

// WriteDesc writes descriptor i of a table at table. Tests and fuzzers use it
// to build tables no correct driver would.
func WriteDesc(mem Memory, table uint64, i uint16, d Desc) error {
	var b [DescLen]byte
	encodeDesc(b[:], d)
	return mem.WriteAt(b[:], table+DescLen*uint64(i))
}

func encodeDesc(b []byte, d Desc) {
	le := binary.LittleEndian
	le.PutUint64(b, d.Addr)
	le.PutUint32(b[8:], d.Len)
	le.PutUint16(b[12:], d.Flags)
	le.PutUint16(b[14:], d.Next)
}

// loadU16 and storeU16 are the ring index accesses of the hot path. With
// the lab's flat memory they touch the bytes in place; otherwise they go
// through b, a scratch array in the caller's queue struct, because a local
// array handed to the Memory interface escapes and costs an allocation.
func loadU16(mem Memory, b *[8]byte, addr uint64) (uint16, error) {
	if as, ok := mem.(*AddressSpace); ok {
		if r := as.fast(addr, 2); r != nil {
			return binary.LittleEndian.Uint16(r), nil
		}
	}
	if err := mem.ReadAt(b[:2], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:2]), nil
}

func storeU16(mem Memory, b *[8]byte, addr uint64, v uint16) error {
	if as, ok := mem.(*AddressSpace); ok {
		if r := as.fast(addr, 2); r != nil {
			binary.LittleEndian.PutUint16(r, v)
			as.markDirty(addr, 2)
			return nil
		}
	}
	binary.LittleEndian.PutUint16(b[:2], v)
	return mem.WriteAt(b[:2], addr)
}

// Segment is one descriptor of a walked chain, as the device sees it.
type Segment struct {
	Addr     uint64
	Len      uint32
	Write    bool   // device-writable
	Index    uint16 // index in the table it came from
	Indirect bool   // came from an indirect table
}

// Chain is a descriptor chain popped from the available ring.
type Chain struct {
	Head uint16
	Segs []Segment
}

// ReadableLen is the total length of the device-readable descriptors.
func (c *Chain) ReadableLen() uint64 {
	var n uint64
	for _, s := range c.Segs {
		if !s.Write {
			n += uint64(s.Len)
		}
	}
	return n
}

// WritableLen is the total length of the device-writable descriptors.
func (c *Chain) WritableLen() uint64 {
	var n uint64
	for _, s := range c.Segs {
		if s.Write {
			n += uint64(s.Len)
		}
	}
	return n
}

// Shape renders the chain as its descriptor lengths, "r44 r32768 r32768" or
// "w4140", for logs and for tests that pin a kernel's layout.
func (c *Chain) Shape() string {
	b := make([]byte, 0, 8*len(c.Segs))
	for i, s := range c.Segs {
		b = AppendShape(b, i, s.Write, s.Len)
	}
	return string(b)
}

// AppendShape appends descriptor i of a chain in Shape's notation: a
// separating space after the first, 'w' or 'r', the length.
func AppendShape(b []byte, i int, write bool, n uint32) []byte {
	if i > 0 {
		b = append(b, ' ')
	}
	if write {
		b = append(b, 'w')
	} else {
		b = append(b, 'r')
	}
	return strconv.AppendUint(b, uint64(n), 10)
}

// Chain faults. A *ChainError wraps one of these, so errors.Is tells them
// apart.
var (
	ErrDescIndex        = errors.New("descriptor index out of range")
	ErrDescLoop         = errors.New("descriptor chain loops")
	ErrChainTooLong     = errors.New("descriptor chain longer than the queue")
	ErrChainBytes       = errors.New("descriptor chain longer than 4 GiB in total")
	ErrDescMemory       = errors.New("descriptor buffer outside guest memory")
	ErrIndirectOff      = errors.New("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
	ErrIndirectNext     = errors.New("indirect descriptor with NEXT set")
	ErrIndirectNested   = errors.New("indirect descriptor inside an indirect table")
	ErrIndirectTableLen = errors.New("indirect table length not a non-zero multiple of 16")
	ErrWriteOnly        = errors.New("device-writable descriptor where only readable ones belong")
	ErrReadOnly         = errors.New("device-readable descriptor where only writable ones belong")
	ErrAvailOverrun     = errors.New("available index ahead of the last seen one by more than the queue size")
	ErrUsedID           = errors.New("used ring names a descriptor that is not in flight")
	ErrUsedOverrun      = errors.New("used index ahead of the driver by more than the queue size")
	ErrQueueFull        = errors.New("not enough free descriptors")
	ErrEmptyChain       = errors.New("chain with no buffers")
	ErrOrder            = errors.New("device-readable buffer after a device-writable one")
)

// ChainError locates a chain fault.
type ChainError struct {
	Head  uint16 // head of the chain being walked
	Index uint16 // descriptor at fault
	Err   error  // one of the Err* faults above
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("virtio: chain at head %d, descriptor %d: %v", e.Head, e.Index, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// RequireReadable fails unless every descriptor is device-readable, as a
// driver-to-device (TX) chain must be.
func (c *Chain) RequireReadable() error {
	for _, s := range c.Segs {
		if s.Write {
			return &ChainError{Head: c.Head, Index: s.Index, Err: ErrWriteOnly}
		}
	}
	return nil
}

// RequireWritable fails unless every descriptor is device-writable, as a
// device-to-driver (RX, event) chain must be.
func (c *Chain) RequireWritable() error {
	for _, s := range c.Segs {
		if !s.Write {
			return &ChainError{Head: c.Head, Index: s.Index, Err: ErrReadOnly}
		}
	}
	return nil
}

// DeviceQueue is a split virtqueue seen from the device: it pops chains the
// driver made available and returns them through the used ring.
//
// VIRTIO_F_EVENT_IDX is not modelled: notifications are the caller's
// business. VIRTIO_F_INDIRECT_DESC is honoured when passed in features.
type DeviceQueue struct {
	mem       Memory
	l         Layout
	indirect  bool
	lastAvail uint16
	usedIdx   uint16

	visited []uint32 // visited[i] == gen: descriptor i seen in this walk
	gen     uint32
	segs    []Segment // reused by Pop; a Chain is valid until the next Pop
	buf     [DescLen]byte
	ring    [8]byte // scratch for ring indexes and used elements (see loadU16)
}

// NewDeviceQueue attaches a device to a queue laid out in mem. It does not
// touch the rings: the driver owns their initial state.
func NewDeviceQueue(mem Memory, l Layout, features uint64) (*DeviceQueue, error) {
	if err := l.check(mem); err != nil {
		return nil, err
	}
	return &DeviceQueue{
		mem:      mem,
		l:        l,
		indirect: features&FeatureIndirectDesc != 0,
		visited:  make([]uint32, l.Size),
		segs:     make([]Segment, 0, 8),
	}, nil
}

// Layout returns where the queue lives.
func (q *DeviceQueue) Layout() Layout { return q.l }

// Pending returns how many chains the driver has made available and the
// device has not popped yet.
func (q *DeviceQueue) Pending() (int, error) {
	idx, err := loadU16(q.mem, &q.ring, q.l.Avail+2)
	if err != nil {
		return 0, err
	}
	n := idx - q.lastAvail
	if n > q.l.Size {
		return 0, fmt.Errorf("virtio: avail idx %d, last seen %d, size %d: %w", idx, q.lastAvail, q.l.Size, ErrAvailOverrun)
	}
	return int(n), nil
}

// Pop takes the next available chain and walks it. ok is false when nothing
// is available. When the walk fails, the chain's head is still consumed and
// returned in c (with the segments walked so far), so the caller can decide
// to return it with Push or report it as leaked; a head index that is itself
// out of range cannot be returned, which HeadValid tells.
func (q *DeviceQueue) Pop() (c Chain, ok bool, err error) {
	n, err := q.Pending()
	if err != nil || n == 0 {
		return Chain{}, false, err
	}
	head, err := loadU16(q.mem, &q.ring, q.l.Avail+4+2*uint64(q.lastAvail%q.l.Size))
	if err != nil {
		return Chain{}, false, err
	}
	q.lastAvail++
	c, err = q.walk(head)
	return c, true, err
}

// HeadValid reports whether head names a descriptor of this queue and can
// therefore be given back with Push.
func (q *DeviceQueue) HeadValid(head uint16) bool { return head < q.l.Size }

// Push returns a chain to the driver with the number of bytes the device
// wrote into it.
func (q *DeviceQueue) Push(head uint16, written uint32) error {
	b := &q.ring
	binary.LittleEndian.PutUint32(b[:], uint32(head))
	binary.LittleEndian.PutUint32(b[4:], written)
	if err := q.mem.WriteAt(b[:], q.l.Used+4+8*uint64(q.usedIdx%q.l.Size)); err != nil {
		return err
	}
	q.usedIdx++
	return storeU16(q.mem, b, q.l.Used+2, q.usedIdx)
}

// QueueState is the device-side position in the rings, as a snapshot saves it.
type QueueState struct {
	LastAvail uint16
	UsedIdx   uint16
}

// State returns the device's ring positions.
func (q *DeviceQueue) State() QueueState {
	return QueueState{LastAvail: q.lastAvail, UsedIdx: q.usedIdx}
}

// SetState restores ring positions saved by State.
func (q *DeviceQueue) SetState(s QueueState) { q.lastAvail, q.usedIdx = s.LastAvail, s.UsedIdx }

func (q *DeviceQueue) fail(c Chain, idx uint16, err error) (Chain, error) {
	return c, &ChainError{Head: c.Head, Index: idx, Err: err}
}

func (q *DeviceQueue) walk(head uint16) (Chain, error) {
	q.segs = q.segs[:0]
	c := Chain{Head: head}
	q.gen++
	if q.gen == 0 {
		clear(q.visited)
		q.gen = 1
	}
	var total uint64
	idx := head
	for {
		c.Segs = q.segs
		if idx >= q.l.Size {
			return q.fail(c, idx, ErrDescIndex)
		}
		if q.visited[idx] == q.gen {
			return q.fail(c, idx, ErrDescLoop)
		}
		q.visited[idx] = q.gen
		if err := q.mem.ReadAt(q.buf[:], q.l.Desc+DescLen*uint64(idx)); err != nil {
			return q.fail(c, idx, fmt.Errorf("%w: %v", ErrDescMemory, err))
		}
		d := decodeDesc(q.buf[:])
		if d.Flags&DescFIndirect != 0 {
			err := q.walkIndirect(&c, idx, d, &total)
			c.Segs = q.segs
			if err != nil {
				return c, err
			}
			return c, nil
		}
		// A direct chain cannot outgrow the table without revisiting an
		// entry, so loop detection also caps it at the queue size.
		if err := q.add(&c, idx, d, false, &total); err != nil {
			return q.fail(c, idx, err)
		}
		if d.Flags&DescFNext == 0 {
			c.Segs = q.segs
			return c, nil
		}
		idx = d.Next
	}
}

func (q *DeviceQueue) add(c *Chain, idx uint16, d Desc, indirect bool, total *uint64) error {
	if err := q.mem.Check(d.Addr, uint64(d.Len)); err != nil {
		return fmt.Errorf("%w: %v", ErrDescMemory, err)
	}
	*total += uint64(d.Len)
	if *total > 0xffffffff {
		return ErrChainBytes
	}
	q.segs = append(q.segs, Segment{Addr: d.Addr, Len: d.Len, Write: d.Flags&DescFWrite != 0, Index: idx, Indirect: indirect})
	return nil
}

// walkIndirect follows an indirect table (virtio 1.x 2.7.5.3): allowed only
// when negotiated, never together with NEXT, never nested; its entries chain
// by index inside the table.
func (q *DeviceQueue) walkIndirect(c *Chain, at uint16, d Desc, total *uint64) error {
	switch {
	case !q.indirect:
		return &ChainError{Head: c.Head, Index: at, Err: ErrIndirectOff}
	case d.Flags&DescFNext != 0:
		return &ChainError{Head: c.Head, Index: at, Err: ErrIndirectNext}
	case d.Len == 0 || d.Len%DescLen != 0:
		return &ChainError{Head: c.Head, Index: at, Err: ErrIndirectTableLen}
	}
	if err := q.mem.Check(d.Addr, uint64(d.Len)); err != nil {
		return &ChainError{Head: c.Head, Index: at, Err: fmt.Errorf("%w: %v", ErrDescMemory, err)}
	}
	n := d.Len / DescLen
	if uint64(len(q.segs))+uint64(n) > uint64(q.l.Size) {
		return &ChainError{Head: c.Head, Index: at, Err: ErrChainTooLong}
	}
	var i uint32
	for steps := uint32(0); ; steps++ {
		if steps >= n {
			return &ChainError{Head: c.Head, Index: uint16(i), Err: ErrDescLoop}
		}
		if err := q.mem.ReadAt(q.buf[:], d.Addr+DescLen*uint64(i)); err != nil {
			return &ChainError{Head: c.Head, Index: uint16(i), Err: fmt.Errorf("%w: %v", ErrDescMemory, err)}
		}
		e := decodeDesc(q.buf[:])
		if e.Flags&DescFIndirect != 0 {
			return &ChainError{Head: c.Head, Index: uint16(i), Err: ErrIndirectNested}
		}
		if err := q.add(c, uint16(i), e, true, total); err != nil {
			return &ChainError{Head: c.Head, Index: uint16(i), Err: err}
		}
		if e.Flags&DescFNext == 0 {
			return nil
		}
		i = uint32(e.Next)
		if i >= n {
			return &ChainError{Head: c.Head, Index: uint16(i), Err: ErrDescIndex}
		}
	}
}

// ReadOut copies the chain's device-readable bytes, starting off bytes into
// them, into p. It returns how many bytes it copied, fewer than len(p) when
// the readable part of the chain ends first.
func (c *Chain) ReadOut(mem Memory, off uint64, p []byte) (int, error) {
	return c.walk(false, off, p, mem.ReadAt)
}

// WriteIn copies p into the chain's device-writable bytes, starting off bytes
// into them. It returns how many bytes it copied, fewer than len(p) when the
// writable part of the chain ends first.
func (c *Chain) WriteIn(mem Memory, off uint64, p []byte) (int, error) {
	return c.walk(true, off, p, mem.WriteAt)
}

// walk lays p over the chain's segments of one direction (device-writable
// when write), from off bytes into them, and hands each piece with its
// guest address to move. It returns how many bytes of p were moved.
func (c *Chain) walk(write bool, off uint64, p []byte, move func(b []byte, addr uint64) error) (int, error) {
	n := 0
	for _, s := range c.Segs {
		if s.Write != write {
			continue
		}
		if off >= uint64(s.Len) {
			off -= uint64(s.Len)
			continue
		}
		take := min(uint64(s.Len)-off, uint64(len(p)-n))
		if err := move(p[n:n+int(take)], s.Addr+off); err != nil {
			return n, err
		}
		n += int(take)
		off = 0
		if n == len(p) {
			break
		}
	}
	return n, nil
}
