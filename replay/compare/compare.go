// Package compare replays one scenario of a trace file under two
// configurations, a and b, and shows where they part: the first record of
// the event log that differs, with the records around it, the directives
// whose output differs, and the two verdicts and key figures side by side.
// It is `vsocklab diff`, built on replay's public pieces (Parse, RunFile,
// Scenario, Report): the scenario runs exactly as `vsocklab replay` runs
// it, once per side.
//
// A configuration is a list of settings, each changing one argument of one
// directive of the scenario:
//
//	device=cloud-hypervisor-51      an argument of the world directive (device, kernel, seed, cid)
//	init.write-timeout=2s           an argument of the scenario's first init directive
//	init.keep-reset-sessions        a flag of it
//	-init.no-write-timeout          an argument or flag removed
//
// Any command works in place of init (hostd, stream, cycles, ...); the
// changed scenario is validated as a trace file is, so a setting the
// command does not take is an error naming it.
package compare

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/trace"
)

// Setting changes one argument of one directive.
type Setting struct {
	Cmd    string   // the directive's command: "world" for a bare key
	Key    string   // the argument
	Vals   []string // its values; none for a flag
	Remove bool     // drop the argument instead
	text   string
}

func (s Setting) String() string { return s.text }

// ParseSetting reads "key=value", "cmd.key=value", "cmd.flag" or
// "-cmd.key".
func ParseSetting(s string) (Setting, error) {
	set := Setting{Cmd: "world", text: s}
	rest := s
	if strings.HasPrefix(rest, "-") {
		set.Remove, rest = true, rest[1:]
	}
	name, val, hasVal := strings.Cut(rest, "=")
	if cmd, key, ok := strings.Cut(name, "."); ok && cmd != "" {
		set.Cmd, name = cmd, key
	}
	set.Key = name
	switch {
	case name == "" || strings.ContainsAny(name, " ()=,"):
		return set, fmt.Errorf("setting %q: expected key=value, cmd.key=value, cmd.flag or -cmd.key", s)
	case set.Remove && hasVal:
		return set, fmt.Errorf("setting %q: a removal takes no value", s)
	case hasVal && val == "":
		return set, fmt.Errorf("setting %q: expected a value after '='", s)
	case set.Cmd == "world" && !set.Remove && !hasVal:
		return set, fmt.Errorf("setting %q: the world directive's arguments take a value (device=NAME, kernel=NAME, seed=N, cid=N)", s)
	case set.Cmd == "world" && set.Key == "name":
		return set, fmt.Errorf("setting %q: the scenario keeps its name on both sides", s)
	}
	if hasVal {
		set.Vals = []string{val}
	}
	return set, nil
}

// Settings parses each of ss.
func Settings(ss []string) ([]Setting, error) {
	var out []Setting
	for _, s := range ss {
		set, err := ParseSetting(s)
		if err != nil {
			return nil, err
		}
		out = append(out, set)
	}
	return out, nil
}

// Scenario returns the scenario of f named name (the world directive's
// name=) as a file of its own, with settings applied and validated by
// replay.ParseWith. An empty name picks the file's only scenario. label
// ("a" or "b") names the side in errors.
func Scenario(f *trace.File, name, label string, settings []Setting, opts replay.Options) (*trace.File, error) {
	ds, err := pick(f, name)
	if err != nil {
		return nil, err
	}
	// Copies: the settings must not reach f or the other side.
	out := make([]*trace.Directive, len(ds))
	for i, d := range ds {
		c := *d
		c.Args = slices.Clone(d.Args)
		out[i] = &c
	}
	for _, s := range settings {
		i := slices.IndexFunc(out, func(d *trace.Directive) bool { return d.Cmd == s.Cmd })
		if i < 0 {
			return nil, fmt.Errorf("%s: setting %s: scenario %s has no %s directive", label, s, scenarioName(ds[0]), s.Cmd)
		}
		d := out[i]
		j := slices.IndexFunc(d.Args, func(a trace.Arg) bool { return a.Key == s.Key })
		switch {
		case s.Remove && j < 0:
			return nil, fmt.Errorf("%s: setting %s: %s (line %d) has no argument %s", label, s, d.Cmd, d.Line, s.Key)
		case s.Remove:
			d.Args = slices.Delete(d.Args, j, j+1)
		case j < 0:
			d.Args = append(d.Args, trace.Arg{Key: s.Key, Vals: s.Vals})
		default:
			d.Args[j] = trace.Arg{Key: s.Key, Vals: s.Vals}
		}
	}
	sub := &trace.File{Name: f.Name, Directives: out}
	// Validate as a file: arguments a command does not take, values out of
	// range, contradictions (write-timeout with no-write-timeout).
	parsed, err := replay.ParseWith(fmt.Sprintf("%s (%s)", f.Name, label), sub.Format(nil), opts)
	if err != nil {
		return nil, err
	}
	parsed.Name = f.Name
	return parsed, nil
}

func pick(f *trace.File, name string) ([]*trace.Directive, error) {
	var names []string
	for start := 0; start < len(f.Directives); {
		end := start + 1
		for end < len(f.Directives) && f.Directives[end].Cmd != "world" {
			end++
		}
		n := scenarioName(f.Directives[start])
		if n == name {
			return f.Directives[start:end], nil
		}
		names = append(names, n)
		if name == "" && end == len(f.Directives) && start == 0 {
			return f.Directives, nil
		}
		start = end
	}
	if name == "" {
		return nil, fmt.Errorf("%s has %d scenarios: name one as FILE:SCENARIO (%s)", f.Name, len(names), strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%s: no scenario named %q (it has %s)", f.Name, name, strings.Join(names, ", "))
}

// scenarioName is the world directive's name=, or replay's default name.
func scenarioName(world *trace.Directive) string {
	if a, ok := world.Arg("name"); ok && len(a.Vals) == 1 {
		return a.Vals[0]
	}
	return fmt.Sprintf("scenario-%d", world.Line)
}

// Side is one configuration after its replay.
type Side struct {
	Label    string
	Settings []Setting
	File     *trace.File
	Outputs  []string
	Scenario *replay.Scenario
	records  []string
	keys     []string // records as compared: the side's profile names masked
}

// Comparison is the two replays of one scenario.
type Comparison struct {
	A, B *Side
}

// Run replays the scenario under both configurations, a first. The replays
// keep the whole event log (opts.Capture is forced on).
func Run(r lab.Runner, fa, fb *trace.File, a, b []Setting, opts replay.Options) *Comparison {
	opts.Capture = true
	side := func(label string, f *trace.File, settings []Setting) *Side {
		res := replay.RunFile(r, f, opts)
		sc := res.Scenarios[0]
		recs := logLines(sc.Log)
		return &Side{Label: label, Settings: settings, File: f, Outputs: res.Outputs, Scenario: sc, records: recs,
			keys: masked(recs, sc.Report.Device, sc.Report.Kernel)}
	}
	return &Comparison{A: side("a", fa, a), B: side("b", fb, b)}
}

func logLines(log string) []string {
	if log == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(log, "\n"), "\n")
}

// masked replaces the profile names in records with placeholders, so that
// the record that only names the configuration ("boot: device X, guest Y")
// does not count as the timelines parting: the header shows the names.
func masked(recs []string, device, kernel string) []string {
	r := strings.NewReplacer("device "+device, "device <device>", "guest "+kernel, "guest <kernel>")
	out := make([]string, len(recs))
	for i, l := range recs {
		out[i] = r.Replace(l)
	}
	return out
}

// Same reports whether the two timelines do not part (Part is -1).
func (c *Comparison) Same() bool { return c.Part() < 0 }

// Part is the index of the first record that differs, or -1 when the logs
// are the same but for the profile names they print. When one log is a
// prefix of the other, it is the shorter one's length.
func (c *Comparison) Part() int {
	a, b := c.A.keys, c.B.keys
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return min(len(a), len(b))
}

// Text renders the comparison: the two configurations, where the
// timelines part with context records before (common to both) and after
// (on each side), the directives whose output differs, and the key
// figures side by side.
func (c *Comparison) Text(context int) string {
	var b strings.Builder
	ra := &c.A.Scenario.Report
	fmt.Fprintf(&b, "scenario %s of %s\n", ra.Name, ra.File)
	for _, s := range []*Side{c.A, c.B} {
		r := &s.Scenario.Report
		settings := "as written"
		if len(s.Settings) > 0 {
			var ss []string
			for _, set := range s.Settings {
				ss = append(ss, set.String())
			}
			settings = strings.Join(ss, " ")
		}
		fmt.Fprintf(&b, "%s: %s: device %s, guest %s, seed %d\n", s.Label, settings, r.Device, r.Kernel, r.Seed)
	}
	b.WriteByte('\n')
	c.writeTimelines(&b, context)
	b.WriteByte('\n')
	c.writeOutputs(&b)
	b.WriteByte('\n')
	c.writeFigures(&b)
	return b.String()
}

func (c *Comparison) writeTimelines(b *strings.Builder, context int) {
	a, bb := c.A.records, c.B.records
	part := c.Part()
	if part < 0 {
		fmt.Fprintf(b, "timelines: the same %d records\n", len(a))
		return
	}
	at := func(recs []string) string {
		if part < len(recs) {
			return strings.TrimSpace(recs[part][:min(14, len(recs[part]))])
		}
		return "the end of its log"
	}
	fmt.Fprintf(b, "timelines part at record %d of %d (a) and %d (b): a at %s, b at %s\n",
		part+1, len(a), len(bb), at(a), at(bb))
	for _, l := range a[max(0, part-context):part] {
		fmt.Fprintf(b, "  %s\n", l)
	}
	for _, s := range []*Side{c.A, c.B} {
		recs := s.records
		end := min(len(recs), part+context+1)
		if part >= len(recs) {
			fmt.Fprintf(b, "%s (its log ends here)\n", s.Label)
		}
		for _, l := range recs[min(part, len(recs)):end] {
			fmt.Fprintf(b, "%s %s\n", s.Label, l)
		}
		if left := len(recs) - end; left > 0 {
			fmt.Fprintf(b, "%s ... %d more records\n", s.Label, left)
		}
	}
}

// writeOutputs lists the directives whose printed output differs (both
// sides have the same directives: settings change arguments only).
func (c *Comparison) writeOutputs(b *strings.Builder) {
	var diff []string
	for i, d := range c.A.File.Directives {
		if c.A.Outputs[i] != c.B.Outputs[i] && d.Cmd != "world" {
			diff = append(diff, fmt.Sprintf("%s (line %d)", d.Cmd, d.Line))
		}
	}
	if len(diff) == 0 {
		b.WriteString("outputs: every directive printed the same\n")
		return
	}
	fmt.Fprintf(b, "outputs differ: %s\n", strings.Join(diff, ", "))
}

func (c *Comparison) writeFigures(b *strings.Builder) {
	ra, rb := &c.A.Scenario.Report, &c.B.Scenario.Report
	tw := tabwriter.NewWriter(b, 0, 8, 2, ' ', 0)
	row := func(name string, f func(r *replay.Report) string) {
		va, vb := f(ra), f(rb)
		mark := ""
		if va != vb {
			mark = "  *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\n", name, va, vb, mark)
	}
	fmt.Fprintf(tw, "\ta\tb\n")
	row("verdict", func(r *replay.Report) string { return orDash(r.Verdict) })
	if ra.WorkloadTotal > 0 || rb.WorkloadTotal > 0 {
		row("stdout written", func(r *replay.Report) string { return fmt.Sprint(r.Stdout.Written) })
		row("stdout delivered", func(r *replay.Report) string { return fmt.Sprint(r.Stdout.Delivered) })
		row("longest stdout block", func(r *replay.Report) string { return r.Stdout.LongestBlock.String() })
		row("init write timeouts", func(r *replay.Report) string { return fmt.Sprint(r.Stdout.WriteTimeouts) })
	}
	if len(ra.Resumes) > 0 || len(rb.Resumes) > 0 {
		row("resumes", func(r *replay.Report) string { return fmt.Sprint(len(r.Resumes)) })
		row("last time-to-started", func(r *replay.Report) string { return lastOr(r.Resumes) })
	}
	if ra.StreamTotal > 0 || rb.StreamTotal > 0 {
		row("stream written", func(r *replay.Report) string { return fmt.Sprint(r.Stream.Written) })
		row("stream delivered", func(r *replay.Report) string { return fmt.Sprint(r.Stream.Delivered) })
	}
	row("leaked sockets", func(r *replay.Report) string { return fmt.Sprint(r.LeakedSockets) })
	row("packets guest->host", func(r *replay.Report) string { return fmt.Sprint(sum(r.Counters.GuestToHost)) })
	row("packets host->guest", func(r *replay.Report) string { return fmt.Sprint(sum(r.Counters.HostToGuest)) })
	row("log records", func(r *replay.Report) string {
		if r == ra {
			return fmt.Sprint(len(c.A.records))
		}
		return fmt.Sprint(len(c.B.records))
	})
	row("log sha256", func(r *replay.Report) string { return short(r.LogSHA256) })
	if ra.Error != "" || rb.Error != "" {
		row("stopped", func(r *replay.Report) string { return orDash(r.Error) })
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lastOr(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return ds[len(ds)-1].String()
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func short(h string) string { return h[:min(12, len(h))] }
