package fuzz

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/trace"
)

// traceName is the file name CheckTrace parses under.
const traceName = "fuzz.trace"

// CheckTrace parses text as a trace file.
//
// Oracles: Parse never panics; a failure is a *trace.SyntaxError naming
// the file it was given and a line in [1, lines+1]; a file that parses
// formats (Format(nil)) to text that parses again into the same directives
// (command, arguments, input and expected output). (Comments and blank
// lines are not compared: Format may add a blank line after a single-separator
// output, and normalises "\r" line ends one layer at a time.)
func CheckTrace(text string) error {
	f, err := trace.Parse(traceName, text)
	if err != nil {
		var se *trace.SyntaxError
		if !errors.As(err, &se) {
			return fmt.Errorf("error is not a *trace.SyntaxError: %T %v", err, err)
		}
		if lines := strings.Count(text, "\n") + 1; se.Line < 1 || se.Line > lines+1 {
			return fmt.Errorf("error at line %d of a text of %d lines: %v", se.Line, lines, err)
		}
		if se.File != traceName {
			return fmt.Errorf("error names file %q, not %q: %v", se.File, traceName, err)
		}
		return nil
	}
	out := f.Format(nil)
	g, err := trace.Parse(traceName, out)
	if err != nil {
		return fmt.Errorf("formatted file does not parse: %v\ninput:\n%q\nformatted:\n%q", err, text, out)
	}
	if len(g.Directives) != len(f.Directives) {
		return fmt.Errorf("%d directives became %d\ninput:\n%q\nformatted:\n%q", len(f.Directives), len(g.Directives), text, out)
	}
	for i, d := range f.Directives {
		e := g.Directives[i]
		if d.Cmd != e.Cmd || !reflect.DeepEqual(d.Args, e.Args) || !reflect.DeepEqual(d.Input, e.Input) || d.Want != e.Want {
			return fmt.Errorf("directive %d changed in a format round trip:\n was %q %q %q %q\n now %q %q %q %q\ninput:\n%q\nformatted:\n%q",
				i, d.Cmd, d.Args, d.Input, d.Want, e.Cmd, e.Args, e.Input, e.Want, text, out)
		}
	}
	return nil
}

// Limits of a fuzzed replay: short enough that an input costs
// milliseconds, long enough for a boot, a few cycles and timeouts.
var replayLimits = replay.Options{MaxVirtual: 5 * time.Minute, MaxWall: 5 * time.Second}

// dynamicErrors are the directive errors that validation cannot foresee:
// a wait that times out (and a cycles directive after a boot cycle that
// never came), and the limits, which depend on how the world behaves.
var dynamicErrors = []string{
	"error: cycle ",
	"error: cycles needs the boot cycle first",
	"error: virtual-time limit: ",
	"error: wall-time limit: ",
	"error: not run: ",
}

// CheckTraceReplay parses text as CheckTrace does and, when it also passes
// replay's validation, replays it.
//
// Oracle: a file that validates never fails while it runs for a reason
// validation could have seen: every "error:" line of its output is one of
// dynamicErrors.
func CheckTraceReplay(r lab.Runner, text string) error {
	if err := CheckTrace(text); err != nil {
		return err
	}
	f, err := replay.ParseWith(traceName, text, replayLimits)
	if err != nil {
		return nil
	}
	res := replay.RunFile(r, f, replayLimits)
	for i, out := range res.Outputs {
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "error: ") {
				continue
			}
			if !slices.ContainsFunc(dynamicErrors, func(p string) bool { return strings.HasPrefix(line, p) }) {
				return fmt.Errorf("%s: %s: validated, then failed at run time with %q\ninput:\n%q",
					f.Directives[i].Pos(), f.Directives[i].Cmd, line, text)
			}
		}
	}
	return nil
}
