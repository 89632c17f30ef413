package device

import (
	"math"

	"github.com/vsocklab/vsocklab/virtio"
)

// span is a run of guest memory: one iovec.
type span struct {
	addr uint64
	n    uint32
}

// txPacket is a parsed TX chain. Reused for every packet.
type txPacket struct {
	hdr virtio.Header
	// payload is the hdr.Len payload bytes, iovec by iovec, as the device
	// will copy them (one span per descriptor piece).
	payload []span
	// noBuf: the packet has no data buffer at all, so an RW is dropped
	// ("dropping empty data packet"): Firecracker v1.6+ when the chain holds
	// no byte past the header (buf_size() == 0), the others when hdr.len==0.
	noBuf bool
	// oneIovec: the payload is a single buffer to the device even if it sits
	// in several descriptors (CH v51 copies it into an owned buffer).
	oneIovec bool
	// overrun: a lone CH descriptor shorter than 44+hdr.len; forwarding it
	// panics the worker (CH before v52).
	overrun bool
	raw     [virtio.HeaderLen]byte
}

func (p *txPacket) reset() {
	p.hdr = virtio.Header{}
	p.payload = p.payload[:0]
	p.noBuf, p.oneIovec, p.overrun = false, false, false
}

func (p *txPacket) payloadLen() uint64 {
	var n uint64
	for _, s := range p.payload {
		n += uint64(s.n)
	}
	return n
}

// parseTX applies the profile's TX chain rules to v.
func (d *Device) parseTX(v *chainView, p *txPacket) pktErr {
	p.reset()
	if e := v.walkError(); !e.ok() {
		return e
	}
	switch d.prof.TX {
	case TXFirecrackerLegacy:
		return d.parseTXFCLegacy(v, p)
	case TXFirecracker:
		return d.parseTXFC(v, p)
	case TXCloudHypervisor, TXCloudHypervisorWalk:
		return d.parseTXCH(v, p)
	default:
		return d.parseTXRustVMM(v, p)
	}
}

// readHeaderAt reads the 44 header bytes at addr.
func (d *Device) readHeaderAt(addr uint64, p *txPacket) error {
	if b, err := d.mem.Slice(addr, virtio.HeaderLen); err == nil {
		p.hdr, _ = virtio.DecodeHeader(b)
		return nil
	}
	if err := d.mem.ReadAt(p.raw[:], addr); err != nil {
		return err
	}
	p.hdr, _ = virtio.DecodeHeader(p.raw[:])
	return nil
}

// FC@v1.5.1 packet.rs from_tx_virtq_head, checks in source order (docs/sources.md#fc-tx-parse-legacy).
func (d *Device) parseTXFCLegacy(v *chainView, p *txPacket) pktErr {
	h := v.descs[0]
	switch {
	case h.write:
		return perr(errUnreadable)
	case d.mem.Check(h.addr, virtio.HeaderLen) != nil: // only the 44 header bytes are checked
		return perr(errMemBounds)
	case h.n < virtio.HeaderLen:
		return perr1(errHdrDescTooSmall, uint64(h.n))
	}
	if err := d.readHeaderAt(h.addr, p); err != nil {
		return perr(errMemMmap)
	}
	if p.hdr.Len == 0 { // accepted without looking for a data descriptor
		p.noBuf = true
		return pktErr{}
	}
	if p.hdr.Len > virtio.MaxPktBufSize {
		return perr1(errInvalidPktLen, uint64(p.hdr.Len))
	}
	if len(v.descs) < 2 {
		return perr(errBufDescMissing)
	}
	b := v.descs[1] // a third descriptor is never read
	switch {
	case b.write:
		return perr(errUnreadable)
	case b.bad:
		return perr(errMemBounds)
	case b.n < p.hdr.Len:
		return perr(errBufDescTooSmall)
	}
	p.payload = append(p.payload, span{b.addr, p.hdr.Len})
	return pktErr{}
}

// FC@v1.16.1 packet.rs VsockPacketTx::parse over iovec.rs
// IoVecBuffer::load_descriptor_chain (docs/sources.md#fc-tx-parse): the whole chain is loaded
// first, then the header and length are checked.
func (d *Device) parseTXFC(v *chainView, p *txPacket) pktErr {
	var total uint64
	for _, x := range v.descs {
		switch {
		case x.write:
			return perr(errUnreadable)
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
	if err := d.gather(v.descs, 0, p.raw[:]); err != nil {
		return perrText(errMemMmap, "InvalidGuestAddress")
	}
	p.hdr, _ = virtio.DecodeHeader(p.raw[:])
	if p.hdr.Len > virtio.MaxPktBufSize {
		return perr1(errInvalidPktLen, uint64(p.hdr.Len))
	}
	if uint64(p.hdr.Len) > total-virtio.HeaderLen {
		return perr2(errChainShortPacket, total, uint64(p.hdr.Len))
	}
	p.payload = appendSpans(p.payload, v.descs, virtio.HeaderLen, uint64(p.hdr.Len))
	p.noBuf = total == virtio.HeaderLen // buf_size() == 0
	return pktErr{}
}

// CH@v50.0 packet.rs from_tx_virtq_head (TXCloudHypervisor) and CH@v51.0
// (TXCloudHypervisorWalk), checks in source order (docs/sources.md#ch-tx-parse).
func (d *Device) parseTXCH(v *chainView, p *txPacket) pktErr {
	h := v.descs[0]
	switch {
	case h.write:
		return perr(errUnreadable)
	case h.n < virtio.HeaderLen:
		return perr1(errHdrDescTooSmall, uint64(h.n))
	}
	if d.mem.Check(h.addr, virtio.HeaderLen) != nil || d.readHeaderAt(h.addr, p) != nil {
		return perr(errMemCH)
	}
	if p.hdr.Len == 0 {
		p.noBuf = true
		return pktErr{}
	}
	if p.hdr.Len > virtio.MaxPktBufSize {
		return perr1(errInvalidPktLen, uint64(p.hdr.Len))
	}
	if len(v.descs) == 1 && !v.more { // a lone head carries header and data
		room := h.n - virtio.HeaderLen
		if d.mem.Check(h.addr+virtio.HeaderLen, uint64(room)) != nil {
			return perr(errMemCH)
		}
		if room < p.hdr.Len {
			if !d.prof.HaltOnShortInlineTX {
				return perr(errBufDescTooSmall) // CH@v52.0, 9f405a21a
			}
			p.overrun = true // accepted: the worker indexes past it later
			p.payload = append(p.payload, span{h.addr + virtio.HeaderLen, room})
			return pktErr{}
		}
		p.payload = append(p.payload, span{h.addr + virtio.HeaderLen, p.hdr.Len})
		return pktErr{}
	}
	if len(v.descs) < 2 {
		return perr(errBufDescMissing)
	}
	b := v.descs[1]
	if b.write {
		return perr(errUnreadable)
	}
	dataHasNext := len(v.descs) > 2 || v.more
	if d.prof.TX == TXCloudHypervisorWalk && dataHasNext {
		return d.walkTXCH(v, p)
	}
	// v50: exactly this one data descriptor; anything after it is never read.
	if b.n < p.hdr.Len {
		return perr(errBufDescTooSmall)
	}
	if b.bad {
		return perr(errMemCH)
	}
	p.payload = append(p.payload, span{b.addr, p.hdr.Len})
	return pktErr{}
}

// walkTXCH is CH v51's multi-descriptor path: every data descriptor must be
// readable and is walked, min(len, remaining) bytes of each are copied into
// one owned buffer; short in total -> BufDescTooSmall.
func (d *Device) walkTXCH(v *chainView, p *txPacket) pktErr {
	want := uint64(p.hdr.Len)
	var got uint64
	for _, x := range v.descs[1:] {
		if x.write {
			return perr(errUnreadable)
		}
		if x.n > 0 && got < want {
			take := min(uint64(x.n), want-got)
			if d.mem.Check(x.addr, take) != nil {
				return perr(errMemCH)
			}
			p.payload = append(p.payload, span{x.addr, uint32(take)})
			got += take
		}
	}
	if v.more { // the last descriptor says NEXT but the chain ends
		return perr(errBufDescMissing)
	}
	if got < want {
		return perr(errBufDescTooSmall)
	}
	p.oneIovec = true
	return pktErr{}
}

// rust-vmm/vm-virtio@049ef9fe virtio-vsock/src/packet.rs from_tx_virtq_chain,
// as vhost-device-vsock calls it with max_data_size = tx_buffer_size (64 KiB).
func (d *Device) parseTXRustVMM(v *chainView, p *txPacket) pktErr {
	h := v.descs[0]
	switch {
	case h.write:
		return perr(errRVWriteOnly)
	case h.n < virtio.HeaderLen:
		return perr(errRVLenTooSmall)
	}
	if e := d.singleSlice(h.addr, virtio.HeaderLen); !e.ok() {
		return e
	}
	if d.readHeaderAt(h.addr, p) != nil {
		return perr(errRVMemory)
	}
	if p.hdr.Len == 0 {
		p.noBuf = true
		return pktErr{}
	}
	if p.hdr.Len > virtio.MaxPktBufSize {
		return perr1(errRVInvalidLen, uint64(p.hdr.Len))
	}
	hasNext := len(v.descs) > 1 || v.more
	if !hasNext && h.n-virtio.HeaderLen >= p.hdr.Len {
		if e := d.singleSlice(h.addr+virtio.HeaderLen, uint64(p.hdr.Len)); !e.ok() {
			return e
		}
		p.payload = append(p.payload, span{h.addr + virtio.HeaderLen, p.hdr.Len})
		return pktErr{}
	}
	if len(v.descs) < 2 {
		return perr(errRVChainTooShort)
	}
	b := v.descs[1]
	switch {
	case b.write:
		return perr(errRVWriteOnly)
	case b.n < p.hdr.Len:
		return perr(errRVLenTooSmall)
	}
	if e := d.singleSlice(b.addr, uint64(p.hdr.Len)); !e.ok() {
		return e
	}
	p.payload = append(p.payload, span{b.addr, p.hdr.Len})
	return pktErr{}
}

// singleSlice is rust-vmm's get_single_slice: the range must be backed and
// lie in one memory region.
func (d *Device) singleSlice(addr, n uint64) pktErr {
	if d.mem.Check(addr, n) != nil {
		return perr(errRVMemory)
	}
	if _, err := d.mem.Slice(addr, n); err != nil {
		return perr("FragmentedMemory")
	}
	return pktErr{}
}

// appendSpans appends the spans covering bytes [off, off+n) of the chain.
func appendSpans(dst []span, ds []desc, off, n uint64) []span {
	for _, x := range ds {
		if n == 0 {
			break
		}
		if off >= uint64(x.n) {
			off -= uint64(x.n)
			continue
		}
		take := min(uint64(x.n)-off, n)
		dst = append(dst, span{x.addr + off, uint32(take)})
		n -= take
		off = 0
	}
	return dst
}

// gather copies bytes [off, off+len(p)) of the chain into p.
func (d *Device) gather(ds []desc, off uint64, p []byte) error {
	done := 0
	for _, x := range ds {
		if done == len(p) {
			break
		}
		if off >= uint64(x.n) {
			off -= uint64(x.n)
			continue
		}
		take := min(uint64(x.n)-off, uint64(len(p)-done))
		if err := d.mem.ReadAt(p[done:done+int(take)], x.addr+off); err != nil {
			return err
		}
		done += int(take)
		off = 0
	}
	return nil
}
