package fuzz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Shared pieces of the system-level harnesses: a byte reader that never
// fails (a fuzzer's input ends where it ends: missing bytes read as zero), a
// bounded engine loop, a memory wrapper that records unchecked accesses and
// the position-dependent byte pattern of the stream oracles.

// input reads fuzzer bytes; past the end every read is zero and done
// reports true.
type input struct {
	b []byte
}

func (in *input) done() bool { return len(in.b) == 0 }

func (in *input) u8() byte {
	if len(in.b) == 0 {
		return 0
	}
	v := in.b[0]
	in.b = in.b[1:]
	return v
}

func (in *input) u16() uint16 {
	var t [2]byte
	n := copy(t[:], in.b)
	in.b = in.b[n:]
	return binary.LittleEndian.Uint16(t[:])
}

func (in *input) u32() uint32 {
	var t [4]byte
	n := copy(t[:], in.b)
	in.b = in.b[n:]
	return binary.LittleEndian.Uint32(t[:])
}

// bytes takes up to n bytes.
func (in *input) bytes(n int) []byte {
	n = min(n, len(in.b))
	v := in.b[:n]
	in.b = in.b[n:]
	return v
}

// maxSteps bounds the events one harness run may execute. Every target
// does far less work than this per run; a model that schedules events
// forever hits it and the target fails with *engine.NoProgressError.
const maxSteps = 1 << 18

// runUntil runs every event due at or before at, like Engine.RunUntil, but
// fails instead of looping forever.
func runUntil(eng *engine.Engine, at time.Duration) error {
	return eng.RunUntilBounded(at, maxSteps)
}

// settle runs the events due now.
func settle(eng *engine.Engine) error { return runUntil(eng, eng.Now()) }

// guardMem is guest memory that records every read or write the device
// attempts outside it. The models check a range (Check, Slice) before they
// touch it, so a failing ReadAt or WriteAt means an unchecked access: in a
// real VMM, a read or write of host memory the guest chose.
type guardMem struct {
	*virtio.AddressSpace
	bad error // first failing ReadAt/WriteAt
}

func (m *guardMem) ReadAt(p []byte, addr uint64) error {
	err := m.AddressSpace.ReadAt(p, addr)
	if err != nil && m.bad == nil {
		m.bad = fmt.Errorf("unchecked guest memory read: %w", err)
	}
	return err
}

func (m *guardMem) WriteAt(p []byte, addr uint64) error {
	err := m.AddressSpace.WriteAt(p, addr)
	if err != nil && m.bad == nil {
		m.bad = fmt.Errorf("unchecked guest memory write: %w", err)
	}
	return err
}

// The test streams' bytes: byte off of a stream is patternTable[off %
// patternPeriod], a multiplicative hash of the offset, so a chunk delivered
// twice, out of order or at the wrong offset differs from the bytes at the
// receiver's position unless the shift is a multiple of the period, a prime
// near 1 MiB that no packet, buffer or iovec size of the models divides
// (and byte counts are checked separately). Filling and checking copy and
// compare whole slices: a byte loop would run every comparison through the
// coverage hooks of an instrumented (libFuzzer) build.
const patternPeriod = 1048573

var patternTable = func() []byte {
	t := make([]byte, 2*patternPeriod)
	for i := range t {
		t[i] = byte((uint32(i%patternPeriod) * 0x9e3779b1) >> 24)
	}
	return t
}()

// patternByte is the byte at offset off of a test stream.
func patternByte(off uint64) byte { return patternTable[off%patternPeriod] }

// fillPattern fills p with the stream bytes from offset off on.
func fillPattern(p []byte, off uint64) {
	for len(p) > 0 {
		n := copy(p, patternTable[off%patternPeriod:][:min(len(p), patternPeriod)])
		p, off = p[n:], off+uint64(n)
	}
}

// checkPattern reports the first byte of p that is not the stream's byte at
// its offset.
func checkPattern(p []byte, off uint64) error {
	for len(p) > 0 {
		n := min(len(p), patternPeriod)
		if want := patternTable[off%patternPeriod:][:n]; !bytes.Equal(p[:n], want) {
			i := 0
			for p[i] == want[i] {
				i++
			}
			return fmt.Errorf("stream byte at offset %d is %#02x, want %#02x (data duplicated, lost or reordered)", off+uint64(i), p[i], want[i])
		}
		p, off = p[n:], off+uint64(n)
	}
	return nil
}
