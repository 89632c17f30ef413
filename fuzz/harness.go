package fuzz

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Shared pieces of the system-level harnesses: a byte reader that never
// fails (a fuzzer's input ends where it ends: missing bytes read as zero), a
// bounded engine loop and a memory wrapper that records unchecked accesses.
// The stream oracles' bytes are package internal/pattern's.

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
