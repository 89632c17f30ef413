// Package fuzzmain is the TestMain of the packages that hold native fuzz
// targets. It makes plain `go test -fuzz=X -fuzztime=30s` run steadily:
// it bounds the time Go spends minimizing each new input, and it keeps the
// run out of a race in Go's fuzz coordinator that fails a healthy run with
// "context deadline exceeded" and no failing input (golang/go#75804, fixed
// in Go 1.27).
//
// Minimization. Before Go counts a new interesting input it minimizes it
// (Go's src/internal/fuzz/minimize.go): about n²/2 execs for an input of n bytes
// whose every byte counts, for up to -fuzzminimizetime, 60 s by default,
// and the exec counter stands still until it is done. The targets keep n
// small and execs cheap (fuzz/harness.go), but on a loaded 2-core machine
// an exec of FuzzTXChain still costs about half a millisecond, and at the
// start of a run every mutation of a seed is new: both workers minimized
// for 15 s. So when the user did not choose -fuzzminimizetime, the
// coordinator gives each input a budget of execs the package chooses
// (Main's argument), enough for the minimizer's tail cut and a pass of
// single-byte removals over a capped input, and soon over: the exec
// counter moves every few seconds.
// A count, not a duration: with a duration the coordinator's deadline
// and the worker's own are the same instant, the coordinator usually
// wins, and it then kills and restarts the worker (Go's src/internal/fuzz/worker.go,
// (*worker).minimize), losing the work and a process start per input
// (measured: FuzzTXChain fell to 5,401 execs in 26 s with 2s). An explicit
// -fuzzminimizetime (for a long campaign that wants a small corpus) wins.
//
// The race, in Go's src/internal/fuzz/fuzz.go (1.26), CoordinateFuzzing: a
// duration -fuzztime becomes ctx = context.WithTimeout(ctx, d), the workers
// run under its child fuzzCtx = context.WithCancel(ctx), and the main loop
// answers ctx.Done() with stop(ctx.Err()), which forgives the error only
// when err == fuzzCtx.Err(). context's cancel closes the parent's done
// channel before it cancels the children, so a coordinator that wakes in
// between reads fuzzCtx.Err() == nil and keeps context.DeadlineExceeded as
// the run's result. Pinning the coordinator to one P does not close the
// window (measured: still about 1 run in 20 of a 1 s FuzzHeader run fails;
// the scheduler can preempt the cancelling goroutine in the gap).
//
// An interrupt takes another path that has no such window:
// testing/internal/testdeps.CoordinateFuzzing runs the coordinator under
// signal.NotifyContext(os.Interrupt) and returns nil when the error is
// that context's own, so ^C ends a run cleanly, saving what it found. So
// the coordinator process ends a duration run the way a user would: the
// -fuzztime the user gave is moved to a timer that interrupts this
// process, and the coordinator's own deadline is pushed past it, where it
// is never reached. Counts (-fuzztime=1000x), workers and runs without
// -fuzz are left alone. Remove this package once go.mod asks for Go 1.27.
package fuzzmain

import (
	"flag"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Main runs the package's tests; when this process coordinates a fuzzing
// run bounded by a duration, it ends the run with an interrupt instead of
// the coordinator's deadline.
//
// minimizeExecs is the package's default minimization budget per new
// input, in execs: about a second's worth of its costliest target's
// execs on a loaded 2-core machine.
func Main(m *testing.M, minimizeExecs int) {
	flag.Parse()
	if coordinator() {
		boundMinimization(minimizeExecs)
		if d, ok := fuzzDuration(); ok && runtime.GOOS != "windows" {
			interruptAfter(d)
		}
	}
	os.Exit(m.Run())
}

// coordinator reports whether this process coordinates fuzzing workers:
// -test.fuzz set, -test.fuzzworker not.
func coordinator() bool {
	fuzz, worker := flag.Lookup("test.fuzz"), flag.Lookup("test.fuzzworker")
	return fuzz != nil && fuzz.Value.String() != "" && worker != nil && worker.Value.String() != "true"
}

// boundMinimization sets -fuzzminimizetime to execs unless the command
// line set it.
func boundMinimization(execs int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if f := flag.Lookup("test.fuzzminimizetime"); f != nil && !set {
		_ = f.Value.Set(strconv.Itoa(execs) + "x")
	}
}

// coordinatorSlack is how far past the user's -fuzztime the coordinator's
// own deadline moves: far enough that workers finishing a slow input after
// the interrupt never meet it.
const coordinatorSlack = time.Hour

// fuzzDuration reports the -fuzztime duration of the coordinator, after
// moving the coordinator's own deadline past it.
func fuzzDuration() (time.Duration, bool) {
	fuzztime := flag.Lookup("test.fuzztime")
	if fuzztime == nil {
		return 0, false
	}
	v := fuzztime.Value.String()
	if strings.HasSuffix(v, "x") {
		return 0, false // a count: no deadline, no race
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, false // unbounded
	}
	if fuzztime.Value.Set((d + coordinatorSlack).String()) != nil {
		return 0, false
	}
	return d, true
}

// interruptAfter sends this process os.Interrupt after d. A handler is
// installed first, so that an interrupt arriving before the coordinator
// installs its own does not kill the process.
func interruptAfter(d time.Duration) {
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)
	time.AfterFunc(d, func() {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Signal(os.Interrupt)
		}
	})
}
