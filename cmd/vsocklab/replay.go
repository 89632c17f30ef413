package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/replay/plots"
	"github.com/vsocklab/vsocklab/trace"
)

// maxTraceBytes bounds the size of a trace file, read whole before
// validation: the incident library's files are tens of KiB.
const maxTraceBytes = 16 << 20

const replayUsage = `usage: vsocklab replay [flags] FILE...

Replays trace files and prints them with the actual output (or, with --check,
one "ok" line per file that replays as written). Standard error gets the
progress of every scenario replaying for over a second, the diffs of --check,
and at the end a table of every scenario: file, name, device, kernel, verdict
and its key figure (--summary=false leaves it out).

Exit status:
  0  every file replayed as written (with --check), or replayed (without)
  1  an output differs from the file under --check, or a scenario stopped at
     --max-virtual or --max-wall ("error: ..." in its output), or an output
     could not be written
  2  bad flags, or a file that does not read or parse (every problem printed
     as file:line: what was expected; nothing runs)
An "error: ..." output of a directive that did not stop its scenario (a wait
that timed out) is part of the story: --check compares it like any output.

Flags:
`

func replayMain(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	check := fs.Bool("check", false, "compare each directive's output with the file; exit 1 with a diff on any difference")
	asJSON := fs.Bool("json", false, "print one JSON object per scenario instead of the trace text")
	pcap := fs.String("pcap", "", "write every packet that crossed the device as LINKTYPE_VSOCK pcap (one scenario: FILE; several: FILE with -<scenario> before .pcap)")
	plotDir := fs.String("plot", "", "draw each file's resume matrix and each scenario's stdout and credit over time into DIR, as PNG and SVG")
	mermaid := fs.Bool("mermaid", false, "print each scenario's packet exchange as a Mermaid sequence diagram")
	limit := fs.Int("limit", 60, "with --mermaid, draw at most this many lines per scenario (0: all): repeated exchanges fold into loops, and a longer diagram keeps the start and samples the rest of the run")
	seed := fs.Int64("seed", -1, "replace every world's seed")
	rewrite := fs.Bool("rewrite", false, "write the actual output back into the files")
	maxVirtual := fs.Duration("max-virtual", replay.DefaultMaxVirtual, "stop a scenario at this much virtual time; validation refuses one whose runs and cycles alone pass it (negative: no limit)")
	maxWall := fs.Duration("max-wall", replay.DefaultMaxWall, "stop a scenario after this much real time (negative: no limit)")
	summary := fs.Bool("summary", true, "end with a table of every scenario's verdict and key figure, on standard error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *maxVirtual == 0 || *maxWall == 0 {
		fmt.Fprintln(os.Stderr, "vsocklab replay: --max-virtual and --max-wall take a positive duration (negative: no limit)")
		return 2
	}
	opts := replay.Options{Capture: *pcap != "" || *mermaid, Plot: *plotDir != "", MaxVirtual: *maxVirtual, MaxWall: *maxWall, Progress: os.Stderr}
	if *seed == 0 {
		fmt.Fprintln(os.Stderr, "vsocklab replay: --seed 0: seeds start at 1 (the default of every world)")
		return 2
	}
	if *seed > 0 {
		s := uint64(*seed)
		opts.Seed = &s
	}
	var files []*trace.File
	bad := false
	for _, path := range fs.Args() {
		if fi, err := os.Stat(path); err == nil && fi.Size() > maxTraceBytes {
			fmt.Fprintf(os.Stderr, "%s:1: %d bytes, over the %d MiB a trace file may have\n", path, fi.Size(), maxTraceBytes>>20)
			bad = true
			continue
		}
		text, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vsocklab:", err)
			return 2
		}
		f, err := replay.ParseWith(path, string(text), opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, err) // one "file:line: problem" a line
			bad = true
			continue
		}
		files = append(files, f)
	}
	if bad {
		return 2
	}
	lab.Main(func(r lab.Runner, out io.Writer) bool {
		failed := false
		var all []*replay.Scenario
		for _, f := range files {
			res := replay.RunFile(r, f, opts)
			all = append(all, res.Scenarios...)
			if res.Failed() {
				failed = true
				for _, sc := range res.Scenarios {
					if sc.Err != nil {
						fmt.Fprintf(os.Stderr, "vsocklab replay: %s: scenario %s: %v\n", f.Name, sc.Report.Name, sc.Err)
					}
				}
			}
			switch {
			case *rewrite:
				if err := os.WriteFile(f.Name, []byte(res.Text()), 0o644); err != nil {
					fmt.Fprintln(os.Stderr, "vsocklab:", err)
					failed = true
				}
			case *check:
				if d := res.Diff(); d != "" {
					fmt.Fprint(os.Stderr, d)
					failed = true
				} else {
					fmt.Fprintf(out, "ok   %s (%d scenarios)\n", f.Name, len(res.Scenarios))
				}
			case !*asJSON && !*mermaid:
				io.WriteString(out, res.Text())
			}
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			for _, sc := range all {
				if err := enc.Encode(sc.Report); err != nil {
					failed = true
				}
			}
		}
		if *mermaid {
			for _, sc := range all {
				fmt.Fprintf(out, "```mermaid\n%s```\n", sc.Mermaid(*limit))
			}
		}
		if *plotDir != "" {
			paths, err := plots.WriteDir(*plotDir, all, "png", "svg")
			if err != nil {
				fmt.Fprintln(os.Stderr, "vsocklab:", err)
				failed = true
			}
			fmt.Fprintf(os.Stderr, "vsocklab replay: %d pictures in %s\n", len(paths), *plotDir)
		}
		if *pcap != "" {
			if err := writePcaps(*pcap, all); err != nil {
				fmt.Fprintln(os.Stderr, "vsocklab:", err)
				failed = true
			}
		}
		if *summary {
			// On standard error, with the progress and the diffs: standard
			// output stays the trace text, JSON or Mermaid it was asked for.
			fmt.Fprintln(os.Stderr)
			replay.WriteSummary(os.Stderr, all)
		}
		return !failed
	})
	return 0 // not reached: lab.Main exits
}

func writePcaps(path string, scs []*replay.Scenario) error {
	for _, sc := range scs {
		name := path
		if len(scs) > 1 {
			ext := filepath.Ext(path)
			name = strings.TrimSuffix(path, ext) + "-" + sc.Report.Name + ext
		}
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		if err := replay.WritePcap(f, sc.Packets); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
