package replay

import (
	"context"
	"fmt"
	"net"
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

// Scenario is one world of a trace file and what its replay measured.
type Scenario struct {
	Name   string `json:"name"`
	Device string `json:"device"`
	Kernel string `json:"kernel"`
	Seed   uint64 `json:"seed"`
	Init   string `json:"init,omitempty"`
	Hostd  string `json:"hostd,omitempty"`

	Verdict         string    `json:"verdict,omitempty"`
	StdoutWritten   int64     `json:"stdout_bytes_written"`
	StdoutDelivered int64     `json:"stdout_bytes_delivered"`
	StdoutDropped   int64     `json:"stdout_bytes_dropped_by_init"`
	MaxStdoutBlock  float64   `json:"max_stdout_block_ms"`
	ResumeMS        []float64 `json:"resume_ms"`
	LeakedSockets   int       `json:"leaked_sockets"`
	Counters        Counters  `json:"counters"`
	LogSHA256       string    `json:"log_sha256"`

	Log     string   `json:"-"`
	Packets []Packet `json:"-"`
	records []engine.Record

	cfg       emu.Config
	l         *lab.Lab
	initOpts  guestinit.Options
	workload  []string
	hostdOpts hostd.Options
	sys       *programs.System
	logMark   int
	cycles    []hostd.Cycle
	endState  endState
}

// endState is what the world looked like when the scenario ended.
type endState struct {
	at            time.Duration
	blocked       bool          // a stdout write was waiting for room
	blockedSince  time.Duration // since when
	writeTimeouts int
	pattern       int64 // first out-of-order byte delivered, -1 if none
	total         int64 // what the workload meant to write (writer workloads)
	every         time.Duration
	timeout       time.Duration // init's write timeout, 0 when none
}

// Counters are the packets and payload bytes that crossed the device, by
// direction, as the world's own tap counted them; a capture must agree.
type Counters struct {
	GuestToHost map[string]uint64 `json:"guest_to_host"`
	HostToGuest map[string]uint64 `json:"host_to_guest"`
	RWBytes     map[string]uint64 `json:"rw_bytes"`
}

// Packet is one captured packet.
type Packet struct {
	At      time.Duration
	Dir     device.Dir
	Hdr     virtio.Header
	Payload []byte
}

func newScenario(d *trace.Directive, opts Options) *Scenario {
	cfg, name, _ := worldConfig(d) // checked by Parse
	if opts.Seed != nil {
		cfg.Seed = *opts.Seed
	}
	sc := &Scenario{Name: name, cfg: cfg}
	c := cfg
	c.Device, c.Kernel = orDefault(c.Device, "firecracker-1.14"), orDefault(c.Kernel, "linux-6.12.68")
	sc.Device, sc.Kernel, sc.Seed = c.Device, c.Kernel, c.Seed
	return sc
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (sc *Scenario) labConfig() lab.Config { return lab.Config{Config: sc.cfg} }

// start runs inside the bubble before the first directive.
func (sc *Scenario) start(opts Options) {
	if !opts.Capture {
		return
	}
	_ = sc.l.Do(func(w *emu.World) error {
		w.AddTap(func(at time.Duration, dir device.Dir, h *virtio.Header, payload []byte) {
			sc.Packets = append(sc.Packets, Packet{At: at, Dir: dir, Hdr: *h, Payload: append([]byte(nil), payload...)})
		})
		return nil
	})
}

// exec runs one directive and returns its output.
func (sc *Scenario) exec(d *trace.Directive) string {
	out, err := commands[d.Cmd].run(sc, d)
	if err != nil {
		out += "error: " + err.Error() + "\n"
	}
	return out
}

// now is the scenario's virtual time.
func (sc *Scenario) now() string { return strings.TrimSpace(engine.FormatTime(sc.l.Now())) }

func (sc *Scenario) cmdWorld(d *trace.Directive) (string, error) {
	return fmt.Sprintf("world %s: device %s, guest %s, seed %d\n", sc.Name, sc.Device, sc.Kernel, sc.Seed), nil
}

func (sc *Scenario) cmdHostd(d *trace.Directive) (string, error) {
	o := hostd.Options{
		SessionFirst:   hasFlag(d, "session-first"),
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
	sc.hostdOpts = o
	full := hostd.New(o, nil, nil, nil).Options() // defaults filled in
	order := "status check first"
	if full.SessionFirst {
		order = "metrics session first"
	}
	sc.Hostd = fmt.Sprintf("%s, backoff %s doubling to %s, give up after %s", order, full.Backoff.Initial, full.Backoff.Max, full.Backoff.GiveUp)
	return "hostd: " + sc.Hostd + "\n", nil
}

func (sc *Scenario) cmdInit(d *trace.Directive) (string, error) {
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
	sc.initOpts = o
	sc.workload = strings.Fields(d.Input[0])
	full := guestinit.New(nil, o).Options()
	timeout := "vsock write timeout " + full.VsockWriteTimeout.String()
	if full.NoVsockWriteTimeout {
		timeout = "no vsock write timeout"
	}
	sessions := "closes reset sessions"
	if full.KeepResetSessions {
		sessions = "keeps reset session sockets open"
	}
	sc.Init = fmt.Sprintf("%s, %s; workload: %s", timeout, sessions, strings.Join(sc.workload, " "))
	return "init: " + sc.Init + "\n", nil
}

func (sc *Scenario) cmdBoot(d *trace.Directive) (string, error) {
	if sc.sys != nil {
		return "", fmt.Errorf("already booted")
	}
	if sc.workload == nil {
		return "", fmt.Errorf("boot needs an init directive first")
	}
	sc.sys = programs.Start(sc.l, sc.initOpts, sc.workload, sc.hostdOpts)
	return fmt.Sprintf("booted at %s\n", sc.now()), nil
}

func (sc *Scenario) cmdRun(d *trace.Directive) (string, error) {
	dur, _ := time.ParseDuration(d.Args[0].Key)
	time.Sleep(dur)
	return fmt.Sprintf("now %s\n", sc.now()), nil
}

func (sc *Scenario) cmdSuspend(d *trace.Directive) (string, error) {
	if err := sc.l.Suspend(); err != nil {
		return "", err
	}
	return fmt.Sprintf("suspended at %s\n", sc.now()), nil
}

func (sc *Scenario) cmdResume(d *trace.Directive) (string, error) {
	if err := sc.l.Resume(); err != nil {
		return "", err
	}
	if sc.sys != nil {
		sc.sys.Hostd.Resumed()
	}
	return fmt.Sprintf("resumed at %s\n", sc.now()), nil
}

// waitCycle waits for hostd's cycle n.
func (sc *Scenario) waitCycle(n int, timeout time.Duration) (hostd.Cycle, error) {
	if sc.sys == nil {
		return hostd.Cycle{}, fmt.Errorf("not booted")
	}
	ctx, cancel := context.WithTimeout(sc.l.Context(), timeout)
	defer cancel()
	c, err := sc.sys.Hostd.WaitCycle(ctx, n)
	if err != nil {
		return c, fmt.Errorf("cycle %d did not finish within %s", n, timeout)
	}
	for len(sc.cycles) <= n {
		sc.cycles = append(sc.cycles, hostd.Cycle{})
	}
	sc.cycles[n] = c
	return c, nil
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

func (sc *Scenario) cmdWaitStarted(d *trace.Directive) (string, error) {
	c, err := sc.waitCycle(int(numArg(d, "cycle", 0)), durArg(d, "timeout", 10*time.Minute))
	if err != nil {
		return "", err
	}
	return cycleLine(c) + "\n", nil
}

func (sc *Scenario) leaked() int {
	n := 0
	_ = sc.l.Do(func(w *emu.World) error { n = w.Guest.Leaked(); return nil })
	return n
}

// cmdCycles suspends and resumes n times: after each resume hostd runs its
// start sequence, and the line shows what it took.
func (sc *Scenario) cmdCycles(d *trace.Directive) (string, error) {
	n := int(numArg(d, "n", 1))
	dwell, pause := durArg(d, "dwell", 5*time.Second), durArg(d, "pause", time.Second)
	timeout := durArg(d, "timeout", 10*time.Minute)
	var b strings.Builder
	first := len(sc.cycles)
	if first == 0 {
		return "", fmt.Errorf("cycles needs the boot cycle first (wait-started)")
	}
	for i := 0; i < n; i++ {
		time.Sleep(dwell)
		if err := sc.l.Suspend(); err != nil {
			return b.String(), err
		}
		time.Sleep(pause)
		if err := sc.l.Resume(); err != nil {
			return b.String(), err
		}
		sc.sys.Hostd.Resumed()
		c, err := sc.waitCycle(first+i, timeout)
		if err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "%s; leaked sockets %d\n", cycleLine(c), sc.leaked())
	}
	return b.String(), nil
}

func (sc *Scenario) cmdConnect(d *trace.Directive) (string, error) {
	port, err := port32(d, "port")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(sc.l.Context(), 10*time.Second)
	defer cancel()
	c, err := hostd.Connect(ctx, func(context.Context) (net.Conn, error) { return sc.l.Host.Dial(sc.l.Host.UDSPath()) }, port)
	if err != nil {
		return fmt.Sprintf("connect %d: %v\n", port, err), nil
	}
	c.Close()
	return fmt.Sprintf("connect %d: OK from host port %d\n", port, c.HostPort), nil
}

func (sc *Scenario) cmdFault(d *trace.Directive) (string, error) {
	n, minLen := int(numArg(d, "n", 1)), uint32(numArg(d, "min-len", 1))
	if err := sc.l.Do(func(w *emu.World) error { w.Dev.DropTX(n, minLen); return nil }); err != nil {
		return "", err
	}
	return fmt.Sprintf("fault at %s: the device will lose the next %d TX RW packets of %d bytes or more\n", sc.now(), n, minLen), nil
}

func (sc *Scenario) cmdTimeline(d *trace.Directive) (string, error) {
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
	_ = sc.l.Do(func(w *emu.World) error {
		recs := w.Eng.Log.Records()
		from := sc.logMark
		if hasFlag(d, "all") {
			from = 0
		}
		for _, r := range recs[min(from, len(recs)):] {
			if r.Kind&keep == 0 || (comps != nil && !contains(comps, r.Comp)) || grep != "" && !strings.Contains(r.Text, grep) {
				continue
			}
			lines = append(lines, r.String())
		}
		sc.logMark = len(recs)
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

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (sc *Scenario) cmdSockets(d *trace.Directive) (string, error) {
	var b strings.Builder
	limit := int(numArg(d, "limit", 0))
	_ = sc.l.Do(func(w *emu.World) error {
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

func (sc *Scenario) collectCounters(w *emu.World) Counters {
	c := w.Counters()
	out := Counters{GuestToHost: map[string]uint64{}, HostToGuest: map[string]uint64{}, RWBytes: map[string]uint64{}}
	for op := virtio.Op(1); op <= virtio.OpCreditRequest; op++ {
		if n := c.Packets[device.GuestToHost][op]; n > 0 {
			out.GuestToHost[op.String()] = n
		}
		if n := c.Packets[device.HostToGuest][op]; n > 0 {
			out.HostToGuest[op.String()] = n
		}
	}
	out.RWBytes["guest_to_host"] = c.RWBytes[device.GuestToHost]
	out.RWBytes["host_to_guest"] = c.RWBytes[device.HostToGuest]
	return out
}

func (sc *Scenario) cmdCounters(d *trace.Directive) (string, error) {
	var c Counters
	var ds device.Stats
	var gs guest.Stats
	_ = sc.l.Do(func(w *emu.World) error {
		c = sc.collectCounters(w)
		ds, gs = w.Dev.Stats(), w.Guest.Stats()
		return nil
	})
	var b strings.Builder
	for _, dir := range []struct {
		name string
		m    map[string]uint64
	}{{"guest->host", c.GuestToHost}, {"host->guest", c.HostToGuest}} {
		fmt.Fprintf(&b, "%s:", dir.name)
		for op := virtio.Op(1); op <= virtio.OpCreditRequest; op++ {
			if n := dir.m[op.String()]; n > 0 {
				fmt.Fprintf(&b, " %s=%d", op, n)
			}
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "rw bytes: guest->host %d, host->guest %d\n", c.RWBytes["guest_to_host"], c.RWBytes["host_to_guest"])
	fmt.Fprintf(&b, "device: bad tx chains %d, bad rx chains %d, leaked chains %d, rsts %d, invariant violations %d\n",
		ds.BadTXChains, ds.BadRXChains, ds.LeakedChains, ds.RSTsSent, ds.Violations)
	fmt.Fprintf(&b, "guest: transport resets %d, REQUESTs answered RST by reset sockets %d, rx dropped %d\n",
		gs.TransportResets, gs.RequestsOnResetSockets, gs.RXDropped+gs.RWDropped)
	return b.String(), nil
}

// measure fills the scenario's numbers from the programs and the world.
func (sc *Scenario) measure() {
	st := endState{pattern: -1}
	sc.StdoutWritten, sc.StdoutDelivered, sc.StdoutDropped = 0, 0, 0
	if sc.sys != nil {
		if p := sc.sys.Workload(); p != nil {
			sc.StdoutWritten = p.Written()
		}
		if s, ok := sc.sys.Hostd.Collector.Stream("stdout"); ok {
			sc.StdoutDelivered = int64(s.Bytes)
			st.pattern = labenv.CheckPattern(s.Data)
		}
		is := sc.sys.Init.Stats()
		sc.StdoutDropped = int64(is.LogBytesDropped["stdout"])
		st.writeTimeouts = is.WriteTimeouts
		o := sc.sys.Init.Options()
		if !o.NoVsockWriteTimeout {
			st.timeout = o.VsockWriteTimeout
		}
		if w, err := labenv.ParseWorkload(sc.workload); err == nil {
			st.total, st.every = w.Total, w.Every
		}
	}
	var maxBlock time.Duration
	now := sc.l.Now()
	for _, p := range sc.l.Pipes() {
		maxBlock = max(maxBlock, p.MaxBlock)
		if p.Blocked {
			st.blocked = true
			st.blockedSince = p.Since
			maxBlock = max(maxBlock, now-p.Since)
		}
	}
	st.at = now
	sc.MaxStdoutBlock = float64(maxBlock) / float64(time.Millisecond)
	sc.ResumeMS = nil
	for _, c := range sc.cycles[min(1, len(sc.cycles)):] {
		sc.ResumeMS = append(sc.ResumeMS, float64(c.TimeToStarted)/float64(time.Millisecond))
	}
	sc.LeakedSockets = sc.leaked()
	_ = sc.l.Do(func(w *emu.World) error { sc.Counters = sc.collectCounters(w); return nil })
	sc.endState = st
}

func (sc *Scenario) cmdReport(d *trace.Directive) (string, error) {
	sc.measure()
	var b strings.Builder
	st := sc.endState
	fmt.Fprintf(&b, "stdout: written %d, delivered %d, dropped by init %d", sc.StdoutWritten, sc.StdoutDelivered, sc.StdoutDropped)
	if sc.StdoutDelivered > 0 {
		if st.pattern >= 0 {
			fmt.Fprintf(&b, ", out of order at byte %d", st.pattern)
		} else {
			b.WriteString(", in order")
		}
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "longest stdout write block: %s", time.Duration(sc.MaxStdoutBlock*float64(time.Millisecond)))
	if st.blocked {
		fmt.Fprintf(&b, " (still blocked, since %s)", strings.TrimSpace(engine.FormatTime(st.blockedSince)))
	}
	fmt.Fprintf(&b, "; init write timeouts: %d\n", st.writeTimeouts)
	if len(sc.ResumeMS) > 0 {
		fmt.Fprintf(&b, "resumes: %d, time-to-started first %s, last %s, longest %s\n", len(sc.ResumeMS),
			ms(sc.ResumeMS[0]), ms(sc.ResumeMS[len(sc.ResumeMS)-1]), ms(maxF(sc.ResumeMS)))
	}
	fmt.Fprintf(&b, "leaked sockets in the guest's connected table: %d\n", sc.LeakedSockets)
	return b.String(), nil
}

func ms(v float64) string { return time.Duration(v * float64(time.Millisecond)).String() }

func maxF(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func (sc *Scenario) cmdVerdict(d *trace.Directive) (string, error) {
	sc.measure()
	var v, why string
	switch d.Args[0].Key {
	case "wedge":
		v, why = sc.wedgeVerdict()
	case "resume":
		v, why = sc.resumeVerdict()
	}
	sc.Verdict = v
	return fmt.Sprintf("verdict: %s (%s)\n", v, why), nil
}

// wedgeVerdict: wedged when the workload is blocked writing stdout at the
// end of the run and did not write everything; degraded when init dropped
// bytes after write timeouts but the workload never waited longer than the
// timeout plus one tick of its writes; ok when every byte arrived, in order.
func (sc *Scenario) wedgeVerdict() (string, string) {
	st := sc.endState
	block := time.Duration(sc.MaxStdoutBlock * float64(time.Millisecond))
	switch {
	case st.blocked && sc.StdoutWritten < st.total:
		return "wedged", fmt.Sprintf("the workload has been blocked writing stdout since %s; %d of %d bytes written, %d delivered",
			strings.TrimSpace(engine.FormatTime(st.blockedSince)), sc.StdoutWritten, st.total, sc.StdoutDelivered)
	case st.writeTimeouts > 0 && st.timeout > 0 && block <= st.timeout+max(st.every, time.Millisecond):
		return "degraded", fmt.Sprintf("init warned %d times and dropped %d bytes; longest stdout block %s, within the %s timeout plus one tick",
			st.writeTimeouts, sc.StdoutDropped, block, st.timeout)
	case sc.StdoutDelivered == sc.StdoutWritten && sc.StdoutWritten == st.total && st.pattern < 0 && st.writeTimeouts == 0:
		return "ok", fmt.Sprintf("all %d bytes delivered in order; longest stdout block %s", sc.StdoutDelivered, block)
	}
	return "unexpected", fmt.Sprintf("written %d of %d, delivered %d, dropped %d, timeouts %d, longest block %s",
		sc.StdoutWritten, st.total, sc.StdoutDelivered, sc.StdoutDropped, st.writeTimeouts, block)
}

// resumeVerdict: grows when time-to-started rose with every resume; bounded
// when every resume started within a second.
func (sc *Scenario) resumeVerdict() (string, string) {
	r := sc.ResumeMS
	if len(r) == 0 {
		return "unexpected", "no resumes"
	}
	rising := true
	passed := 0
	for i, v := range r {
		if i > 0 && v <= r[i-1] {
			rising = false
		}
		if passed == 0 && v > 30000 {
			passed = i + 1
		}
	}
	switch {
	case rising && len(r) > 1:
		why := fmt.Sprintf("time-to-started rose with every one of %d resumes, %s to %s", len(r), ms(r[0]), ms(r[len(r)-1]))
		if passed > 0 {
			why += fmt.Sprintf("; over 30s from resume %d", passed)
		}
		return "grows", why
	case maxF(r) < 1000:
		return "bounded", fmt.Sprintf("all %d resumes started within %s", len(r), ms(maxF(r)))
	}
	return "unbounded", fmt.Sprintf("longest time-to-started %s over %d resumes, not rising every time", ms(maxF(r)), len(r))
}

// finish runs after the last directive of the scenario.
func (sc *Scenario) finish() { sc.measure() }
