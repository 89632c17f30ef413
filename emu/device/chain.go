package device

import (
	"errors"

	"github.com/vsocklab/vsocklab/virtio"
)

// desc is one descriptor of a chain as the packet parsers see it.
type desc struct {
	addr  uint64
	n     uint32
	write bool
	// bad: the descriptor's range is not backed by guest memory. The parsers
	// only fail on it when they touch it, as the real devices do: Firecracker
	// v1.5 never looks past the second descriptor, so a broken third one
	// does not matter there.
	bad bool
}

// chainView is a popped chain in the shape the parsers want.
type chainView struct {
	head  uint16
	descs []desc
	// more: the last descriptor has NEXT set but its successor could not be
	// followed (an index outside the table, or a loop). Firecracker's and
	// Cloud Hypervisor's chain iterators simply end there.
	more bool
	// walkErr: the chain could not be described at all (a broken indirect
	// table); every parser rejects it with this text.
	walkErr error
}

// walkError is how every profile's parser, TX and RX alike, rejects a
// chain before looking at its shape: one that could not be described at
// all, or one with no descriptor.
func (v *chainView) walkError() pktErr {
	if v.walkErr != nil {
		return perrText(errChainWalk, v.walkErr.Error())
	}
	if len(v.descs) == 0 {
		return perrText(errChainWalk, "empty chain")
	}
	return pktErr{}
}

// vq is one virtqueue as the device drives it, with the bookkeeping behind
// the "every popped chain is pushed or leaked" invariant.
type vq struct {
	name     string
	mem      virtio.Memory
	q        *virtio.DeviceQueue
	l        virtio.Layout
	indirect bool

	popped, unpopped, pushed, leaked uint64
	pushedThisRun                    bool

	view chainView
	seen []uint32 // relaxed walk: seen[i] == gen when visited
	gen  uint32
}

func newVQ(name string, mem virtio.Memory, l virtio.Layout, features uint64) (*vq, error) {
	q, err := virtio.NewDeviceQueue(mem, l, features)
	if err != nil {
		return nil, err
	}
	return &vq{
		name: name, mem: mem, q: q, l: l,
		indirect: features&virtio.FeatureIndirectDesc != 0,
		seen:     make([]uint32, l.Size),
		view:     chainView{descs: make([]desc, 0, 8)},
	}, nil
}

// popStatus says what pop found.
type popStatus uint8

const (
	popNone    popStatus = iota // nothing available
	popChain                    // v.view describes the chain
	popBadHead                  // the avail ring names no descriptor of the table: cannot be returned
	popRing                     // the rings themselves are broken (avail index overrun)
)

// pop takes the next available chain. A chain the strict walker rejects is
// walked again leniently so that each profile can apply its own checks in
// its own order.
func (v *vq) pop() (popStatus, error) {
	c, ok, err := v.q.Pop()
	if !ok {
		if err != nil {
			return popRing, err
		}
		return popNone, nil
	}
	v.popped++
	v.view.head = c.Head
	v.view.more = false
	v.view.walkErr = nil
	v.view.descs = v.view.descs[:0]
	if err == nil {
		for _, s := range c.Segs {
			v.view.descs = append(v.view.descs, desc{addr: s.Addr, n: s.Len, write: s.Write})
		}
		return popChain, nil
	}
	if !v.q.HeadValid(c.Head) {
		return popBadHead, err
	}
	v.relaxedWalk(c.Head)
	return popChain, nil
}

// unpop gives the last popped chain back to the available ring, as
// Firecracker's undo_pop does when the backend had nothing for an RX buffer.
// Pop only reads guest memory, so rewinding the position is enough.
func (v *vq) unpop() {
	st := v.q.State()
	st.LastAvail--
	v.q.SetState(st)
	v.unpopped++
}

func (v *vq) push(head uint16, n uint32) error {
	if err := v.q.Push(head, n); err != nil {
		return err
	}
	v.pushed++
	v.pushedThisRun = true
	return nil
}

// outstanding is how many popped chains are neither pushed, leaked nor
// given back; it must be zero whenever the device is idle.
func (v *vq) outstanding() uint64 { return v.popped - v.unpopped - v.pushed - v.leaked }

var errIndirectTable = errors.New("indirect descriptor table outside guest memory or malformed")

// relaxedWalk describes a chain the strict walker refused: descriptors whose
// range is outside guest memory are kept and marked bad; an index outside the
// table or a loop ends the chain with more set; at most a queue's worth of
// descriptors are taken.
func (v *vq) relaxedWalk(head uint16) {
	v.gen++
	if v.gen == 0 {
		clear(v.seen)
		v.gen = 1
	}
	size := v.l.Size
	idx := head
	for steps := 0; steps < int(size); steps++ {
		if idx >= size || v.seen[idx] == v.gen {
			v.view.more = steps > 0
			return
		}
		v.seen[idx] = v.gen
		d, err := virtio.ReadDesc(v.mem, v.l.Desc, idx)
		if err != nil {
			v.view.walkErr = err
			return
		}
		if d.Flags&virtio.DescFIndirect != 0 {
			v.walkIndirect(d)
			return
		}
		v.add(d)
		if d.Flags&virtio.DescFNext == 0 {
			return
		}
		idx = d.Next
	}
	v.view.more = true
}

func (v *vq) add(d virtio.Desc) {
	v.view.descs = append(v.view.descs, desc{
		addr:  d.Addr,
		n:     d.Len,
		write: d.Flags&virtio.DescFWrite != 0,
		bad:   v.mem.Check(d.Addr, uint64(d.Len)) != nil,
	})
}

func (v *vq) walkIndirect(d virtio.Desc) {
	if !v.indirect || d.Flags&virtio.DescFNext != 0 || d.Len == 0 || d.Len%virtio.DescLen != 0 ||
		v.mem.Check(d.Addr, uint64(d.Len)) != nil {
		v.view.walkErr = errIndirectTable
		return
	}
	n := d.Len / virtio.DescLen
	var i uint32
	for steps := uint32(0); steps < n && steps < uint32(v.l.Size); steps++ {
		e, err := virtio.ReadDesc(v.mem, d.Addr, uint16(i))
		if err != nil || e.Flags&virtio.DescFIndirect != 0 {
			v.view.walkErr = errIndirectTable
			return
		}
		v.add(e)
		if e.Flags&virtio.DescFNext == 0 {
			return
		}
		i = uint32(e.Next)
		if i >= n {
			v.view.more = true
			return
		}
	}
	v.view.more = true
}

// shape renders the chain's descriptors in virtio.Chain.Shape's notation,
// "r44 r32768 r32768", for log lines.
func (v *chainView) shape() string {
	b := make([]byte, 0, 8*len(v.descs))
	for i, dd := range v.descs {
		b = virtio.AppendShape(b, i, dd.write, dd.n)
	}
	if v.more {
		b = append(b, " ..."...)
	}
	return string(b)
}
