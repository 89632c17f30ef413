package device

// guestBytes is n bytes of guest memory at addr, without a copy when they
// lie in one region; else read into the scratch buffer.
func (d *Device) guestBytes(addr uint64, n uint32) []byte {
	if b, err := d.mem.Slice(addr, uint64(n)); err == nil {
		return b
	}
	b := d.scratchOf(int(n))
	_ = d.mem.ReadAt(b, addr) // the parsers checked the range
	return b
}

// guestBytesForWrite is where a host read of n bytes for addr should land:
// guest memory itself when it is one region (direct), else the scratch
// buffer, which the caller copies in.
func (d *Device) guestBytesForWrite(addr uint64, n uint32) ([]byte, bool) {
	if b, err := d.mem.Slice(addr, uint64(n)); err == nil {
		return b, true
	}
	return d.scratchOf(int(n)), false
}

func (d *Device) scratchOf(n int) []byte {
	if cap(d.scratch) < n {
		d.scratch = make([]byte, n)
	}
	return d.scratch[:n]
}

// payloadView is the first n payload bytes as one slice, for the tap. It
// does not copy when the spans are one run of guest memory (a linear skb, or
// fragments the guest happened to place back to back); otherwise the bytes
// are gathered into a buffer the device reuses, which is why OnPacket's
// payload is only valid during the call. A 64 KiB copy plus a fresh
// allocation per packet was half the cost of a bulk transfer.
func (d *Device) payloadView(spans []span, n uint64) []byte {
	if n == 0 || len(spans) == 0 {
		return nil
	}
	if uint64(spans[0].n) >= n {
		return d.guestBytes(spans[0].addr, uint32(n))
	}
	if contiguous(spans, n) {
		if b, err := d.mem.Slice(spans[0].addr, n); err == nil {
			return b
		}
	}
	if uint64(cap(d.tapBuf)) < n {
		d.tapBuf = make([]byte, n)
	}
	out := d.tapBuf[:0]
	for _, s := range spans {
		if uint64(len(out)) == n {
			break
		}
		take := min(uint64(s.n), n-uint64(len(out)))
		k := len(out)
		out = out[:k+int(take)]
		_ = d.mem.ReadAt(out[k:], s.addr) // the parsers checked the range
	}
	return out
}

// contiguous reports whether the spans covering the first n bytes follow
// each other in guest memory.
func contiguous(spans []span, n uint64) bool {
	next := spans[0].addr
	for _, s := range spans {
		if s.addr != next {
			return false
		}
		if uint64(s.n) >= n {
			return true
		}
		n -= uint64(s.n)
		next += uint64(s.n)
	}
	return false
}
