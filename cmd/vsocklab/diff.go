package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/replay/compare"
	"github.com/vsocklab/vsocklab/trace"
)

// settingsFlag collects a repeated --a or --b.
type settingsFlag []string

func (s *settingsFlag) String() string     { return strings.Join(*s, " ") }
func (s *settingsFlag) Set(v string) error { *s = append(*s, v); return nil }

func diffMain(args []string) int {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	var a, b settingsFlag
	fs.Var(&a, "a", "a setting of configuration a (repeatable): device=NAME, kernel=NAME, seed=N, cmd.key=value, cmd.flag, -cmd.key")
	fs.Var(&b, "b", "a setting of configuration b (repeatable), as --a")
	context := fs.Int("context", 4, "records of context around the first difference")
	maxVirtual := fs.Duration("max-virtual", replay.DefaultMaxVirtual, "stop each side at this much virtual time (negative: no limit)")
	maxWall := fs.Duration("max-wall", replay.DefaultMaxWall, "stop each side after this much real time (negative: no limit)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vsocklab diff [--a SETTING]... [--b SETTING]... FILE[:SCENARIO]")
		fmt.Fprintln(fs.Output(), "Replays one scenario under two configurations and shows where their event logs and verdicts part.")
		fmt.Fprintln(fs.Output(), "A side without settings is the scenario as written. Exit status: 0 when the two event logs")
		fmt.Fprintln(fs.Output(), "are the same (but for the profile names they print), 1 when they differ (or a limit stopped a side), 2 for bad arguments or files.")
		fmt.Fprintln(fs.Output(), "Example: vsocklab diff --a device=cloud-hypervisor-50 --b device=cloud-hypervisor-51 \\")
		fmt.Fprintln(fs.Output(), "           testdata/incidents/stdout-wedge.trace:wedge-ch50-6.12.68-notimeout-64kib")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *context < 0 || *maxVirtual == 0 || *maxWall == 0 {
		fs.Usage()
		return 2
	}
	path, name := fs.Arg(0), ""
	if i := strings.LastIndex(path, ":"); i >= 0 {
		if _, err := os.Stat(path); err != nil { // a file name may hold a colon
			path, name = path[:i], path[i+1:]
		}
	}
	opts := replay.Options{MaxVirtual: *maxVirtual, MaxWall: *maxWall, Progress: os.Stderr}
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxTraceBytes {
		fmt.Fprintf(os.Stderr, "%s:1: %d bytes, over the %d MiB a trace file may have\n", path, fi.Size(), maxTraceBytes>>20)
		return 2
	}
	text, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab:", err)
		return 2
	}
	f, err := replay.ParseWith(path, string(text), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sa, err := compare.Settings(a)
	if err == nil {
		var sb []compare.Setting
		if sb, err = compare.Settings(b); err == nil {
			return runDiff(f, name, sa, sb, *context, opts)
		}
	}
	fmt.Fprintln(os.Stderr, "vsocklab diff:", err)
	return 2
}

func runDiff(f *trace.File, name string, sa, sb []compare.Setting, context int, opts replay.Options) int {
	fa, err := compare.Scenario(f, name, "a", sa, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab diff:", err)
		return 2
	}
	fb, err := compare.Scenario(f, name, "b", sb, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab diff:", err)
		return 2
	}
	lab.Main(func(r lab.Runner, out io.Writer) bool {
		c := compare.Run(r, fa, fb, sa, sb, opts)
		io.WriteString(out, c.Text(context))
		for _, s := range []*compare.Side{c.A, c.B} {
			if err := s.Scenario.Err; err != nil {
				fmt.Fprintf(os.Stderr, "vsocklab diff: %s: %v\n", s.Label, err)
			}
		}
		return c.Same() && c.A.Scenario.Err == nil && c.B.Scenario.Err == nil
	})
	return 0 // not reached: lab.Main exits
}
