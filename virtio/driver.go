package virtio

import (
	"encoding/binary"
	"fmt"
)

// Buffer is one piece of a chain the driver makes available.
type Buffer struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// Driver is a split virtqueue seen from the guest driver: it makes chains of
// buffers available and reaps them from the used ring, keeping the free
// descriptor list the way Linux's virtio_ring does (a shadow of each
// descriptor's next field).
type Driver struct {
	mem      Memory
	l        Layout
	indirect bool

	next     []uint16 // shadow next links: the free list and in-flight chains
	chainLen []uint16 // descriptors held by the chain headed at i; 0 if not in flight
	freeHead uint16
	numFree  int
	availIdx uint16
	lastUsed uint16
	buf      [DescLen]byte
	ring     [8]byte // scratch for ring indexes and used elements (see loadU16)
}

// NewDriver initialises the rings of a queue laid out in mem (both indexes
// zero, no notification suppression) and returns its driver.
func NewDriver(mem Memory, l Layout, features uint64) (*Driver, error) {
	if err := l.check(mem); err != nil {
		return nil, err
	}
	d := &Driver{
		mem:      mem,
		l:        l,
		indirect: features&FeatureIndirectDesc != 0,
		next:     make([]uint16, l.Size),
		chainLen: make([]uint16, l.Size),
		numFree:  int(l.Size),
	}
	for i := range d.next {
		d.next[i] = uint16(i + 1)
	}
	var zero [4]byte
	if err := mem.WriteAt(zero[:], l.Avail); err != nil {
		return nil, err
	}
	if err := mem.WriteAt(zero[:], l.Used); err != nil {
		return nil, err
	}
	return d, nil
}

// Layout returns where the queue lives.
func (d *Driver) Layout() Layout { return d.l }

// NumFree returns how many descriptors are free.
func (d *Driver) NumFree() int { return d.numFree }

// InFlight returns how many descriptors the device holds.
func (d *Driver) InFlight() int { return int(d.l.Size) - d.numFree }

// Add makes a chain of bufs available: device-readable buffers first, as the
// specification requires of a driver. It returns the head descriptor index,
// which PopUsed will report when the device is done with the chain.
func (d *Driver) Add(bufs []Buffer) (uint16, error) {
	if err := checkOrder(bufs); err != nil {
		return 0, err
	}
	if len(bufs) > d.numFree {
		return 0, fmt.Errorf("virtio: chain of %d descriptors, %d free: %w", len(bufs), d.numFree, ErrQueueFull)
	}
	head := d.freeHead
	i := head
	for k, b := range bufs {
		desc := Desc{Addr: b.Addr, Len: b.Len}
		if b.Write {
			desc.Flags |= DescFWrite
		}
		if k < len(bufs)-1 {
			desc.Flags |= DescFNext
			desc.Next = d.next[i]
		}
		if err := d.writeDesc(d.l.Desc, i, desc); err != nil {
			return 0, err
		}
		if k < len(bufs)-1 {
			i = d.next[i]
		}
	}
	d.freeHead = d.next[i]
	d.numFree -= len(bufs)
	d.chainLen[head] = uint16(len(bufs))
	return head, d.publish(head)
}

// AddIndirect makes bufs available through one indirect descriptor whose
// table the caller has reserved at table (16 bytes per buffer).
func (d *Driver) AddIndirect(table uint64, bufs []Buffer) (uint16, error) {
	if !d.indirect {
		return 0, ErrIndirectOff
	}
	if err := checkOrder(bufs); err != nil {
		return 0, err
	}
	if len(bufs) > int(d.l.Size) {
		return 0, ErrChainTooLong
	}
	if d.numFree < 1 {
		return 0, fmt.Errorf("virtio: indirect chain, no descriptor free: %w", ErrQueueFull)
	}
	for k, b := range bufs {
		desc := Desc{Addr: b.Addr, Len: b.Len}
		if b.Write {
			desc.Flags |= DescFWrite
		}
		if k < len(bufs)-1 {
			desc.Flags |= DescFNext
			desc.Next = uint16(k + 1)
		}
		if err := d.writeDesc(table, uint16(k), desc); err != nil {
			return 0, err
		}
	}
	head := d.freeHead
	if err := d.writeDesc(d.l.Desc, head, Desc{Addr: table, Len: uint32(DescLen * len(bufs)), Flags: DescFIndirect}); err != nil {
		return 0, err
	}
	d.freeHead = d.next[head]
	d.numFree--
	d.chainLen[head] = 1
	return head, d.publish(head)
}

func checkOrder(bufs []Buffer) error {
	if len(bufs) == 0 {
		return ErrEmptyChain
	}
	seenWrite := false
	for _, b := range bufs {
		if b.Write {
			seenWrite = true
		} else if seenWrite {
			return ErrOrder
		}
	}
	return nil
}

func (d *Driver) writeDesc(table uint64, i uint16, desc Desc) error {
	encodeDesc(d.buf[:], desc)
	return d.mem.WriteAt(d.buf[:], table+DescLen*uint64(i))
}

func (d *Driver) publish(head uint16) error {
	if err := storeU16(d.mem, &d.ring, d.l.Avail+4+2*uint64(d.availIdx%d.l.Size), head); err != nil {
		return err
	}
	d.availIdx++
	return storeU16(d.mem, &d.ring, d.l.Avail+2, d.availIdx)
}

// PopUsed reaps one chain the device has returned: its head and the number
// of bytes the device says it wrote. ok is false when the used ring holds
// nothing new. A used entry that names no chain in flight is an error (Linux
// calls it "id is not a head" and marks the ring broken); the entry is
// consumed so that the caller can decide how to go on.
func (d *Driver) PopUsed() (head uint16, written uint32, ok bool, err error) {
	idx, err := loadU16(d.mem, &d.ring, d.l.Used+2)
	if err != nil {
		return 0, 0, false, err
	}
	if idx == d.lastUsed {
		return 0, 0, false, nil
	}
	if idx-d.lastUsed > d.l.Size {
		return 0, 0, false, fmt.Errorf("virtio: used idx %d, last seen %d, size %d: %w", idx, d.lastUsed, d.l.Size, ErrUsedOverrun)
	}
	b := &d.ring
	if err := d.mem.ReadAt(b[:], d.l.Used+4+8*uint64(d.lastUsed%d.l.Size)); err != nil {
		return 0, 0, false, err
	}
	d.lastUsed++
	id := binary.LittleEndian.Uint32(b[:])
	written = binary.LittleEndian.Uint32(b[4:])
	if id >= uint32(d.l.Size) || d.chainLen[id] == 0 {
		return 0, written, true, fmt.Errorf("virtio: used id %d: %w", id, ErrUsedID)
	}
	head = uint16(id)
	n := d.chainLen[head]
	d.chainLen[head] = 0
	last := head
	for k := uint16(1); k < n; k++ {
		last = d.next[last]
	}
	d.next[last] = d.freeHead
	d.freeHead = head
	d.numFree += int(n)
	return head, written, true, nil
}
