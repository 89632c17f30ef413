package fuzz

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

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
