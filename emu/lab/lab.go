// Package lab runs real Go programs against the emulated vsock world.
//
// Guest programs get AF_VSOCK-style net.Listener and net.Conn (Guest), host
// programs get Unix sockets in the host namespace where the device speaks
// Firecracker's hybrid vsock protocol (Host, DialVsock); both sides also
// have github.com/mdlayher/vsock's API (Vsock). Blocking happens only on
// channels, so inside a testing/synctest bubble everything — deadlines,
// timeouts, yamux keepalives, backoff sleeps — runs on virtual time.
//
// Test executes a scenario in a bubble and hands it the bubble's
// *testing.T (Run does the same for scenarios that take only the lab): a
// driver goroutine owns the world, applies the programs' requests in a
// deterministic order whenever the bubble is idle, and wakes one blocked
// program at a time, so that the event log does not depend on goroutine
// scheduling. Start runs the same driver against the wall clock, for
// serving real clients.
//
// Repeated bubbles in one process are safe with hashicorp/yamux, whose
// package-level timer pool would otherwise hand one bubble's timers to the
// next: Test serialises bubbles and gives each a fresh yamux timer pool. These
// process-wide measures, and the reason for each, live in bubble.go.
package lab

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
)

// DefaultSeed is the seed of a lab whose Config leaves Seed at 0: the seed
// a trace's world directive has unless it names one, so that a lab with a
// zero Config boots the same world, byte for byte, as a trace's bare
// "world" (firecracker-1.14, linux-6.12.68, guest CID 3, seed 1).
const DefaultSeed = 1

// Config describes a lab run. Its zero value is the default world of the
// traces: emu.Config's defaults for the profiles and the rest, and Seed 0
// standing for DefaultSeed. Seed 0 itself cannot be run in a lab.
type Config struct {
	emu.Config
	// MaxTime stops the lab at this virtual time even if the scenario has
	// not returned (0: no limit). Programs then see their operations fail.
	MaxTime time.Duration
	// Keep selects the kinds of event log records kept (0: all).
	Keep engine.Kind
	// FailLogLines is how many of the event log's last lines Test and Run
	// print when the scenario fails (0: 40; negative: the whole log).
	FailLogLines int
	// LogLimit bounds the event log to its last LogLimit records (see
	// engine.Log.Limit). Zero means every record for Run, whose result is
	// the whole log, and LiveLogLimit for Start, whose worlds serve real
	// clients for as long as they like and must not grow with their
	// traffic. Negative: every record, in both.
	LogLimit int
	// RecycleMemory lets Test and Run take the world's guest memory from
	// the memories earlier runs of this process used, and give it back when
	// the run ends (emu.Config.Memory): a fuzz target that runs a world per
	// exec then clears the bytes the last world wrote instead of
	// allocating and clearing 16 MiB each time. The result's World must
	// then not read guest memory after the run. Ignored by Start and when
	// emu.Config.Memory is set.
	RecycleMemory bool
}

// LiveLogLimit is the event log bound of a lab whose driver runs against
// the wall clock (Start, and any other real-time use of the driver, such as
// a vhost-user back-end's) unless its Config says otherwise: enough for the
// recent history of a few hundred connections, about 4 MiB of records.
const LiveLogLimit = 1 << 15

// Lab is a running world with its programs.
type Lab struct {
	Guest *Guest
	Host  *Host

	d      *driver
	t      *testing.T // the bubble's; nil for a lab made by Start
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLab(cfg Config, bubble bool) (*Lab, error) {
	if cfg.Seed == 0 {
		cfg.Seed = DefaultSeed
	}
	// Programs see 32-bit context IDs (struct sockaddr_vm, Addr); 2 is the
	// host's and 0xffffffff VMADDR_CID_ANY.
	if cid := cfg.WithDefaults().GuestCID; cid < 3 || cid > 0xfffffffe {
		return nil, fmt.Errorf("guest CID %d: want one in [3, 4294967294]", cid)
	}
	w, err := emu.New(cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.Keep != 0 {
		w.Eng.Log.Keep(cfg.Keep)
	}
	l := labOf(w, cfg.MaxTime, bubble) // a real-time driver bounds the log to LiveLogLimit
	switch limit := cfg.LogLimit; {
	case limit > 0:
		w.Eng.Log.Limit(limit)
	case limit < 0:
		w.Eng.Log.Limit(0)
	}
	return l, nil
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

// T is the *testing.T of the bubble the lab runs in, the one Test hands
// its scenario: t.Fatal and require on it end the scenario and fail the
// test. It is nil for a lab made by Start.
func (l *Lab) T() *testing.T { return l.t }

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

// Observe runs f on the world once the current virtual instant has
// settled, after every operation the programs make at this time, and
// returns its error. Do runs at the instant's first deterministic point,
// before the programs' operations of that instant (a log line written at
// the same time, a packet a timer sends); Observe sees their effects, so
// that a measure taken at the end of a scenario is the scenario's final
// one. f must not block.
func (l *Lab) Observe(f func(w *emu.World) error) error {
	var ferr error
	l.d.doQuiet(&request{
		key:     reqKey{op: opWorld},
		desc:    "world observation",
		attempt: func(bool) bool { ferr = f(l.d.w); return true },
		fail:    func(e error) { ferr = e },
	})
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
