package lab

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// This file is the lab's whole edge with testing/synctest. Bubbles give
// the lab virtual time, but they set conditions on the whole process, and
// each trick below meets one of them:
//
//   - Bubbles exist only under the testing framework (synctest.Test needs
//     a *testing.T). Test and Run take the test's T; Main lets a program such as
//     vsocklab replay run its work as the only test of its process; Hosted
//     (hosted.go) serves runs to a process whose main is not its own, such
//     as a libFuzzer binary. Library code that only needs bubbles takes a
//     Runner.
//   - One bubble at a time (bubbles, a process-wide mutex):
//     hashicorp/yamux v0.1.2 keeps timers in a package-level sync.Pool, so
//     two bubbles using yamux at once would trade timers, and touching
//     another bubble's timer is a fatal error.
//   - A fresh yamux timer pool before and after each bubble
//     (freshYamuxTimerPool): for the same reason across bubbles that
//     follow each other.
//   - GOMAXPROCS 1 while a bubble runs: the driver's quiescence check
//     (waitQuiet) is exact on one P, and programs run one goroutine at a
//     time, as the lab wakes them. Restored afterwards.
//   - Runtime metrics sampling (waitQuiet): synctest.Wait does not count a
//     goroutine queued on a sync.Mutex as blocked, and yamux holds locks
//     across reads the driver must serve, so the driver asks the scheduler
//     itself whether anything else can run.
//   - A stall watchdog outside the bubble (watchStalls): programs
//     deadlocked among themselves on locks are invisible to synctest, so
//     the process ends with a diagnosis instead of hanging.
//   - Leaked goroutines read from stack dumps (bubbleGoroutines): synctest
//     has no API that lists a bubble's goroutines.

// Runner runs a scenario in a synctest bubble with a fresh world, as Run
// does. Library code that only needs bubbles (trace replay, the system
// checks) takes a Runner instead of a *testing.T: a test gets one from T,
// a program from Main, or from Hosted when it cannot give Main its main
// goroutine.
type Runner interface {
	Run(cfg Config, scenario func(l *Lab)) *Result
}

// T is a test's Runner: its Run is Run(t, ...).
func T(t testing.TB) Runner { return testRunner{t} }

type testRunner struct{ t testing.TB }

func (r testRunner) Run(cfg Config, scenario func(l *Lab)) *Result { return Run(r.t, cfg, scenario) }

// Main runs f as the only test of this process, through testing.Main (the
// testing package's entry point for programs that simulate "go test"), and
// exits with its status: 1 when f returns false or a bubble failed. f
// writes its output to stdout, the process's standard output; the
// framework's own lines (PASS, FAIL) go to /dev/null, so the output is f's
// alone and byte for byte what it would be under go test. Main takes
// os.Args and os.Stdout over for good: it never returns.
func Main(f func(r Runner, stdout io.Writer) (ok bool)) {
	stdout := os.Stdout
	if devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devnull
	}
	os.Args = []string{os.Args[0], "-test.run=^Main$", "-test.timeout=0"}
	testing.Main(func(pat, str string) (bool, error) { return regexp.MatchString(pat, str) },
		[]testing.InternalTest{{Name: "Main", F: func(t *testing.T) {
			if !f(T(t), stdout) {
				t.Fail()
			}
		}}}, nil, nil)
	os.Exit(0) // not reached: testing.Main exits
}

// bubbles serialises bubbles in a process: yamux's timer pool is shared by
// the whole process, so two bubbles using yamux at once would trade timers.
var bubbles sync.Mutex

// recycled are guest memories of runs that ended (Config.RecycleMemory),
// guarded by bubbles: at most one world runs at a time, so a few suffice.
var recycled []*virtio.AddressSpace

const maxRecycled = 2

// recycledMemory returns a recycled guest memory of size bytes, or a new
// one; emu.New zeroes what its last world wrote.
func recycledMemory(size int) *virtio.AddressSpace {
	for i, m := range recycled {
		if m.Check(0, uint64(size)) == nil && m.Check(uint64(size), 1) != nil {
			recycled = append(recycled[:i], recycled[i+1:]...)
			return m
		}
	}
	return virtio.NewFlatMemory(0, size)
}

// recycleMemory keeps the memory of a world whose bubble has ended, every
// goroutine that could touch it gone.
func recycleMemory(m *virtio.AddressSpace) {
	if len(recycled) == maxRecycled {
		recycled = recycled[1:]
	}
	recycled = append(recycled, m)
}

// Run executes scenario in a synctest bubble with a fresh world built from
// cfg, as Test does, for scenarios that take only the lab (the Runner's
// shape); such a scenario reaches the bubble's *testing.T through Lab.T.
// A scenario that calls t.Fatal or require on the test's own t instead
// still ends cleanly: the lab stops, prints the tail of its event log and
// fails the test.
func Run(t testing.TB, cfg Config, scenario func(l *Lab)) *Result {
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatalf("lab.Run needs a *testing.T (synctest bubbles exist only under go test), got %T", t)
	}
	return Test(tt, cfg, func(_ *testing.T, l *Lab) { scenario(l) })
}

// Test executes scenario in a synctest bubble with a fresh world built
// from cfg, and hands it the bubble's own *testing.T, as synctest.Test
// does: on that t, t.Fatal, t.FailNow and testify's require end the
// scenario and fail the test. When scenario returns (or ends that way, or
// panics), the lab cancels its context, fails every waiting operation,
// waits for programs started with Go, and returns the result. Programs
// must honour Lab.Context.
//
// When the scenario failed, the lab first logs the last Config.FailLogLines
// lines of its event log on t; the test then stops (t.FailNow), so Test
// returns only the results of passing scenarios.
func Test(t *testing.T, cfg Config, scenario func(t *testing.T, l *Lab)) *Result {
	bubbles.Lock()
	defer bubbles.Unlock()
	// One P for the bubble: the driver's quiescence check (waitQuiet) is
	// then exact, and programs run one goroutine at a time, as the lab
	// wakes them. Restored afterwards; bubbles never overlap.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	freshYamuxTimerPool()
	defer freshYamuxTimerPool()
	if cfg.RecycleMemory && cfg.Memory == nil {
		cfg.Memory = recycledMemory(cfg.WithDefaults().MemSize)
		defer recycleMemory(cfg.Memory)
	}
	var res *Result
	var watched atomic.Pointer[driver]
	stopWatch := watchStalls(&watched)
	defer stopWatch()
	synctest.Test(t, func(bt *testing.T) {
		l, err := newLab(cfg, true)
		if err != nil {
			bt.Fatal(err)
		}
		l.t = bt
		l.d.onDeadlock = func(desc string) { bt.Errorf("lab stopped: %s", desc) }
		watched.Store(l.d)
		go l.d.loop()
		end := runScenario(func() { scenario(bt, l) })
		res = l.finish()
		if len(res.Leaked) > 0 {
			bt.Errorf("goroutines still alive after the lab stopped:\n%s", strings.Join(res.Leaked, "\n"))
		}
		end.report(bt, t)
		if bt.Failed() || t.Failed() {
			bt.Logf("the event log's last lines (virtual time %s):\n%s", engine.FormatTime(res.End), logTail(res.Log, cfg.FailLogLines))
		}
		if end.goexit && !bt.Failed() && t.Skipped() {
			bt.SkipNow()
		}
	})
	return res
}

// scenarioEnd is how a scenario's goroutine ended.
type scenarioEnd struct {
	goexit   bool // runtime.Goexit: FailNow or SkipNow, on some T
	panicked any
	stack    []byte
}

// runScenario runs f in a goroutine of the bubble and returns how it
// ended. Its own goroutine, rather than the bubble's root, is what lets a
// FailNow on the test's outer t (which ends the goroutine that calls it)
// leave the root free to stop the lab and report: on the root, the testing
// package takes that Goexit for a subtest calling FailNow on its parent
// and aborts the test without a word of the log.
func runScenario(f func()) scenarioEnd {
	ended := make(chan scenarioEnd, 1)
	go func() {
		returned := false
		defer func() {
			if returned {
				ended <- scenarioEnd{}
				return
			}
			if r := recover(); r != nil {
				ended <- scenarioEnd{panicked: r, stack: debug.Stack()}
				return
			}
			ended <- scenarioEnd{goexit: true}
		}()
		f()
		returned = true
	}()
	return <-ended
}

// report fails bt for a scenario that panicked, or that stopped its
// goroutine without failing or skipping bt: a FailNow on the outer test's
// t, whose own message the testing package prints with that test.
func (e scenarioEnd) report(bt, outer *testing.T) {
	switch {
	case e.panicked != nil:
		bt.Errorf("the scenario panicked: %v\n%s", e.panicked, e.stack)
	case e.goexit && !bt.Failed() && !bt.Skipped() && !outer.Skipped():
		bt.Errorf("the scenario stopped (runtime.Goexit) without failing the scenario's t: " +
			"a t.Fatal or require on the test's own t? Use the *testing.T that lab.Test passes to the scenario, or Lab.T")
	}
}

// defaultFailLogLines is how many lines of the event log a failing
// scenario prints when Config.FailLogLines is 0.
const defaultFailLogLines = 40

// logTail returns the last n lines of log (n 0: defaultFailLogLines; n
// negative: all), with a line saying how many came before.
func logTail(log string, n int) string {
	log = strings.TrimSuffix(log, "\n")
	if log == "" {
		return "(empty)"
	}
	lines := strings.Split(log, "\n")
	if n == 0 {
		n = defaultFailLogLines
	}
	if n < 0 || n >= len(lines) {
		return log
	}
	return fmt.Sprintf("(%d earlier lines)\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// schedSamples are the scheduler's own counts of goroutines running and
// ready to run.
var schedSamples = []metrics.Sample{
	{Name: "/sched/goroutines/running:goroutines"},
	{Name: "/sched/goroutines/runnable:goroutines"},
}

// waitQuiet returns once no other goroutine is running or ready to run:
// every goroutine of the bubble has blocked, on a channel, a timer, a
// sync.Cond, or a sync.Mutex. That last one is why this is not
// synctest.Wait: synctest does not count a mutex wait as durably blocked,
// so a goroutine queued on a lock whose holder waits for the driver (yamux
// holds a stream's recvLock while reading a frame body from the
// connection) would keep Wait from ever returning. While the driver spins
// here the bubble is not idle, so no timer fires and virtual time stands
// still: the requests collected when it returns are exactly those the
// programs make at this instant, as with Wait. Run keeps the bubble on one
// P (GOMAXPROCS 1), where "no other goroutine running or runnable" is
// exact and reached in one yield; with more Ps the counts include other Ps'
// idle spinning and the wait costs thousands of yields.
func waitQuiet() {
	for {
		runtime.Gosched()
		metrics.Read(schedSamples)
		if schedSamples[0].Value.Uint64() <= 1 && schedSamples[1].Value.Uint64() == 0 {
			return
		}
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
