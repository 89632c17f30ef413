package replay

import (
	"context"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
)

// Series are what a scenario measured over virtual time, kept with
// Options.Plot for pictures (package replay/plots): the guest's credit at
// every change, and init's stdout sampled while the scenario runs.
type Series struct {
	// Credit holds every credit change of every guest connection, in
	// order (guest.Credit names the connection).
	Credit []CreditSample
	// Stdout is the workload's stdout, sampled: every tick of the writer
	// (its every=, at least a millisecond) while anything moves (bytes, or
	// a write starting or ending a wait), then at doubling intervals up to
	// a second while nothing does, or up to 100 ms while a write waits, so
	// that the plotted wait is at most that short of its peak. Empty
	// without a writer workload.
	Stdout []StdoutSample
}

// CreditSample is one credit change of a guest connection.
type CreditSample struct {
	At time.Duration
	guest.Credit
}

// StdoutSample is the workload's stdout at one moment.
type StdoutSample struct {
	At            time.Duration
	Written       int64 // by the workload into its pipe
	Delivered     int64 // to hostd's collector
	DroppedByInit int64 // after write timeouts
	// Blocked is how long the write waiting now has waited (0: none is).
	Blocked time.Duration
}

// startSeries, inside the bubble before the first directive, taps the
// guest's credit.
func (sr *scenarioRun) startSeries(opts Options) {
	if !opts.Plot {
		return
	}
	sr.sc.Series = &Series{}
	_ = sr.l.Do(func(w *emu.World) error {
		w.AddCreditTap(func(at time.Duration, c guest.Credit) {
			sr.sc.Series.Credit = append(sr.sc.Series.Credit, CreditSample{At: at, Credit: c})
		})
		return nil
	})
}

// Bounds of the stdout sampling interval.
const (
	minSampleEvery     = time.Millisecond
	maxSampleEvery     = time.Second
	blockedSampleEvery = 100 * time.Millisecond
)

// sampleStdout, after the boot, starts a program that samples the
// workload's stdout until the lab stops. Each sample is taken once its
// instant has settled (Lab.Observe), when every other program is blocked,
// so it reads the same numbers on every replay; it only reads, so the
// world's event log is the same with and without it.
func (sr *scenarioRun) sampleStdout() {
	if sr.sc.Series == nil || sr.sys == nil {
		return
	}
	w, err := labenv.ParseWorkload(sr.workload)
	if err != nil || w.Total == 0 {
		return
	}
	base := min(max(w.Every, minSampleEvery), maxSampleEvery)
	series, sys, l := sr.sc.Series, sr.sys, sr.l
	l.Go(func(ctx context.Context) {
		every := base
		var last StdoutSample
		lastSince := time.Duration(-1)
		for {
			if err := l.Observe(func(*emu.World) error { return nil }); err != nil {
				return // the lab stopped
			}
			s := StdoutSample{At: l.Now(), Delivered: int64(sys.Hostd.Collector.Bytes("stdout"))}
			if p := sys.Workload(); p != nil {
				s.Written = p.Written()
			}
			s.DroppedByInit = int64(sys.Init.Stats().LogBytesDropped["stdout"])
			since := time.Duration(-1)
			for _, p := range l.Pipes() {
				if p.Blocked && s.At-p.Since > s.Blocked {
					s.Blocked, since = s.At-p.Since, p.Since
				}
			}
			moved := len(series.Stdout) == 0 || s.Written != last.Written || s.Delivered != last.Delivered ||
				s.DroppedByInit != last.DroppedByInit || since != lastSince
			series.Stdout = append(series.Stdout, s)
			last, lastSince = s, since
			switch {
			case moved:
				every = base
			case s.Blocked > 0: // the wait ends at an unknown time: keep its peak within blockedSampleEvery
				every = min(2*every, max(base, blockedSampleEvery))
			default:
				every = min(2*every, maxSampleEvery)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	})
}
