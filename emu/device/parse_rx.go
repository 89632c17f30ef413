package device

import (
	"math"

	"github.com/vsocklab/vsocklab/virtio"
)

// rxBuffer is a parsed RX chain: where the header goes and the payload room.
// Reused for every packet.
type rxBuffer struct {
	hdr     []span // the 44 header bytes, possibly straddling descriptors
	payload []span // payload room, iovec by iovec
	bufSize uint32 // total payload room (buf_size())
}

func (b *rxBuffer) reset() {
	b.hdr = b.hdr[:0]
	b.payload = b.payload[:0]
	b.bufSize = 0
}

// parseRX applies the profile's RX chain rules to v.
func (d *Device) parseRX(v *chainView, b *rxBuffer) pktErr {
	b.reset()
	if e := v.walkError(); !e.ok() {
		return e
	}
	switch d.prof.RX {
	case RXFirecrackerLegacy, RXCloudHypervisorLegacy:
		return d.parseRXFCLegacy(v, b)
	case RXFirecracker:
		return d.parseRXFC(v, b)
	case RXCloudHypervisor, RXCloudHypervisorStrict:
		return d.parseRXCH(v, b)
	default:
		return d.parseRXRustVMM(v, b)
	}
}

// FC@v1.5.1 packet.rs from_rx_virtq_head (notes 1.2), and Cloud Hypervisor
// before v35.0 (CH@v34.0 virtio-devices/src/vsock/packet.rs
// from_rx_virtq_head, the same code): a header descriptor and exactly one
// data descriptor, whose whole length is the payload room.
func (d *Device) parseRXFCLegacy(v *chainView, b *rxBuffer) pktErr {
	h := v.descs[0]
	switch {
	case !h.write:
		return perr(errUnwritable)
	case d.mem.Check(h.addr, virtio.HeaderLen) != nil:
		return perr(errMemBounds)
	case h.n < virtio.HeaderLen:
		return perr1(errHdrDescTooSmall, uint64(h.n))
	case len(v.descs) < 2:
		return perr(errBufDescMissing)
	}
	x := v.descs[1]
	switch {
	case !x.write:
		return perr(errUnwritable)
	case x.bad:
		return perr(errMemBounds)
	}
	b.hdr = append(b.hdr, span{h.addr, virtio.HeaderLen})
	b.payload = append(b.payload, span{x.addr, x.n})
	b.bufSize = x.n
	return pktErr{}
}

// FC@v1.16.1 packet.rs VsockPacketRx::parse over iovec.rs
// IoVecBufferMut::append_descriptor_chain (notes 1.4): any shape, header at
// chain offset 0, payload room = total - 44, no upper bound at parse time.
func (d *Device) parseRXFC(v *chainView, b *rxBuffer) pktErr {
	var total uint64
	for _, x := range v.descs {
		switch {
		case !x.write:
			return perr(errUnwritable)
		case x.bad:
			return perrText(errMemMmap, "InvalidGuestAddress")
		}
		total += uint64(x.n)
		if total > math.MaxUint32 {
			return perr(errChainOverflow)
		}
	}
	if total < virtio.HeaderLen {
		return perr1(errChainShortHeader, total)
	}
	b.hdr = appendSpans(b.hdr, v.descs, 0, virtio.HeaderLen)
	b.payload = appendSpans(b.payload, v.descs, virtio.HeaderLen, total-virtio.HeaderLen)
	b.bufSize = uint32(total - virtio.HeaderLen)
	return pktErr{}
}

// CH@v50.0 / CH@v51.0 packet.rs from_rx_virtq_head (notes 7). The data
// descriptor's direction is not checked.
func (d *Device) parseRXCH(v *chainView, b *rxBuffer) pktErr {
	h := v.descs[0]
	switch {
	case !h.write:
		return perr(errUnwritable)
	case h.n < virtio.HeaderLen:
		return perr1(errHdrDescTooSmall, uint64(h.n))
	case d.mem.Check(h.addr, virtio.HeaderLen) != nil:
		return perr(errMemCH)
	}
	b.hdr = append(b.hdr, span{h.addr, virtio.HeaderLen})
	if len(v.descs) == 1 && !v.more {
		room := h.n - virtio.HeaderLen
		if d.mem.Check(h.addr+virtio.HeaderLen, uint64(room)) != nil {
			return perr(errMemCH)
		}
		b.payload = append(b.payload, span{h.addr + virtio.HeaderLen, room})
		b.bufSize = room
		return pktErr{}
	}
	if len(v.descs) < 2 {
		return perr(errBufDescMissing)
	}
	x := v.descs[1]
	if d.prof.RX == RXCloudHypervisorStrict && (len(v.descs) > 2 || v.more) {
		return perr(errBufDescTooSmall) // multi-descriptor RX explicitly unsupported
	}
	if x.bad {
		return perr(errMemCH)
	}
	b.payload = append(b.payload, span{x.addr, x.n})
	b.bufSize = x.n
	return pktErr{}
}

// rust-vmm/vm-virtio@049ef9fe virtio-vsock/src/packet.rs from_rx_virtq_chain.
func (d *Device) parseRXRustVMM(v *chainView, b *rxBuffer) pktErr {
	h := v.descs[0]
	switch {
	case !h.write:
		return perr(errRVReadOnly)
	case h.n < virtio.HeaderLen:
		return perr(errRVLenTooSmall)
	}
	if e := d.singleSlice(h.addr, virtio.HeaderLen); !e.ok() {
		return e
	}
	b.hdr = append(b.hdr, span{h.addr, virtio.HeaderLen})
	hasNext := len(v.descs) > 1 || v.more
	if !hasNext && h.n > virtio.HeaderLen {
		room := h.n - virtio.HeaderLen
		if e := d.singleSlice(h.addr+virtio.HeaderLen, uint64(room)); !e.ok() {
			return e
		}
		b.payload = append(b.payload, span{h.addr + virtio.HeaderLen, room})
		b.bufSize = room
		return pktErr{}
	}
	if len(v.descs) < 2 {
		return perr(errRVChainTooShort)
	}
	x := v.descs[1]
	switch {
	case !x.write:
		return perr(errRVReadOnly)
	case x.n > virtio.MaxPktBufSize:
		return perr(errRVLenTooLong)
	}
	if x.n > 0 {
		if e := d.singleSlice(x.addr, uint64(x.n)); !e.ok() {
			return e
		}
	}
	b.payload = append(b.payload, span{x.addr, x.n})
	b.bufSize = x.n
	return pktErr{}
}
