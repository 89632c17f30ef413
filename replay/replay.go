// Package replay executes trace files: each scenario (a "world" directive
// and the directives after it) runs in its own lab bubble with the real
// guestinit and hostd, and every directive prints what happened. The
// printed output is compared with the expected output in the file by the
// package's tests and by `vsocklab replay --check`, or written back by
// -rewrite. The command reference is docs/trace.md.
package replay

import (
	"fmt"
	"slices"
	"strings"

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

// Parse reads a trace file and checks every directive before anything runs:
// known commands, known profiles, well-formed arguments.
func Parse(name, text string) (*trace.File, error) {
	f, err := trace.Parse(name, text)
	if err != nil {
		return nil, err
	}
	if len(f.Directives) > 0 && f.Directives[0].Cmd != "world" {
		return nil, f.Directives[0].Errorf("a trace starts with a world directive, got %q", f.Directives[0].Cmd)
	}
	for _, d := range f.Directives {
		c, ok := commands[d.Cmd]
		if !ok {
			return nil, d.Errorf("unknown command %q (known: %s)", d.Cmd, strings.Join(commandNames(), ", "))
		}
		if err := checkArgs(d, c); err != nil {
			return nil, err
		}
		if c.check != nil {
			if err := c.check(d); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// RunFile replays every scenario of f, each in its own lab bubble. Errors
// in a directive (a workload that will not parse, a wait that times out) are
// printed as its output, "error: ...", so that they are part of the story.
func RunFile(r lab.Runner, f *trace.File, opts Options) *Result {
	res := &Result{File: f, Outputs: make([]string, len(f.Directives))}
	for start := 0; start < len(f.Directives); {
		end := start + 1
		for end < len(f.Directives) && f.Directives[end].Cmd != "world" {
			end++
		}
		sr := newScenario(f.Name, f.Directives[start], opts)
		sc := sr.sc
		res.Scenarios = append(res.Scenarios, sc)
		first, last := start, end
		run := r.Run(sr.labConfig(), func(l *lab.Lab) {
			sr.l = l
			sr.start(opts)
			for i := first; i < last; i++ {
				res.Outputs[i] = sr.exec(f.Directives[i])
			}
			sr.finish()
		})
		sc.Report.LogSHA256 = run.Hash
		sc.Log = run.Log
		sc.records = run.World.Eng.Log.Records()
		start = end
	}
	return res
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
