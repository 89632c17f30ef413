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

// payloadView is the first n payload bytes as one slice, for the tap.
func (d *Device) payloadView(spans []span, n uint64) []byte {
	if n == 0 {
		return nil
	}
	if len(spans) > 0 && uint64(spans[0].n) >= n {
		return d.guestBytes(spans[0].addr, uint32(n))
	}
	out := make([]byte, 0, n)
	for _, s := range spans {
		if uint64(len(out)) == n {
			break
		}
		take := min(uint64(s.n), n-uint64(len(out)))
		b := make([]byte, take)
		_ = d.mem.ReadAt(b, s.addr)
		out = append(out, b...)
	}
	return out
}
