package fuzz

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Shared pieces of the system-level harnesses: a byte reader that never
// fails (a fuzzer's input ends where it ends: missing bytes read as zero), a
// bounded engine loop and a memory wrapper that records unchecked accesses.
// The stream oracles' bytes are package internal/pattern's.

// Input caps. Before Go counts a new interesting input it minimizes it
// (Go's src/internal/fuzz/minimize.go, 1.26): cut the tail, then try removing
// every byte and every run of bytes, keeping a candidate only when it still
// reaches the new coverage, for up to -fuzzminimizetime (60 s by default).
// On a structured input where every byte counts (descriptor tables,
// rounds whose lengths frame what follows), almost no removal survives and
// the pass costs about n²/2 execs for n bytes, while the exec counter
// stands still. A harness that reads at most max bytes bounds that work:
// bytes past the cap reach no code, so the tail cut drops them in a few
// execs, and at the harnesses' exec costs (BENCHMARKS.md) n²/2 execs of at
// most the cap take a second or two.
const (
	chainMaxInput   = 4 + 256 // CheckChain: header and 256 bytes of image
	txChainMaxInput = 512     // CheckTXChain: header and rounds
)

// capped returns the first max bytes of data.
func capped(data []byte, max int) []byte { return data[:min(len(data), max)] }

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

// memPool recycles the guest memories and scratch buffers of the
// harnesses. A fresh 64-150 KiB allocation per run was most of an exec's
// cost (large objects come straight from the heap, under its lock, and are
// zeroed page by page), and Go's minimizer runs a new input thousands of
// times: clearing a recycled buffer is several times cheaper.
var memPool sync.Pool

// zeroed returns a zeroed buffer of n bytes from the pool; give it back
// with release when the run is over.
func zeroed(n int) []byte {
	if b, ok := memPool.Get().(*[]byte); ok && cap(*b) >= n {
		buf := (*b)[:n]
		clear(buf)
		return buf
	}
	return make([]byte, n)
}

func release(b []byte) { memPool.Put(&b) }
