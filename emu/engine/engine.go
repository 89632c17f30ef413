// Package engine is the lab's discrete-event core: a virtual clock, a queue
// of events ordered by (time, sequence), one seeded random source and an
// ordered event log with a stable text rendering and a hash.
//
// Nothing here reads the wall clock, starts a goroutine or does I/O: the
// same seed and the same calls give the same log, byte for byte.
package engine

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"
)

// Engine runs events in virtual time.
type Engine struct {
	now time.Duration
	seq uint64
	q   eventHeap
	rng *rand.Rand
	Log *Log
	// free holds fired timers of Post events for reuse: nobody holds a
	// handle to them, and a timer per event was the engine's main cost on
	// small packets.
	free []*Timer
}

// New returns an engine at virtual time zero whose random source is seeded
// with seed.
func New(seed uint64) *Engine {
	return &Engine{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		Log: NewLog(),
	}
}

// Now is the current virtual time, counted from the start of the world.
func (e *Engine) Now() time.Duration { return e.now }

// Rand is the world's only source of randomness.
func (e *Engine) Rand() *rand.Rand { return e.rng }

// Timer is a scheduled event. Stop cancels it.
type Timer struct {
	at     time.Duration
	seq    uint64
	fn     func()
	idx    int  // position in the heap, -1 when not queued
	pooled bool // scheduled by Post: recycled once fired
}

// When returns the virtual time the timer fires at.
func (t *Timer) When() time.Duration { return t.at }

// Pending reports whether the timer is still queued.
func (t *Timer) Pending() bool { return t != nil && t.idx >= 0 }

// At schedules fn at virtual time at, or now if at is in the past. Events at
// the same time run in the order they were scheduled.
func (e *Engine) At(at time.Duration, fn func()) *Timer {
	if at < e.now {
		at = e.now
	}
	e.seq++
	t := &Timer{at: at, seq: e.seq, fn: fn}
	heap.Push(&e.q, t)
	return t
}

// Post schedules fn at virtual time at like At, but returns no handle, so the
// event cannot be stopped and its timer is recycled once it has fired. It
// orders with At's events by the same (time, sequence) rule.
func (e *Engine) Post(at time.Duration, fn func()) {
	if at < e.now {
		at = e.now
	}
	e.seq++
	var t *Timer
	if n := len(e.free); n > 0 {
		t = e.free[n-1]
		e.free[n-1] = nil
		e.free = e.free[:n-1]
	} else {
		t = &Timer{pooled: true}
	}
	t.at, t.seq, t.fn = at, e.seq, fn
	heap.Push(&e.q, t)
}

// After schedules fn d after now.
func (e *Engine) After(d time.Duration, fn func()) *Timer { return e.At(e.now+d, fn) }

// Stop cancels t. It reports whether t was still pending; stopping a nil or
// fired timer is harmless.
func (e *Engine) Stop(t *Timer) bool {
	if t == nil || t.idx < 0 {
		return false
	}
	heap.Remove(&e.q, t.idx)
	return true
}

// Next returns the time of the earliest pending event.
func (e *Engine) Next() (time.Duration, bool) {
	if len(e.q) == 0 {
		return 0, false
	}
	return e.q[0].at, true
}

// Step runs the earliest pending event, moving the clock to its time. It
// reports whether there was one.
func (e *Engine) Step() bool {
	if len(e.q) == 0 {
		return false
	}
	t := heap.Pop(&e.q).(*Timer)
	e.now = t.at
	fn := t.fn
	if t.pooled {
		t.fn = nil
		e.free = append(e.free, t)
	}
	fn()
	return true
}

// RunUntil runs every event due at or before at, then sets the clock to at.
// An event may schedule more events; those due by at run too.
func (e *Engine) RunUntil(at time.Duration) {
	for len(e.q) > 0 && e.q[0].at <= at {
		e.Step()
	}
	if at > e.now {
		e.now = at
	}
}

// NoProgressError is RunUntilBounded's report of a model that kept
// scheduling events without reaching the target time.
type NoProgressError struct {
	Steps int           // events run
	At    time.Duration // the clock when it gave up
}

func (e *NoProgressError) Error() string {
	return fmt.Sprintf("engine did not go idle: %d events run, still %s", e.Steps, FormatTime(e.At))
}

// RunUntilBounded is RunUntil for tests and fuzz targets: after maxSteps
// events it gives up with a *NoProgressError instead of looping forever, so
// a model that spins at one instant fails rather than hangs.
func (e *Engine) RunUntilBounded(at time.Duration, maxSteps int) error {
	for steps := 0; len(e.q) > 0 && e.q[0].at <= at; steps++ {
		if steps >= maxSteps {
			return &NoProgressError{Steps: steps, At: e.now}
		}
		e.Step()
	}
	e.RunUntil(at) // moves the clock; nothing is due any more
	return nil
}

// RunIdle runs events due now, without moving the clock.
func (e *Engine) RunIdle() { e.RunUntil(e.now) }

// Pending returns the number of queued events.
func (e *Engine) Pending() int { return len(e.q) }

type eventHeap []*Timer

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *eventHeap) Push(x any) {
	t := x.(*Timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *eventHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// Logf adds a record at the current time when its kind is kept. The format
// is only rendered then.
func (e *Engine) Logf(k Kind, comp, format string, args ...any) {
	if !e.Log.Enabled(k) {
		return
	}
	e.Log.Add(e.now, k, comp, fmt.Sprintf(format, args...))
}
