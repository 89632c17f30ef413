package lab

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
)

// errLabClosed is what a blocked or new operation gets once the lab shuts
// down; it wraps net.ErrClosed so programs treat it as a closed connection.
var errLabClosed = fmt.Errorf("lab shut down: %w", net.ErrClosed)

// op orders requests of the same object.
type op uint8

const (
	opWorld op = iota
	opLog
	opListen
	opDial
	opAccept
	opRead
	opWrite
	opDeadline
	opShutdown
	opClose
	opCancel
	opSockopt
)

// reqKey orders requests that reach the driver at the same instant: the
// object they act on (adapter objects are numbered in creation order, which
// the driver decides), then the operation, then a detail such as a dial
// target. Programs' goroutines may run in any order; their requests are
// applied in key order, so the world sees the same sequence every run.
type reqKey struct {
	obj    uint64
	op     op
	detail string
}

func (a reqKey) cmp(b reqKey) int {
	return cmp.Or(cmp.Compare(a.obj, b.obj), cmp.Compare(a.op, b.op), cmp.Compare(a.detail, b.detail))
}

// request is one blocking operation of a program, carried out by the
// driver on the world.
type request struct {
	key   reqKey
	seq   uint64 // arrival order, the last tie-break
	obj   any    // world object whose readiness retries the request; nil if it never parks
	guest bool   // acts on the guest: held while the VM is suspended
	desc  string // for leak reports
	// describe, when set, makes desc once the request waits (parked or
	// held), the only time anything reads it: for requests made call
	// after call whose description would cost more than the call.
	describe func() string

	// attempt tries the operation; cont says it is a retry after parking.
	// It returns true when the request is complete (successfully or not).
	attempt func(cont bool) bool
	// deadline returns the current deadline (zero: none).
	deadline func() time.Time
	// expire completes the request with a timeout.
	expire func()
	// fail completes the request with err (shutdown, close).
	fail func(err error)
	// onPark is called the first time the request parks.
	onPark func()
	// gone reports whether the object was closed by its owner: then the
	// request fails at once, without waiting for the driver, as an
	// operation on a closed descriptor does.
	gone func() bool
	// ends, called with d.mu held, completes the request at once when it
	// can only fail or hit end of stream without touching the world (a
	// write to a reset socket, a read at EOF), and reports whether it did.
	// Such calls need no place in the deterministic order, and making them
	// wait for an idle bubble deadlocks programs that hold a lock across
	// them while another goroutine queues on that lock (yamux's
	// Session.Close waits for its send loop under shutdownLock).
	ends func() bool

	// done wakes the owner blocked in do or doQuiet (nil: posted, nobody
	// waits). It has room for the one signal (wake): a request completes
	// once, and its owner receives before it submits the request again,
	// so a request reused call after call (ioOp) keeps its channel.
	done     chan struct{}
	parkedAt time.Duration
	parked   bool
}

// described fills in desc from describe, for a request about to wait.
func (r *request) described() {
	if r.describe != nil {
		r.desc = r.describe()
	}
}

// wake tells the owner of a completed request, blocked in do or doQuiet,
// that it may go on.
func (r *request) wake() { r.done <- struct{}{} }

// newDone gives r its done channel unless it has one from an earlier call.
func (r *request) newDone() {
	if r.done == nil {
		r.done = make(chan struct{}, 1)
	}
}

// expired reports whether r's deadline has passed at now.
func (r *request) expired(now time.Time) bool {
	if r.deadline == nil {
		return false
	}
	dl := r.deadline()
	return !dl.IsZero() && !now.Before(dl)
}

// driver owns the world. Programs' goroutines submit requests and block on
// them; the driver applies them in a deterministic order and wakes their
// owners. In a synctest bubble it waits for the bubble to be idle before
// each step and wakes one owner at a time, so goroutine scheduling does not
// leak into what the world sees.
type driver struct {
	w      *emu.World
	start  time.Time
	bubble bool
	maxAt  time.Duration // stop at this virtual time (0: never)

	mu      sync.Mutex
	pending []*request
	posted  []*request
	// spare are emptied request lists whose arrays the next rounds reuse
	// for pending and posted: a round takes both lists, and appending to
	// fresh ones allocated in every round.
	spare    [2][]*request
	quiet    []*request // applied once nothing else moves at this instant
	stopping bool       // asked to stop: the current round is the last
	stopped  bool       // stopped: requests fail at once
	poke     chan struct{}

	// Owned by the driver goroutine.
	seq      uint64
	nextObj  uint64
	parked   []*request
	held     []*request
	ready    []*request
	dirty    map[any]bool // objects that may let parked requests progress
	settling map[any]bool // settle's scratch: the previous round's dirty set
	exited   chan struct{}
	onStop   []func()
	pipes    []*PipeStats

	finalBlocked []Blocked // what was still waiting when the driver stopped
	// onDeadlock is told, on the driver goroutine, when the lab stops
	// because the bubble stood still for idleLimit (see loop).
	onDeadlock func(desc string)

	// Read by the stall watchdog from outside the bubble.
	rounds atomic.Uint64 // driver loop iterations

	// deadlineGen counts deadline changes (Conn.SetDeadline and friends,
	// Listener.SetDeadline); with scannedAt and scannedGen, owned by the
	// driver goroutine, it lets expireDeadlines skip scans that cannot
	// expire anything.
	deadlineGen atomic.Uint64
	scannedAt   time.Time
	scannedGen  uint64
	scanned     bool
}

func newDriver(w *emu.World, bubble bool) *driver {
	d := &driver{
		w:        w,
		start:    time.Now(),
		bubble:   bubble,
		poke:     make(chan struct{}, 1),
		dirty:    map[any]bool{},
		settling: map[any]bool{},
		exited:   make(chan struct{}),
	}
	if w.Guest != nil {
		w.Guest.Wake = d.markDirty
	}
	if !bubble {
		// A real-time world serves real clients for as long as they like:
		// its log must not grow with their traffic.
		w.Eng.Log.Limit(LiveLogLimit)
	}
	return d
}

// now is the virtual time of the world: the time elapsed since the driver
// started, on the bubble's fake clock (or the wall clock in real time).
func (d *driver) now() time.Duration { return time.Since(d.start) }

func (d *driver) markDirty(obj any) { d.dirty[obj] = true }

// newID numbers an adapter object; called only by the driver goroutine.
func (d *driver) newID() uint64 {
	d.nextObj++
	return d.nextObj
}

// wakeLoop tells the driver's loop that there is work; a poke already
// waiting is enough.
func (d *driver) wakeLoop() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// do submits r and blocks until the driver completes it.
func (d *driver) do(r *request) {
	r.newDone()
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		r.fail(errLabClosed)
		return
	}
	if r.gone != nil && r.gone() {
		d.mu.Unlock()
		r.fail(net.ErrClosed)
		return
	}
	if r.ends != nil && !(r.guest && d.w.Suspended()) && r.ends() {
		d.mu.Unlock()
		return
	}
	d.pending = append(d.pending, r)
	d.mu.Unlock()
	d.wakeLoop()
	<-r.done
}

// doQuiet submits r to run once the current instant has settled, and
// blocks until it has: see Lab.Observe.
func (d *driver) doQuiet(r *request) {
	r.newDone()
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		r.fail(errLabClosed)
		return
	}
	d.quiet = append(d.quiet, r)
	d.mu.Unlock()
	d.wakeLoop()
	<-r.done
}

// post submits r without waiting for it: for operations that never block
// in real life (Close, SetDeadline, CloseWrite), which programs routinely
// call while holding their own locks. Waiting for the driver there could
// deadlock: the driver waits for the bubble to be idle, and a goroutine
// queued on that lock is not durably blocked.
func (d *driver) post(r *request) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.posted = append(d.posted, r)
	d.mu.Unlock()
	d.wakeLoop()
}

// exec runs f on the driver goroutine at a deterministic point.
func (d *driver) exec(key reqKey, f func()) error {
	var err error
	d.do(&request{
		key:     key,
		desc:    "world operation",
		attempt: func(bool) bool { f(); return true },
		fail:    func(e error) { err = e },
	})
	return err
}

// stop ends the lab after one last round: requests submitted up to the
// moment the bubble is idle are still applied, then every waiting and
// future request fails. It waits for the driver goroutine to return.
// Stopping at once instead would let the scheduler decide which of the
// requests racing with the stop get in.
func (d *driver) stop() {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	d.wakeLoop()
	<-d.exited
}

func (d *driver) complete(r *request) {
	r.parked = false
	if r.done == nil { // posted: nobody waits
		return
	}
	d.ready = append(d.ready, r)
}

// loop is the driver goroutine. It holds d.mu while it works on the world
// and releases it while it waits, so that programs can submit requests and
// close connections meanwhile.
func (d *driver) loop() {
	defer close(d.exited)
	var timer *time.Timer
	idleFired := false
	for {
		d.rounds.Add(1)
		if d.bubble {
			waitQuiet()
		}
		d.mu.Lock()
		posted, batch := d.posted, d.pending
		d.posted, d.pending = d.spare[0][:0], d.spare[1][:0]
		stopped := d.stopping
		if len(posted) == 0 && len(batch) == 0 && len(d.ready) == 0 {
			// Every program is blocked and nobody waits to be woken: the
			// instant has settled, and the quiet requests see all of it.
			batch, d.quiet = d.quiet, nil
		}
		d.w.Eng.RunUntil(d.now())
		if idleFired && len(posted) == 0 && len(batch) == 0 && !stopped {
			d.deadlocked()
			stopped = true
		}
		idleFired = false
		// Posted operations first: a goroutine that posts (say a Close) and
		// then blocks on a request expects them in that order.
		byKey := func(a, b *request) int { return a.key.cmp(b.key) }
		slices.SortStableFunc(posted, byKey)
		slices.SortStableFunc(batch, byKey)
		for _, list := range [2][]*request{posted, batch} {
			for _, r := range list {
				d.seq++
				r.seq = d.seq
				d.apply(r)
			}
		}
		clear(posted)
		clear(batch)
		d.spare = [2][]*request{posted, batch}
		d.settle()
		d.expireDeadlines()
		if d.maxAt > 0 && d.now() >= d.maxAt {
			stopped = true
		}
		if stopped {
			d.shutdownLocked()
			d.mu.Unlock()
			return
		}
		if len(d.ready) > 0 {
			n := 1
			if !d.bubble {
				n = len(d.ready)
			}
			for _, r := range d.ready[:n] {
				r.wake()
			}
			// Shift the rest down rather than slice past the woken: the
			// array is reused, where appending after a moving start
			// allocated a new one every few rounds.
			rest := copy(d.ready, d.ready[n:])
			clear(d.ready[rest:])
			d.ready = d.ready[:rest]
			d.mu.Unlock()
			continue
		}
		if len(d.quiet) > 0 { // a round with nothing else applies them
			d.mu.Unlock()
			continue
		}
		wait, ok := d.nextWake()
		idle := false
		if !ok && d.bubble {
			// Nothing of the world or the programs' deadlines is due. In a
			// bubble, time moves only when every goroutine is blocked, so
			// if this timer fires, every program has waited idleLimit with
			// nothing due earlier: a deadlock, which synctest would end
			// with a panic and no word of the log.
			wait, ok, idle = idleLimit, true, true
		}
		d.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Hour)
		}
		timer.Stop()
		var tc <-chan time.Time
		if ok {
			timer.Reset(max(wait, 0))
			tc = timer.C
		}
		select {
		case <-d.poke:
		case <-tc:
			idleFired = idle
		}
	}
}

// idleLimit is how long, in virtual time, a bubble may stand still with
// nothing due before the lab calls it a deadlock. A program that sleeps
// longer than this without touching the lab would be taken for one.
const idleLimit = 1000 * time.Hour

// deadlocked records that every program is stuck and says which operations
// wait; the caller stops the lab, which fails them.
func (d *driver) deadlocked() {
	var waits []string
	for _, b := range d.blocked() {
		waits = append(waits, b.String())
	}
	desc := fmt.Sprintf("nothing happened for %s of virtual time and nothing is due: the programs are deadlocked; waiting: %s",
		idleLimit, strings.Join(waits, "; "))
	if len(waits) == 0 {
		desc = fmt.Sprintf("nothing happened for %s of virtual time and nothing is due: the programs are deadlocked, none of them in a lab operation", idleLimit)
	}
	d.w.Eng.Logf(engine.KindProgram, "lab", "%s", desc)
	if d.onDeadlock != nil {
		d.onDeadlock(desc)
	}
}

// failNow completes, from the calling goroutine, every request on obj that
// has not completed yet, with err. Close uses it: a close never blocks in
// real life, and programs close while holding locks other goroutines wait
// on (yamux's Session.Close), so its effect on waiting reads and writes
// cannot wait for the bubble to be idle. The world-side close is posted.
// The caller holds d.mu.
func (d *driver) failNow(obj any, err error) {
	drop := func(r *request) bool {
		if r.obj != obj || r.done == nil {
			return false
		}
		r.parked = false
		r.fail(err)
		r.wake()
		return true
	}
	d.pending = slices.DeleteFunc(d.pending, drop)
	d.parked = slices.DeleteFunc(d.parked, drop)
	d.held = slices.DeleteFunc(d.held, drop)
	// Requests on obj that already completed but wait their turn to be
	// woken go now too: the closer may be waiting for their owners (yamux's
	// Session.Close waits for its send loop while holding the lock a stream
	// closing at the same time queues on), and their results are final.
	d.ready = slices.DeleteFunc(d.ready, func(r *request) bool {
		if r.obj != obj {
			return false
		}
		r.wake()
		return true
	})
}

// apply runs a new request for the first time.
func (d *driver) apply(r *request) {
	if r.guest && d.w.Suspended() {
		r.described()
		d.held = append(d.held, r)
		return
	}
	if r.expired(time.Now()) {
		r.expire()
		d.complete(r)
		return
	}
	if r.attempt(false) {
		d.complete(r)
		return
	}
	r.described()
	if r.obj == nil {
		panic("lab: a request without an object cannot park: " + r.desc)
	}
	r.parked = true
	r.parkedAt = d.now()
	if r.onPark != nil {
		r.onPark()
	}
	d.parked = append(d.parked, r)
}

// settle runs the world's events due now and retries parked requests whose
// objects became ready, until nothing moves.
func (d *driver) settle() {
	for {
		d.w.Eng.RunUntil(d.now())
		if len(d.dirty) == 0 {
			return
		}
		// Retries mark objects dirty again: they go to the next round.
		dirty := d.dirty
		d.dirty, d.settling = d.settling, dirty
		d.parked = slices.DeleteFunc(d.parked, func(r *request) bool {
			if r.parked && dirty[r.obj] && r.attempt(true) {
				d.complete(r)
			}
			return !r.parked
		})
		clear(dirty)
	}
}

// expireDeadlines completes the parked requests whose deadline has
// passed. It skips the scan, which takes a lock per parked request and
// ran on every round, when nothing can have expired since the last one:
// the clock has not moved (in a bubble, time stands still through the
// many rounds of one instant), no deadline has changed (the generation
// is read before the scan, so a change during it counts for the next),
// and a request parked since was checked against this same instant when
// it was applied (apply).
func (d *driver) expireDeadlines() {
	now := time.Now()
	gen := d.deadlineGen.Load()
	if d.scanned && now.Equal(d.scannedAt) && gen == d.scannedGen {
		return
	}
	d.scanned, d.scannedAt, d.scannedGen = true, now, gen
	d.parked = slices.DeleteFunc(d.parked, func(r *request) bool {
		if !r.expired(now) {
			return false
		}
		r.expire()
		d.complete(r)
		return true
	})
}

// nextWake is how long until the next world event or request deadline.
func (d *driver) nextWake() (time.Duration, bool) {
	var best time.Duration
	ok := false
	if at, has := d.w.Eng.Next(); has {
		best, ok = at-d.now(), true
	}
	now := time.Now()
	for _, r := range d.parked {
		if r.deadline == nil {
			continue
		}
		if dl := r.deadline(); !dl.IsZero() {
			if w := dl.Sub(now); !ok || w < best {
				best, ok = w, true
			}
		}
	}
	if d.maxAt > 0 {
		if w := d.maxAt - d.now(); !ok || w < best {
			best, ok = w, true
		}
	}
	return best, ok
}

// releaseHeld re-applies guest requests held while the VM was suspended.
func (d *driver) releaseHeld() {
	held := d.held
	d.held = nil
	for _, r := range held {
		d.apply(r)
	}
}

// Blocked describes an operation still waiting when the lab stopped.
type Blocked struct {
	Desc  string
	Since time.Duration
}

func (b Blocked) String() string {
	return fmt.Sprintf("%s blocked since %s", b.Desc, engine.FormatTime(b.Since))
}

// shutdownLocked fails every request still waiting and every later one.
func (d *driver) shutdownLocked() {
	d.stopped = true
	batch := slices.Concat(d.pending, d.quiet)
	d.pending, d.posted, d.quiet = nil, nil, nil
	d.finalBlocked = d.blocked()
	for _, f := range d.onStop {
		f()
	}
	for _, r := range d.ready { // complete already: their results stand
		r.wake()
	}
	for _, r := range slices.Concat(d.parked, d.held, batch) {
		r.fail(errLabClosed)
		if r.done != nil {
			r.wake()
		}
	}
	d.ready, d.parked, d.held = nil, nil, nil
}

// blocked lists the requests parked right now, oldest first.
func (d *driver) blocked() []Blocked {
	var out []Blocked
	for _, r := range d.parked {
		out = append(out, Blocked{Desc: r.desc, Since: r.parkedAt})
	}
	for _, r := range d.held {
		out = append(out, Blocked{Desc: r.desc + " (held: VM suspended)", Since: r.parkedAt})
	}
	return out
}
