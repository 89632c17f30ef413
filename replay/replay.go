// Package replay executes trace files: each scenario (a "world" directive
// and the directives after it) runs in its own lab bubble with the real
// guestinit and hostd, and every directive prints what happened. The
// printed output is compared with the expected output in the file by the
// package's tests and by `vsocklab replay --check`, or written back by
// -rewrite. The command reference is docs/trace.md.
package replay

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/trace"
)

// Options change how files are replayed.
type Options struct {
	// Seed, when set, replaces every world's seed.
	Seed *uint64
	// Capture keeps every packet that crossed the device, for pcap and
	// Mermaid output.
	Capture bool
	// Plot keeps what the scenario measured over time (Scenario.Series)
	// for pictures.
	Plot bool
	// MaxVirtual bounds each scenario's virtual time (0: DefaultMaxVirtual;
	// negative: no bound). Validation refuses a scenario whose runs and
	// cycles alone would pass it; a scenario that reaches it while it runs
	// stops there with an error.
	MaxVirtual time.Duration
	// MaxWall bounds each scenario's wall-clock time (0: DefaultMaxWall;
	// negative: no bound). It is checked between directives and every
	// virtual second of a run, a cycle's dwell or a wait.
	MaxWall time.Duration
	// Progress, when set, gets a line every second about a scenario that
	// has been replaying for longer than a second.
	Progress io.Writer
	// NoLogHash leaves the event log unhashed (Report.LogSHA256 and the
	// lab result's Hash stay empty), so that records no timeline prints
	// are never formatted (engine.Log.HashLines): for callers that want
	// only outputs and verdicts, such as fuzz targets, for which
	// formatting every record was a tenth of each exec.
	NoLogHash bool
	// StopAtError stops a scenario at its first directive that fails (its
	// output ends with "error: ..."): the directives after it print
	// "error: not run: ..." and the scenario's Err is a *DirectiveError
	// naming the directive. For callers whose verdict that directive
	// decides, such as fuzz.CheckWorld for a start sequence that never
	// finished: the rest of the scenario cannot change it.
	StopAtError bool
}

// DirectiveError is Scenario.Err of a scenario that Options.StopAtError
// stopped: the directive that failed, and its error.
type DirectiveError struct {
	Index     int // in the file's Directives
	Directive *trace.Directive
	Err       error
}

func (e *DirectiveError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Directive.Pos(), e.Directive.Cmd, e.Err)
}

func (e *DirectiveError) Unwrap() error { return e.Err }

// Default limits of a scenario: a day of virtual time (the slowest
// incident, 50 growing suspend/resume cycles, passes under two hours) and
// ten minutes of wall time (it replays in seconds; the race detector makes
// it some ten times slower).
const (
	DefaultMaxVirtual = 24 * time.Hour
	DefaultMaxWall    = 10 * time.Minute
)

func (o Options) maxVirtual() time.Duration { return limit(o.MaxVirtual, DefaultMaxVirtual) }
func (o Options) maxWall() time.Duration    { return limit(o.MaxWall, DefaultMaxWall) }

func limit(v, def time.Duration) time.Duration {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Result is the replay of one file.
type Result struct {
	File      *trace.File
	Outputs   []string // one per directive
	Scenarios []*Scenario
}

// Text renders the file with the actual outputs, as -rewrite writes it.
func (r *Result) Text() string { return r.File.Format(r.Outputs) }

// Diff describes every mismatch: position, command, expected and actual.
func (r *Result) Diff() string {
	var b strings.Builder
	for i, d := range r.File.Directives {
		if r.Outputs[i] == d.Want {
			continue
		}
		fmt.Fprintf(&b, "%s: %s: output differs\n", d.Pos(), d.Cmd)
		b.WriteString(lineDiff(d.Want, r.Outputs[i]))
	}
	return b.String()
}

// lineDiff shows the lines of want and got that differ, in order.
func lineDiff(want, got string) string {
	wl := strings.Split(strings.TrimSuffix(want, "\n"), "\n")
	gl := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	var b strings.Builder
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w == g {
			continue
		}
		if i < len(wl) {
			fmt.Fprintf(&b, "  - %s\n", w)
		}
		if i < len(gl) {
			fmt.Fprintf(&b, "  + %s\n", g)
		}
	}
	return b.String()
}

// Parse reads a trace file and checks every directive before anything
// runs, with the default limits: see ParseWith.
func Parse(name, text string) (*trace.File, error) { return ParseWith(name, text, Options{}) }

// ParseWith reads a trace file and checks every directive before anything
// runs: known commands, known profiles, well-formed arguments in range,
// each argument once, required ones present, directives in an order that
// can run, and no scenario that must pass more virtual time than
// opts.MaxVirtual. Every problem is reported, each a *trace.SyntaxError
// "file:line: what was expected", joined into one error (errors.Join). A
// file without directives is an error too.
func ParseWith(name, text string, opts Options) (*trace.File, error) {
	f, err := trace.ParseMax(name, text, maxDirectives)
	if err != nil {
		return nil, err
	}
	if len(f.Directives) == 0 {
		return nil, &trace.SyntaxError{File: name, Line: 1, Msg: "no directives: a trace starts with a world directive"}
	}
	if f.Directives[0].Cmd != "world" {
		return nil, f.Directives[0].Errorf("a trace starts with a world directive, got %q", f.Directives[0].Cmd)
	}
	maxVirtual := opts.maxVirtual()
	var errs []error
	for _, d := range f.Directives {
		c, ok := commands[d.Cmd]
		if !ok {
			errs = append(errs, d.Errorf("unknown command %q (known: %s)", d.Cmd, strings.Join(commandNames(), ", ")))
			continue
		}
		if es := checkArgs(d, c, maxVirtual); len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		if c.check != nil {
			if err := c.check(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	scenarios := 0
	for start, end := range scenarioBounds(f) {
		if scenarios++; scenarios > maxScenarios {
			return nil, f.Directives[start].Errorf("more than %d scenarios in one file", maxScenarios)
		}
		errs = append(errs, checkScenario(f.Directives[start:end], maxVirtual)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// scenarioBounds yields each scenario's [start, end) in f.Directives.
func scenarioBounds(f *trace.File) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		for start := 0; start < len(f.Directives); {
			end := start + 1
			for end < len(f.Directives) && f.Directives[end].Cmd != "world" {
				end++
			}
			if !yield(start, end) {
				return
			}
			start = end
		}
	}
}

// RunFile replays every scenario of f, each in its own lab bubble. Errors
// in a directive (a wait that times out, a limit reached) are printed as its
// output, "error: ...", so that they are part of the story; a scenario
// stopped by a limit (or, with Options.StopAtError, by any error) also has
// Scenario.Err, and its remaining directives print "error: not run: ...".
func RunFile(r lab.Runner, f *trace.File, opts Options) *Result {
	res := &Result{File: f, Outputs: make([]string, len(f.Directives))}
	began := time.Now()
	total := 0
	for range scenarioBounds(f) {
		total++
	}
	for first, last := range scenarioBounds(f) {
		clock := startWallClock(f, first, opts)
		sr := newScenario(f.Name, f.Directives[first:last], opts, clock)
		sc := sr.sc
		res.Scenarios = append(res.Scenarios, sc)
		clock.name = sc.Report.Name
		run := r.Run(sr.labConfig(), func(l *lab.Lab) {
			sr.l = l
			sr.start(opts)
			for i := first; i < last; i++ {
				res.Outputs[i] = sr.exec(i, f.Directives[i], opts.StopAtError)
			}
			sr.finish()
		})
		clock.stop()
		sc.Err = sr.stopped
		if sc.Err != nil {
			sc.Report.Error = sc.Err.Error()
		}
		// The counters of the world as the lab left it: the packets of the
		// scenario's last instant and of the lab's last round count, as
		// they do in the capture, which the same tap (emu.World's
		// onPacket) fills.
		sc.Report.Counters = countersOf(run.World)
		sc.Report.LogSHA256 = run.Hash
		sc.Log = run.Log
		sc.End = run.End
		sc.records = run.World.Eng.Log.Records()
		// A file of many short scenarios is silent inside each one: once
		// it has taken over a second, say which scenarios are done.
		if opts.Progress != nil && time.Since(began) > time.Second {
			fmt.Fprintf(opts.Progress, "replay: %s: scenario %s done (%d of %d), %s wall\n", f.Name, sc.Report.Name,
				len(res.Scenarios), total, time.Since(began).Round(time.Second))
		}
	}
	return res
}

// Failed reports whether a limit (or an error, with Options.StopAtError)
// stopped one of the file's scenarios.
func (r *Result) Failed() bool {
	return slices.ContainsFunc(r.Scenarios, func(sc *Scenario) bool { return sc.Err != nil })
}

// wallClock watches a scenario from outside its bubble, where the real
// clock runs (inside, time is virtual): it raises a flag when the scenario
// has replayed for its wall-time limit, which the scenario checks between
// directives and every virtual second of its waits, and it reports
// progress every second after the first.
type wallClock struct {
	f        *trace.File
	name     string
	limit    time.Duration // 0: none
	progress io.Writer
	start    time.Time

	exceeded atomic.Bool
	index    atomic.Int64 // the directive running
	virtual  atomic.Int64 // the scenario's virtual time, as last seen
	done     chan struct{}
	stopped  chan struct{}
}

func startWallClock(f *trace.File, first int, opts Options) *wallClock {
	c := &wallClock{f: f, limit: opts.maxWall(), progress: opts.Progress, start: time.Now(),
		done: make(chan struct{}), stopped: make(chan struct{})}
	c.index.Store(int64(first))
	go c.watch()
	return c
}

func (c *wallClock) watch() {
	defer close(c.stopped)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var deadline <-chan time.Time
	if c.limit > 0 {
		t := time.NewTimer(c.limit)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case <-deadline:
			c.exceeded.Store(true)
			deadline = nil
		case <-tick.C:
			if c.progress != nil {
				d := c.f.Directives[c.index.Load()]
				fmt.Fprintf(c.progress, "replay: %s: scenario %s at line %d (%s): %s virtual, %s wall\n", d.File, c.name, d.Line, d.Cmd,
					time.Duration(c.virtual.Load()).Round(time.Millisecond), time.Since(c.start).Round(time.Second))
			}
		}
	}
}

// over is the wall-time limit's error once it has passed, else nil.
func (c *wallClock) over() error {
	if !c.exceeded.Load() {
		return nil
	}
	return fmt.Errorf("wall-time limit: the scenario replayed for %s of real time, its limit", c.limit)
}

// at records the directive starting and the virtual time, for progress.
func (c *wallClock) at(i int, now time.Duration) {
	c.index.Store(int64(i))
	c.virtual.Store(int64(now))
}

func (c *wallClock) stop() {
	close(c.done)
	<-c.stopped
}

// commandNames lists the known commands, sorted.
func commandNames() []string {
	var out []string
	for n := range commands {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// worldConfig builds the world's configuration from a world directive.
func worldConfig(d *trace.Directive) (emu.Config, string, error) {
	cfg := emu.Config{Seed: 1}
	name := fmt.Sprintf("scenario-%d", d.Line)
	for _, a := range d.Args {
		v := argVal(a)
		switch a.Key {
		case "name":
			name = v
		case "device":
			cfg.Device = v
		case "kernel":
			cfg.Kernel = v
		case "seed":
			n, err := parseUint(v)
			if err != nil {
				return cfg, name, d.Errorf("world: seed=%s: %v", v, err)
			}
			if n == 0 {
				// The lab takes seed 0 for its default, 1.
				return cfg, name, d.Errorf("world: seed=0: seeds start at 1 (the default)")
			}
			cfg.Seed = n
		case "cid":
			n, err := parseUint(v)
			if err != nil || n < 3 || n > 0xfffffffe {
				return cfg, name, d.Errorf("world: cid=%s: want a guest CID in [3, 4294967294]", v)
			}
			cfg.GuestCID = n
		}
	}
	return cfg, name, nil
}
