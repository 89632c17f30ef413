// Package pattern is the byte stream every test workload writes and every
// oracle checks: byte off of a stream is a multiplicative hash of off, so a
// chunk delivered twice, out of order or at the wrong offset differs from
// the bytes at the receiver's position unless the shift is a multiple of
// the period, a prime near 1 MiB that no packet, buffer or iovec size of
// the models divides (byte counts are checked separately). Filling and
// checking copy and compare whole slices: a byte loop would run every
// comparison through the coverage hooks of an instrumented (libFuzzer)
// build.
package pattern

import (
	"bytes"
	"fmt"
	"sync"
)

// Period is the length after which the stream repeats.
const Period = 1048573

// table holds two periods, so that any offset has Period bytes after it.
var table = sync.OnceValue(func() []byte {
	t := make([]byte, 2*Period)
	for i := range t {
		t[i] = byte((uint32(i%Period) * 0x9e3779b1) >> 24)
	}
	return t
})

// Byte is the stream's byte at offset off.
func Byte(off uint64) byte { return table()[off%Period] }

// Fill fills p with the stream's bytes from offset off on.
func Fill(p []byte, off uint64) {
	t := table()
	for len(p) > 0 {
		n := copy(p, t[off%Period:][:min(len(p), Period)])
		p, off = p[n:], off+uint64(n)
	}
}

// Mismatch returns the index of the first byte of p that is not the
// stream's byte at its offset, p starting at offset off; -1 when every
// byte is.
func Mismatch(p []byte, off uint64) int64 {
	t := table()
	start := off
	for len(p) > 0 {
		n := min(len(p), Period)
		if want := t[off%Period:][:n]; !bytes.Equal(p[:n], want) {
			i := 0
			for p[i] == want[i] {
				i++
			}
			return int64(off - start + uint64(i))
		}
		p, off = p[n:], off+uint64(n)
	}
	return -1
}

// Check is Mismatch as an error that names the offset and both bytes.
func Check(p []byte, off uint64) error {
	i := Mismatch(p, off)
	if i < 0 {
		return nil
	}
	return fmt.Errorf("stream byte at offset %d is %#02x, want %#02x (data duplicated, lost or reordered)",
		off+uint64(i), p[i], Byte(off+uint64(i)))
}
