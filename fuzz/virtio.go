package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vsocklab/vsocklab/virtio"
)

// CheckHeader decodes data as a vsock header and checks that decoding is
// total on 44 bytes or more, fails with a typed error below that, and that
// encoding the result gives the same bytes back. Validation must not panic
// and must name a field when it fails.
func CheckHeader(data []byte) error {
	h, err := virtio.DecodeHeader(data)
	if len(data) < virtio.HeaderLen {
		var se *virtio.ShortError
		if !errors.As(err, &se) {
			return fmt.Errorf("short input of %d bytes: want *ShortError, got %v", len(data), err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("decode of %d bytes failed: %v", len(data), err)
	}
	out := make([]byte, virtio.HeaderLen)
	if err := h.Encode(out); err != nil {
		return err
	}
	if !bytes.Equal(out, data[:virtio.HeaderLen]) {
		return fmt.Errorf("round trip changed bytes:\n in  %x\n out %x", data[:virtio.HeaderLen], out)
	}
	if verr := h.Validate(); verr != nil {
		var he *virtio.HeaderError
		if !errors.As(verr, &he) || he.Field == "" {
			return fmt.Errorf("validation error is not a *HeaderError naming a field: %v", verr)
		}
	}
	if h.String() == "" {
		return errors.New("empty String()")
	}
	return nil
}

// chainFaults are the errors a walk may fail with; anything else is a bug.
var chainFaults = []error{
	virtio.ErrDescIndex, virtio.ErrDescLoop, virtio.ErrChainTooLong, virtio.ErrChainBytes,
	virtio.ErrDescMemory, virtio.ErrIndirectOff, virtio.ErrIndirectNext, virtio.ErrIndirectNested,
	virtio.ErrIndirectTableLen,
}

// CheckChain builds a split virtqueue whose descriptor table, available ring
// and buffers come from data, and pops every chain the ring offers. Layout of
// data: byte 0 picks the queue size (1 to 64), byte 1 bit 0 negotiates
// indirect descriptors, bytes 2-3 are the available index, and the next 256
// bytes at most are written to guest memory from address 0 (the descriptor
// table lives there; the rest of memory is zero). Bytes past that are
// ignored (chainMaxInput: the minimizer's work grows with the square of an
// input's length).
//
// Oracles: the walk terminates with a chain no longer than the queue or a
// fault from the known set; every segment it reports lies inside guest
// memory; reading and writing the chain's bytes stays in bounds; a chain
// whose head is valid can be returned through the used ring.
func CheckChain(data []byte) error {
	data = capped(data, chainMaxInput)
	if len(data) < 4 {
		return nil
	}
	size := uint16(1) << (data[0] % 7)
	var features uint64
	if data[1]&1 != 0 {
		features |= virtio.FeatureIndirectDesc
	}
	availIdx := binary.LittleEndian.Uint16(data[2:])
	image := data[4:]

	l, n := virtio.ContiguousLayout(0, size)
	memSize := max(int(n), len(image))
	memSize = min((memSize+4095)&^4095, 1<<16)
	buf := zeroed(memSize)
	defer release(buf)
	mem, err := virtio.NewAddressSpace(virtio.Region{Base: 0, Data: buf})
	if err != nil {
		return err
	}
	if err := mem.WriteAt(image[:min(len(image), memSize)], 0); err != nil {
		return err
	}
	// The used ring is the device's: start it clean so that Push works.
	if err := mem.WriteAt(make([]byte, 4), l.Used); err != nil {
		return err
	}
	if err := mem.WriteAt([]byte{0, 0, byte(availIdx), byte(availIdx >> 8)}, l.Avail); err != nil {
		return err
	}
	q, err := virtio.NewDeviceQueue(mem, l, features)
	if err != nil {
		return err
	}
	scratch := zeroed(1 << 16)
	defer release(scratch)
	// Writing into a chain may overwrite the rings themselves, as a hostile
	// guest can arrange, so the number of chains is not known in advance:
	// pop until the ring is empty or refuses, with a cap for the harness.
	for i := 0; i < 4*int(size)+4; i++ {
		c, ok, err := q.Pop()
		if !ok {
			if err != nil && !errors.Is(err, virtio.ErrAvailOverrun) {
				return fmt.Errorf("pop %d: unexpected error %v", i, err)
			}
			return nil
		}
		if len(c.Segs) > int(size) {
			return fmt.Errorf("chain of %d segments in a queue of %d", len(c.Segs), size)
		}
		for _, s := range c.Segs {
			if cerr := mem.Check(s.Addr, uint64(s.Len)); cerr != nil {
				return fmt.Errorf("walker reported segment %+v outside memory: %v", s, cerr)
			}
		}
		if err != nil {
			var ce *virtio.ChainError
			if !errors.As(err, &ce) {
				return fmt.Errorf("walk error is not a *ChainError: %v", err)
			}
			known := false
			for _, f := range chainFaults {
				known = known || errors.Is(err, f)
			}
			if !known {
				return fmt.Errorf("walk failed with an unknown fault: %v", err)
			}
		}
		if _, rerr := c.ReadOut(mem, 0, scratch[:min(len(scratch), int(c.ReadableLen()))]); rerr != nil {
			return fmt.Errorf("reading a walked chain: %v", rerr)
		}
		if _, werr := c.WriteIn(mem, 0, scratch[:min(len(scratch), int(c.WritableLen()))]); werr != nil {
			return fmt.Errorf("writing a walked chain: %v", werr)
		}
		if q.HeadValid(c.Head) {
			if perr := q.Push(c.Head, 0); perr != nil {
				return fmt.Errorf("push of head %d: %v", c.Head, perr)
			}
		}
	}
	return nil
}
