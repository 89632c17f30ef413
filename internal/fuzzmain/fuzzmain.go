// Package fuzzmain is the TestMain of the packages that hold native fuzz
// targets. It keeps `go test -fuzz=X -fuzztime=30s` out of a race in Go's
// fuzz coordinator that fails a healthy run with "context deadline
// exceeded" and no input (golang/go#75804, fixed in Go 1.27).
//
// The race, in Go 1.26's internal/fuzz/fuzz.go, CoordinateFuzzing: a
// duration -fuzztime becomes ctx = context.WithTimeout(ctx, d), the workers
// run under its child fuzzCtx = context.WithCancel(ctx), and the main loop
// answers ctx.Done() with stop(ctx.Err()), which forgives the error only
// when err == fuzzCtx.Err(). When the timer fires, context's cancel closes
// the parent's done channel first and cancels the children after; a
// coordinator goroutine woken on another P in between reads fuzzCtx.Err()
// == nil and keeps context.DeadlineExceeded as the run's error. The
// coordinator process is idle while its workers fuzz, so a second P is
// usually free to steal the woken goroutine: the window is open on every
// run of every target, and CPU contention (a preempted timer goroutine)
// widens it.
//
// On one P the woken goroutine waits in the P's run queue until the timer's
// goroutine has cancelled the children, so stop sees the two errors equal.
// The coordinator only shuffles inputs between worker processes, which
// are separate processes with their own GOMAXPROCS (they inherit the
// environment, not this call), and -parallel was fixed from GOMAXPROCS
// when the testing flags were defined: fuzzing throughput is unchanged.
package fuzzmain

import (
	"flag"
	"os"
	"runtime"
	"testing"
)

// Main runs the package's tests, on one P when this process is a fuzz
// coordinator (-test.fuzz set, -test.fuzzworker not).
func Main(m *testing.M) {
	flag.Parse()
	if Coordinator() {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(m.Run())
}

// Coordinator reports whether this test process coordinates fuzzing
// workers.
func Coordinator() bool {
	fuzz, worker := flag.Lookup("test.fuzz"), flag.Lookup("test.fuzzworker")
	return fuzz != nil && fuzz.Value.String() != "" && (worker == nil || worker.Value.String() != "true")
}
