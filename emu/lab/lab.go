// Package lab runs real Go programs against the emulated vsock world.
//
// Guest programs get AF_VSOCK-style net.Listener and net.Conn (Guest), host
// programs get Unix sockets in the host namespace where the device speaks
// Firecracker's hybrid vsock protocol (Host). Blocking happens only on
// channels, so inside a testing/synctest bubble everything — deadlines,
// timeouts, yamux keepalives, backoff sleeps — runs on virtual time.
//
// Run executes a scenario in a bubble: a driver goroutine owns the world,
// applies the programs' requests in a deterministic order whenever the
// bubble is idle, and wakes one blocked program at a time, so that the
// event log does not depend on goroutine scheduling. Start runs the same
// driver against the wall clock, for serving real clients.
//
// Repeated bubbles in one process are safe with hashicorp/yamux, whose
// package-level timer pool would otherwise hand one bubble's timers to the
// next: Run serialises bubbles and empties sync.Pools around each.
package lab

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
)

// Config describes a lab run.
type Config struct {
	emu.Config
	// MaxTime stops the lab at this virtual time even if the scenario has
	// not returned (0: no limit). Programs then see their operations fail.
	MaxTime time.Duration
	// Keep selects the kinds of event log records kept (0: all).
	Keep engine.Kind
}

// Lab is a running world with its programs.
type Lab struct {
	Guest *Guest
	Host  *Host

	d      *driver
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLab(cfg Config, bubble bool) (*Lab, error) {
	w, err := emu.New(cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.Keep != 0 {
		w.Eng.Log.Keep(cfg.Keep)
	}
	return labOf(w, cfg.MaxTime, bubble), nil
}

func labOf(w *emu.World, maxTime time.Duration, bubble bool) *Lab {
	d := newDriver(w, bubble)
	d.maxAt = maxTime
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lab{Host: &Host{d: d}, d: d, ctx: ctx, cancel: cancel}
	if w.Guest != nil {
		l.Guest = &Guest{d: d}
	}
	d.onStop = append(d.onStop, cancel)
	return l
}

// Context is cancelled when the lab stops; programs must return then.
func (l *Lab) Context() context.Context { return l.ctx }

// Now is the virtual time since the world started.
func (l *Lab) Now() time.Duration { return l.d.now() }

// Go starts a program goroutine that the lab waits for when it stops.
func (l *Lab) Go(f func(ctx context.Context)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f(l.ctx)
	}()
}

// Do runs f on the world at a deterministic point and returns its error.
// f must not block.
func (l *Lab) Do(f func(w *emu.World) error) error {
	var ferr error
	if err := l.d.exec(reqKey{op: opWorld}, func() { ferr = f(l.d.w) }); err != nil {
		return err
	}
	return ferr
}

// Suspend snapshots the VM: the guest freezes, the device posts the reset
// event and its host connections die. Guest programs' operations wait.
func (l *Lab) Suspend() error {
	return l.Do(func(w *emu.World) error { return w.Suspend() })
}

// Resume restores the VM; waiting guest operations go on.
func (l *Lab) Resume() error {
	return l.Do(func(w *emu.World) error {
		if err := w.Resume(); err != nil {
			return err
		}
		l.d.releaseHeld()
		return nil
	})
}

// Logf adds a program's line to the event log at the current virtual time.
// It does not wait for the driver, so it is safe under the caller's locks.
func (l *Lab) Logf(comp, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.d.post(&request{
		key:  reqKey{op: opLog, detail: comp + " " + msg},
		desc: "Logf",
		attempt: func(bool) bool {
			l.d.w.Eng.Log.Add(l.d.w.Eng.Now(), engine.KindProgram, comp, msg)
			return true
		},
		fail: func(error) {},
	})
}

// Pipes returns what the lab saw of every pipe's writer.
func (l *Lab) Pipes() []PipeStats {
	var out []PipeStats
	_ = l.d.exec(reqKey{op: opWorld}, func() {
		for _, p := range l.d.pipes {
			out = append(out, *p)
		}
	})
	return out
}

// Result is what a lab run leaves behind.
type Result struct {
	World   *emu.World // the world after the run, for inspection
	Log     string     // the event log, one line per record
	Hash    string     // SHA-256 of Log
	Blocked []Blocked  // program operations still waiting when the lab stopped
	Leaked  []string   // goroutines of the bubble still alive at the end
	Pipes   []PipeStats
	End     time.Duration
}

// bubbles serialises bubbles in a process: yamux's timer pool is shared by
// the whole process, so two bubbles using yamux at once would trade timers.
var bubbles sync.Mutex

// drainPools empties every sync.Pool: a pool is cleared by the garbage
// collector in two steps (primary, then victim cache).
func drainPools() {
	runtime.GC()
	runtime.GC()
}

// Run executes scenario in a synctest bubble with a fresh world built from
// cfg. When scenario returns, the lab cancels its context, fails every
// waiting operation, waits for programs started with Go, and returns the
// log. Programs must honour Lab.Context.
func Run(t testing.TB, cfg Config, scenario func(l *Lab)) *Result {
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatalf("lab.Run needs a *testing.T (synctest bubbles exist only under go test), got %T", t)
	}
	bubbles.Lock()
	defer bubbles.Unlock()
	// One P for the bubble: the driver's quiescence check (waitQuiet) is
	// then exact, and programs run one goroutine at a time, as the lab
	// wakes them. Restored afterwards; bubbles never overlap.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	drainPools()
	defer drainPools()
	var res *Result
	var watched atomic.Pointer[driver]
	stopWatch := watchStalls(&watched)
	defer stopWatch()
	synctest.Test(tt, func(t *testing.T) {
		l, err := newLab(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		watched.Store(l.d)
		go l.d.loop()
		// Finish even when the scenario fails a require (runtime.Goexit),
		// so the bubble can end.
		defer func() {
			res = l.finish()
			if len(res.Leaked) > 0 {
				t.Errorf("goroutines still alive after the lab stopped:\n%s", strings.Join(res.Leaked, "\n"))
			}
		}()
		scenario(l)
	})
	return res
}

// finish stops the lab and collects the result.
func (l *Lab) finish() *Result {
	l.d.stop()
	l.cancel()
	blocked := l.d.finalBlocked
	if l.d.bubble {
		synctest.Wait()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	var leaked []string
	if l.d.bubble {
		synctest.Wait()
		select {
		case <-done:
		default:
			leaked = bubbleGoroutines()
		}
	} else {
		<-done
	}
	w := l.d.w
	pipes := make([]PipeStats, 0, len(l.d.pipes))
	for _, p := range l.d.pipes {
		pipes = append(pipes, *p)
	}
	return &Result{
		World: w, Log: w.Eng.Log.String(), Hash: w.Eng.Log.Hash(),
		Blocked: blocked, Leaked: leaked, Pipes: pipes, End: w.Eng.Now(),
	}
}

// bubbleGoroutines lists the goroutines of the caller's bubble other than
// the caller and the synctest machinery, one line each: header and top frame.
func bubbleGoroutines() []string {
	self := make([]byte, 256)
	self = self[:runtime.Stack(self, false)]
	header, _, _ := strings.Cut(string(self), "\n")
	i := strings.Index(header, "synctest bubble ")
	if i < 0 {
		return nil
	}
	bubble := strings.TrimSuffix(header[i:], "]:")
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		if len(lines) < 2 || !strings.Contains(lines[0], bubble+"]") || lines[0] == header {
			continue
		}
		if strings.Contains(g, "internal/synctest.Run") || strings.Contains(g, "testingSynctestTest") || strings.Contains(g, "lab.(*Lab).finish") {
			continue
		}
		out = append(out, lines[0]+" "+strings.TrimSpace(lines[1]))
	}
	return out
}

// stallAfter is how long, in real time, the driver may make no progress
// before the watchdog calls it a stall.
const stallAfter = 20 * time.Second

// watchStalls watches, from outside the bubble, for a lab that makes no
// progress: programs deadlocked among themselves on locks, which synctest
// cannot detect because it does not count mutex waits as blocked. It
// cannot wake anything inside the bubble; it ends the process with a
// diagnosis and every goroutine's stack instead of letting the test hang
// until its timeout.
func watchStalls(d *atomic.Pointer[driver]) (stop func()) {
	done := make(chan struct{})
	go func() {
		var last uint64
		since := time.Now()
		for {
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
			dr := d.Load()
			if dr == nil || dr.rounds.Load() != last {
				if dr != nil {
					last = dr.rounds.Load()
				}
				since = time.Now()
				continue
			}
			if time.Since(since) > stallAfter {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				panic(fmt.Sprintf("lab: no progress for %s of real time: the programs in the bubble are "+
					"deadlocked, most likely on locks (look for [sync.Mutex.Lock] below), which synctest "+
					"does not report.\n\n%s", stallAfter, buf))
			}
		}
	}()
	return func() { close(done) }
}

// Start runs a world against the wall clock, without synctest, for serving
// real clients (vsocklab serve). Requests are applied as they arrive.
func Start(cfg Config) (*Lab, error) {
	l, err := newLab(cfg, false)
	if err != nil {
		return nil, err
	}
	go l.d.loop()
	return l, nil
}

// StartWorld is Start over a world the caller built, such as the
// device-and-host-only world of emu.NewExternal that the vhost-user backend
// drives from a real guest's rings. Guest is nil when the world has no guest
// model.
func StartWorld(w *emu.World) *Lab {
	l := labOf(w, 0, false)
	go l.d.loop()
	return l
}

// Stop ends a lab made by Start or StartWorld and returns its result.
func (l *Lab) Stop() *Result { return l.finish() }
