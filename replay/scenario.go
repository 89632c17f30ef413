package replay

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/programs"
	"github.com/vsocklab/vsocklab/trace"
	"github.com/vsocklab/vsocklab/virtio"
)

// Scenario is one world of a trace file after its replay: what it
// measured, its event log and, with Options.Capture, every packet.
//
// Log holds the records the scenario's directives needed (the kinds its
// timelines print, everything with Options.Capture); Report.LogSHA256 is
// the hash of the whole log all the same.
type Scenario struct {
	Report  Report
	Log     string
	Packets []Packet
	// Err is why the scenario stopped before its last directive (a
	// virtual- or wall-time limit), nil when it ran to the end.
	Err error
	End time.Duration // virtual time at the end
	// Series is what the scenario measured over time, with Options.Plot
	// (nil without).
	Series  *Series
	records []engine.Record
}

// Packet is one captured packet.
type Packet struct {
	At      time.Duration
	Dir     device.Dir
	Hdr     virtio.Header
	Payload []byte
}

// scenarioRun is a scenario while it replays, inside its lab bubble: what
// the directives set up and started, and what they have seen so far.
type scenarioRun struct {
	sc        *Scenario
	cfg       emu.Config
	l         *lab.Lab
	initOpts  guestinit.Options
	workload  []string
	hostdOpts hostd.Options
	sys       *programs.System
	logMark   int // the first record the next timeline shows
	cycles    []hostd.Cycle
	leakedAt  []int         // leaked sockets when each cycle's start sequence ended
	suspended time.Duration // the pauses of the cycles directive: the guest stood still
	stream    *programs.Stream
	conns     map[string]*hostd.HybridConn // open connections by name
	resets    int                          // device-reset directives run
	refused   []string                     // connect directives that failed

	retain    engine.Kind // the kinds the directives need stored
	keepShown bool        // a later "timeline all" or a capture reads records again

	maxVirtual time.Duration // 0: none
	clock      *wallClock
	stopped    error // set when a limit stopped the scenario
}

// Defaults of the waiting directives.
const (
	defaultDwell       = 5 * time.Second
	defaultPause       = time.Second
	defaultWaitTimeout = 10 * time.Minute
)

// newScenario prepares the scenario of ds, which starts with its world
// directive.
func newScenario(file string, ds []*trace.Directive, opts Options, clock *wallClock) *scenarioRun {
	cfg, name, _ := worldConfig(ds[0]) // checked by Parse
	if opts.Seed != nil {
		cfg.Seed = *opts.Seed
	}
	full := cfg.WithDefaults()
	sr := &scenarioRun{cfg: cfg, sc: &Scenario{Report: Report{File: file, Name: name, Device: full.Device, Kernel: full.Kernel, Seed: cfg.Seed}},
		maxVirtual: opts.maxVirtual(), clock: clock}
	sr.retain, sr.keepShown = retention(ds, opts)
	return sr
}

// retention is what the scenario's log must store: the kinds its timelines
// print, and whether records once printed are read again (timeline all, or
// a capture for pcap and Mermaid, which reads them after the run).
func retention(ds []*trace.Directive, opts Options) (engine.Kind, bool) {
	if opts.Capture {
		return engine.KindAll, true
	}
	var kinds engine.Kind
	keep := false
	for _, d := range ds {
		if d.Cmd != "timeline" {
			continue
		}
		keep = keep || hasFlag(d, "all")
		a, ok := d.Arg("kinds")
		if !ok {
			kinds = engine.KindAll
			continue
		}
		for _, v := range a.Vals {
			kinds |= kindNames[v]
		}
	}
	return kinds, keep
}

func (sr *scenarioRun) labConfig() lab.Config { return lab.Config{Config: sr.cfg} }

// start runs inside the bubble before the first directive.
func (sr *scenarioRun) start(opts Options) {
	_ = sr.l.Do(func(w *emu.World) error {
		w.Eng.Log.Retain(sr.retain)
		if opts.NoLogHash {
			w.Eng.Log.HashLines(false)
		}
		return nil
	})
	sr.startSeries(opts)
	if !opts.Capture {
		return
	}
	_ = sr.l.Do(func(w *emu.World) error {
		w.AddTap(func(at time.Duration, dir device.Dir, h *virtio.Header, payload []byte) {
			sr.sc.Packets = append(sr.sc.Packets, Packet{At: at, Dir: dir, Hdr: *h, Payload: append([]byte(nil), payload...)})
		})
		return nil
	})
}

// exec runs one directive, the file's i-th, and returns its output. Once a
// limit has stopped the scenario (or, with stopAtError, a directive that
// failed), the directives left only say so.
func (sr *scenarioRun) exec(i int, d *trace.Directive, stopAtError bool) string {
	if sr.stopped == nil {
		sr.stopped = sr.clock.over()
	}
	if sr.stopped != nil {
		return "error: not run: " + sr.stopped.Error() + "\n"
	}
	sr.clock.at(i, sr.l.Now())
	out, err := commands[d.Cmd].run(sr, d)
	if err != nil {
		out += "error: " + err.Error() + "\n"
		if stopAtError && sr.stopped == nil {
			sr.stopped = &DirectiveError{Index: i, Directive: d, Err: err}
		}
	}
	return out
}

// left is the virtual time the scenario may still pass (a day when it has
// no limit: any wait is cut into such pieces anyway).
func (sr *scenarioRun) left() time.Duration {
	if sr.maxVirtual <= 0 {
		return math.MaxInt64
	}
	return sr.maxVirtual - sr.l.Now()
}

// virtualLimit stops the scenario at its virtual-time limit.
func (sr *scenarioRun) virtualLimit() error {
	sr.stopped = fmt.Errorf("virtual-time limit: the scenario reached %s of virtual time, its limit", sr.maxVirtual)
	return sr.stopped
}

// sleep lets d of virtual time pass, a second at a time, so that a long
// run stops at the scenario's limits and reports its progress.
func (sr *scenarioRun) sleep(d time.Duration) error {
	for d > 0 {
		if err := sr.clock.over(); err != nil {
			sr.stopped = err
			return err
		}
		left := sr.left()
		if left <= 0 {
			return sr.virtualLimit()
		}
		step := min(d, time.Second, left)
		time.Sleep(step)
		d -= step
		sr.clock.virtual.Store(int64(sr.l.Now()))
	}
	return nil
}

// waitTimeout cuts the timeout of a wait that starts after a delay to the
// virtual time left; cut says whether it did, so that the wait's timing
// out is the limit's doing.
func (sr *scenarioRun) waitTimeout(after, timeout time.Duration) (t time.Duration, cut bool) {
	if left := sr.left() - after; timeout > left {
		return max(left, 0), true
	}
	return timeout, false
}

// now is the scenario's virtual time.
func (sr *scenarioRun) now() string { return strings.TrimSpace(engine.FormatTime(sr.l.Now())) }

func (sr *scenarioRun) cmdWorld(d *trace.Directive) (string, error) {
	return fmt.Sprintf("world %s: device %s, guest %s, seed %d\n", sr.sc.Report.Name, sr.sc.Report.Device, sr.sc.Report.Kernel, sr.sc.Report.Seed), nil
}

func (sr *scenarioRun) cmdHostd(d *trace.Directive) (string, error) {
	o := hostd.Options{
		SessionFirst:   hasFlag(d, "session-first"),
		StatusOnly:     hasFlag(d, "status-only"),
		AttemptTimeout: durArg(d, "attempt-timeout", 0),
		Backoff: hostd.Backoff{
			Initial: durArg(d, "backoff-initial", 0), Max: durArg(d, "backoff-max", 0), GiveUp: durArg(d, "give-up", 0),
		},
	}
	var err error
	if o.APIPort, err = port32(d, "api-port"); err != nil {
		return "", err
	}
	if o.LogPort, err = port32(d, "log-port"); err != nil {
		return "", err
	}
	sr.hostdOpts = o
	full := o.WithDefaults()
	order := "status check first"
	switch {
	case full.StatusOnly:
		order = "status check only"
	case full.SessionFirst:
		order = "metrics session first"
	}
	sr.sc.Report.Hostd = fmt.Sprintf("%s, backoff %s doubling to %s, give up after %s", order, full.Backoff.Initial, full.Backoff.Max, full.Backoff.GiveUp)
	return "hostd: " + sr.sc.Report.Hostd + "\n", nil
}

func (sr *scenarioRun) cmdInit(d *trace.Directive) (string, error) {
	o := guestinit.Options{
		NoVsockWriteTimeout: hasFlag(d, "no-write-timeout"),
		VsockWriteTimeout:   durArg(d, "write-timeout", 0),
		KeepResetSessions:   hasFlag(d, "keep-reset-sessions"),
		MetricsInterval:     durArg(d, "metrics-interval", 0),
		ReadChunk:           int(numArg(d, "read-chunk", 0)),
	}
	var err error
	if o.APIPort, err = port32(d, "api-port"); err != nil {
		return "", err
	}
	if o.LogPort, err = port32(d, "log-port"); err != nil {
		return "", err
	}
	sr.initOpts = o
	sr.workload = strings.Fields(d.Input[0])
	full := o.WithDefaults()
	timeout := "vsock write timeout " + full.VsockWriteTimeout.String()
	if full.NoVsockWriteTimeout {
		timeout = "no vsock write timeout"
	}
	sessions := "closes reset sessions"
	if full.KeepResetSessions {
		sessions = "keeps reset session sockets open"
	}
	sr.sc.Report.Init = fmt.Sprintf("%s, %s; workload: %s", timeout, sessions, strings.Join(sr.workload, " "))
	return "init: " + sr.sc.Report.Init + "\n", nil
}

func (sr *scenarioRun) cmdBoot(d *trace.Directive) (string, error) {
	if sr.sys != nil {
		return "", fmt.Errorf("already booted")
	}
	if sr.workload == nil {
		return "", fmt.Errorf("boot needs an init directive first")
	}
	sr.sys = programs.Start(sr.l, sr.initOpts, sr.workload, sr.hostdOpts)
	sr.sampleStdout()
	return fmt.Sprintf("booted at %s\n", sr.now()), nil
}

func (sr *scenarioRun) cmdRun(d *trace.Directive) (string, error) {
	dur, _ := time.ParseDuration(d.Args[0].Key)
	err := sr.sleep(dur)
	return fmt.Sprintf("now %s\n", sr.now()), err
}

func (sr *scenarioRun) cmdSuspend(d *trace.Directive) (string, error) {
	if err := sr.l.Suspend(); err != nil {
		return "", err
	}
	return fmt.Sprintf("suspended at %s\n", sr.now()), nil
}

func (sr *scenarioRun) cmdResume(d *trace.Directive) (string, error) {
	var err error
	if sr.sys != nil {
		err = sr.sys.Resume()
	} else {
		err = sr.l.Resume()
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("resumed at %s\n", sr.now()), nil
}

// cmdDeviceReset resets the device in place from the guest (unbind and bind
// the driver): emu.World.ResetDevice.
func (sr *scenarioRun) cmdDeviceReset(d *trace.Directive) (string, error) {
	if err := sr.l.Do(func(w *emu.World) error { return w.ResetDevice() }); err != nil {
		return "", err
	}
	sr.resets++
	return fmt.Sprintf("device reset at %s\n", sr.now()), nil
}

// waitCycle waits for hostd's cycle n.
func (sr *scenarioRun) waitCycle(n int, timeout time.Duration) (hostd.Cycle, error) {
	if sr.sys == nil {
		return hostd.Cycle{}, fmt.Errorf("not booted")
	}
	c, err := sr.sys.WaitCycle(n, timeout)
	if err != nil {
		return c, err
	}
	sr.record(c)
	return c, nil
}

// record keeps a finished start sequence for the report.
func (sr *scenarioRun) record(c hostd.Cycle) {
	n := c.N
	for len(sr.cycles) <= n {
		sr.cycles = append(sr.cycles, hostd.Cycle{})
	}
	sr.cycles[n] = c
	for len(sr.leakedAt) <= n {
		sr.leakedAt = append(sr.leakedAt, 0)
	}
	sr.leakedAt[n] = sr.leaked()
}

func cycleLine(c hostd.Cycle) string {
	var b strings.Builder
	if c.Started {
		fmt.Fprintf(&b, "cycle %d: started after %s", c.N, c.TimeToStarted)
	} else {
		fmt.Fprintf(&b, "cycle %d: not started: %s", c.N, c.Err)
	}
	for _, step := range []string{"session", "status"} {
		n := c.Failures(step)
		if n == 0 {
			continue
		}
		var ports []string
		for _, a := range c.Attempts {
			if a.Step == step && a.Err != "" && a.HostPort != 0 {
				ports = append(ports, fmt.Sprint(a.HostPort))
			}
		}
		fmt.Fprintf(&b, "; %s failed %d times", step, n)
		if len(ports) > 0 {
			fmt.Fprintf(&b, " (host ports %s)", compactList(ports))
		}
	}
	return b.String()
}

// compactList keeps long lists readable: the first three and the last.
func compactList(s []string) string {
	if len(s) <= 4 {
		return strings.Join(s, " ")
	}
	return strings.Join(s[:3], " ") + " ... " + s[len(s)-1]
}

func (sr *scenarioRun) cmdWaitStarted(d *trace.Directive) (string, error) {
	timeout, cut := sr.waitTimeout(0, durArg(d, "timeout", defaultWaitTimeout))
	c, err := sr.waitCycle(int(numArg(d, "cycle", 0)), timeout)
	if err != nil && cut {
		return "", sr.virtualLimit()
	}
	if err != nil {
		return "", err
	}
	return cycleLine(c) + "\n", nil
}

func (sr *scenarioRun) leaked() int {
	n := 0
	_ = sr.l.Do(func(w *emu.World) error { n = w.Guest.Leaked(); return nil })
	return n
}

// cmdCycles suspends and resumes n times: after each resume hostd runs its
// start sequence, and the line shows what it took.
func (sr *scenarioRun) cmdCycles(d *trace.Directive) (string, error) {
	n := int(numArg(d, "n", 1))
	dwell, pause := durArg(d, "dwell", defaultDwell), durArg(d, "pause", defaultPause)
	var b strings.Builder
	first := len(sr.cycles)
	if first == 0 {
		return "", fmt.Errorf("cycles needs the boot cycle first (wait-started)")
	}
	for i := 0; i < n; i++ {
		if err := sr.sleep(dwell); err != nil {
			return b.String(), err
		}
		if sr.left() < pause {
			return b.String(), sr.virtualLimit()
		}
		sr.suspended += pause
		timeout, cut := sr.waitTimeout(pause, durArg(d, "timeout", defaultWaitTimeout))
		c, err := sr.sys.SuspendResume(first+i, pause, timeout)
		if err != nil && cut {
			return b.String(), sr.virtualLimit()
		}
		if err != nil {
			return b.String(), err
		}
		sr.record(c)
		fmt.Fprintf(&b, "%s; leaked sockets %d\n", cycleLine(c), sr.leaked())
	}
	return b.String(), nil
}

// cmdStream starts a paced pattern stream between a host program and a
// guest program, beside init and hostd.
func (sr *scenarioRun) cmdStream(d *trace.Directive) (string, error) {
	if sr.stream != nil {
		return "", fmt.Errorf("one stream per scenario")
	}
	fromHost := true
	if a, ok := d.Arg("from"); ok {
		fromHost = argVal(a) == "host"
	}
	port, _ := port32(d, "port")
	spec := programs.StreamSpec{
		FromHost: fromHost, Port: port,
		Total: sizeArg(d, "total", 1<<20), Size: int(sizeArg(d, "size", 64*1024)), Every: durArg(d, "every", 0),
		ReadSize: int(sizeArg(d, "read", 0)), ReadEvery: durArg(d, "read-every", 0), Rcvlowat: int(sizeArg(d, "rcvlowat", 0)),
	}
	_, spec.Unread = d.Arg("unread")
	st, err := programs.StartStream(sr.l, spec)
	if err != nil {
		return "", err
	}
	sr.stream = st
	sr.sc.Report.StreamTotal = spec.Total
	writer, reader := "host", "guest"
	if !fromHost {
		writer, reader = "guest", "host"
	}
	line := fmt.Sprintf("stream at %s: %s writes %d bytes to %s port %d in %d-byte writes", sr.now(), writer, spec.Total, reader, port, spec.Size)
	if spec.Every > 0 {
		line += " every " + spec.Every.String()
	}
	switch {
	case spec.Unread:
		line += fmt.Sprintf("; the %s never reads", reader)
	case spec.ReadEvery > 0 && spec.ReadSize > 0:
		line += fmt.Sprintf("; the %s reads %d bytes every %s", reader, spec.ReadSize, spec.ReadEvery)
	case spec.ReadEvery > 0:
		line += fmt.Sprintf("; the %s reads every %s", reader, spec.ReadEvery)
	default:
		line += fmt.Sprintf("; the %s reads as the data comes", reader)
	}
	if spec.Rcvlowat > 0 {
		line += fmt.Sprintf(", SO_RCVLOWAT %d", spec.Rcvlowat)
	}
	return line + "\n", nil
}

func (sr *scenarioRun) cmdFault(d *trace.Directive) (string, error) {
	n, minLen := int(numArg(d, "n", 1)), uint32(numArg(d, "min-len", 1))
	if err := sr.l.Do(func(w *emu.World) error { w.Dev.DropTX(n, minLen); return nil }); err != nil {
		return "", err
	}
	return fmt.Sprintf("fault at %s: the device will lose the next %d TX RW packets of %d bytes or more\n", sr.now(), n, minLen), nil
}

func (sr *scenarioRun) cmdTimeline(d *trace.Directive) (string, error) {
	keep := engine.KindAll
	if a, ok := d.Arg("kinds"); ok {
		keep = 0
		for _, v := range a.Vals {
			keep |= kindNames[v]
		}
	}
	var comps []string
	if a, ok := d.Arg("comp"); ok {
		comps = a.Vals
	}
	grep := ""
	if a, ok := d.Arg("grep"); ok {
		grep = argVal(a)
	}
	limit := int(numArg(d, "limit", 0))
	var lines []string
	_ = sr.l.Do(func(w *emu.World) error {
		recs := w.Eng.Log.Records()
		from := sr.logMark
		if hasFlag(d, "all") {
			from = 0
		}
		for _, r := range recs[min(from, len(recs)):] {
			if r.Kind&keep == 0 || (comps != nil && !slices.Contains(comps, r.Comp)) || grep != "" && !strings.Contains(r.Text, grep) {
				continue
			}
			lines = append(lines, r.String())
		}
		sr.logMark = len(recs)
		if !sr.keepShown { // no later timeline looks back: let them go
			w.Eng.Log.Forget(len(recs))
			sr.logMark = 0
		}
		return nil
	})
	if limit > 0 && len(lines) > limit {
		omitted := len(lines) - limit
		lines = append(lines[:limit], fmt.Sprintf("... %d more lines", omitted))
	}
	if len(lines) == 0 {
		return "(nothing)\n", nil
	}
	return strings.Join(lines, "\n") + "\n", nil
}

func (sr *scenarioRun) cmdSockets(d *trace.Directive) (string, error) {
	var b strings.Builder
	limit := int(numArg(d, "limit", 0))
	_ = sr.l.Do(func(w *emu.World) error {
		k := w.Guest
		socks := k.Sockets()
		for i, s := range socks {
			if limit > 0 && i == limit {
				fmt.Fprintf(&b, "... %d more sockets\n", len(socks)-limit)
				break
			}
			i := k.Info(s)
			flags := []string{}
			if i.Connected {
				flags = append(flags, "connected-table")
			}
			if i.Bound {
				flags = append(flags, "bound")
			}
			if i.Released {
				flags = append(flags, "closed-by-owner")
			}
			if i.Err != 0 {
				flags = append(flags, "err="+i.Err.Error())
			}
			fmt.Fprintf(&b, "sock %d %s local %s remote %s %s\n", i.ID, i.State, i.Local, i.Remote, strings.Join(flags, " "))
		}
		fmt.Fprintf(&b, "leaked (reset, never closed): %d\n", k.Leaked())
		return nil
	})
	return b.String(), nil
}

func (sr *scenarioRun) cmdCounters(d *trace.Directive) (string, error) {
	var c Counters
	var ds device.Stats
	var gs guest.Stats
	// Observe, not Do: the packets the programs send at this very instant
	// count too, as they do in the capture and the --json report.
	_ = sr.l.Observe(func(w *emu.World) error {
		c = countersOf(w)
		ds, gs = w.Dev.Stats(), w.Guest.Stats()
		return nil
	})
	var b strings.Builder
	b.WriteString(c.String())
	fmt.Fprintf(&b, "device: bad tx chains %d, bad rx chains %d, leaked chains %d, rsts %d, invariant violations %d\n",
		ds.BadTXChains, ds.BadRXChains, ds.LeakedChains, ds.RSTsSent, ds.Violations)
	fmt.Fprintf(&b, "guest: transport resets %d, REQUESTs answered RST by reset sockets %d, rx dropped %d\n",
		gs.TransportResets, gs.RequestsOnResetSockets, gs.RXDropped+gs.RWDropped)
	return b.String(), nil
}

// measure fills the scenario's report from the programs and the world.
func (sr *scenarioRun) measure() {
	r := &sr.sc.Report
	r.Stdout = programs.Stdout{OutOfOrderAt: -1}
	if sr.sys != nil {
		r.Stdout = sr.sys.Stdout()
		o := sr.sys.Init.Options()
		r.WriteTimeout = 0
		if !o.NoVsockWriteTimeout {
			r.WriteTimeout = o.VsockWriteTimeout
		}
		if w, err := labenv.ParseWorkload(sr.workload); err == nil {
			r.WorkloadTotal, r.WorkloadEvery = w.Total, w.Every
		}
	}
	r.Resumes, r.LeakedByResume = nil, nil
	for i, c := range sr.cycles[min(1, len(sr.cycles)):] {
		r.Resumes = append(r.Resumes, c.TimeToStarted)
		r.LeakedByResume = append(r.LeakedByResume, sr.leakedAt[i+1])
	}
	r.LeakedSockets = sr.leaked()
	r.Suspended = sr.suspended
	r.StartFailures = nil
	for i, c := range sr.cycles {
		if c.N == i && !c.Started && c.Err != "" {
			r.StartFailures = append(r.StartFailures, fmt.Sprintf("cycle %d: %s", c.N, c.Err))
		}
	}
	r.DeviceResets = sr.resets
	r.ConnectFailures = slices.Clone(sr.refused)
	if sr.stream != nil {
		r.Stream = sr.stream.Stats()
	}
	_ = sr.l.Do(func(w *emu.World) error {
		r.Counters = countersOf(w)
		r.Violations = r.Violations[:0]
		for _, v := range w.Dev.Violations() {
			r.Violations = append(r.Violations, v.String())
		}
		return nil
	})
}

func (sr *scenarioRun) cmdReport(d *trace.Directive) (string, error) {
	sr.measure()
	r := &sr.sc.Report
	st := r.Stdout
	var b strings.Builder
	if sr.sys == nil {
		// No init and hostd: only what the scenario ran itself.
		if sr.stream != nil {
			b.WriteString(streamLine(r))
		}
		fmt.Fprintf(&b, "leaked sockets in the guest's connected table: %d\n", r.LeakedSockets)
		return b.String(), nil
	}
	fmt.Fprintf(&b, "stdout: written %d, delivered %d, dropped by init %d", st.Written, st.Delivered, st.DroppedByInit)
	if st.Delivered > 0 {
		if st.OutOfOrderAt >= 0 {
			fmt.Fprintf(&b, ", out of order at byte %d", st.OutOfOrderAt)
		} else {
			b.WriteString(", in order")
		}
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "longest stdout write block: %s", st.LongestBlock)
	if st.Blocked {
		fmt.Fprintf(&b, " (still blocked, since %s)", strings.TrimSpace(engine.FormatTime(st.BlockedSince)))
	}
	fmt.Fprintf(&b, "; init write timeouts: %d\n", st.WriteTimeouts)
	if rs := r.Resumes; len(rs) > 0 {
		fmt.Fprintf(&b, "resumes: %d, time-to-started first %s, last %s, longest %s\n", len(rs), rs[0], rs[len(rs)-1], slices.Max(rs))
	}
	if sr.stream != nil {
		b.WriteString(streamLine(r))
	}
	fmt.Fprintf(&b, "leaked sockets in the guest's connected table: %d\n", r.LeakedSockets)
	return b.String(), nil
}

func (sr *scenarioRun) cmdVerdict(d *trace.Directive) (string, error) {
	sr.measure()
	v, why := Verdict(d.Args[0].Key, &sr.sc.Report)
	sr.sc.Report.Verdict = v
	return fmt.Sprintf("verdict: %s (%s)\n", v, why), nil
}

// streamLine is the report's account of the stream.
func streamLine(r *Report) string {
	st := r.Stream
	if !st.Connected {
		return fmt.Sprintf("stream: never connected: %s\n", st.ConnectErr)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "stream: written %d of %d, delivered %d", st.Written, r.StreamTotal, st.Delivered)
	if st.Delivered > 0 {
		if st.OutOfOrderAt >= 0 {
			fmt.Fprintf(&b, ", wrong from byte %d", st.OutOfOrderAt)
		} else {
			b.WriteString(", in order")
		}
	}
	fmt.Fprintf(&b, "; longest write block %s", st.LongestBlock)
	if st.Blocked {
		fmt.Fprintf(&b, " (still blocked, since %s)", strings.TrimSpace(engine.FormatTime(st.BlockedSince)))
	}
	for _, e := range []struct{ who, err string }{{"writer", st.WriterErr}, {"reader", st.ReaderErr}} {
		if e.err != "" {
			fmt.Fprintf(&b, "; %s: %s", e.who, e.err)
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// finish runs after the last directive of the scenario.
func (sr *scenarioRun) finish() {
	sr.measure()
	sr.closeConns()
}
