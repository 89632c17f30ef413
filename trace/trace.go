// Package trace reads and writes the lab's trace files: a sequence of
// directives in the datadriven style (github.com/cockroachdb/datadriven),
// each a command line with arguments, optional input lines, a "----"
// separator and the exact output the command is expected to print.
//
//	# comments and blank lines between directives are kept
//	world name=wedge device=cloud-hypervisor-50 kernel=linux-6.12.68
//	----
//	world wedge: device cloud-hypervisor-50, guest linux-6.12.68, seed 1
//
//	init no-write-timeout
//	writer total=1MiB size=64KiB
//	----
//	...
//
// Output that contains blank lines is written between two "----" lines and
// closed by two more, as datadriven does. Parsing never panics: every
// problem is a *SyntaxError naming the file, the line and what was expected.
package trace

import (
	"fmt"
	"strings"
)

// Arg is one argument: "key", "key=value" or "key=(v1, v2)".
type Arg struct {
	Key  string
	Vals []string
}

func (a Arg) String() string {
	switch len(a.Vals) {
	case 0:
		return a.Key
	case 1:
		// A lone value that would not read back bare (empty, holding a
		// space, or opening with '(' as in "k=((x)") is written as a
		// one-element list, which reads back the same (found by
		// fuzz.FuzzTrace).
		if v := a.Vals[0]; v != "" && !strings.Contains(v, " ") && !strings.HasPrefix(v, "(") {
			return a.Key + "=" + v
		}
	}
	return a.Key + "=(" + strings.Join(a.Vals, ", ") + ")"
}

// Directive is one command of a trace.
type Directive struct {
	File    string
	Line    int    // line of the command
	Leading string // comments and blank lines before the command, verbatim
	Cmd     string
	Args    []Arg
	Input   []string // lines between the command and "----"
	Want    string   // expected output, each line ending in "\n"
}

// Pos renders "file:line".
func (d *Directive) Pos() string { return fmt.Sprintf("%s:%d", d.File, d.Line) }

// Arg returns the argument named key.
func (d *Directive) Arg(key string) (Arg, bool) {
	for _, a := range d.Args {
		if a.Key == key {
			return a, true
		}
	}
	return Arg{}, false
}

// Errorf makes an error located at the directive.
func (d *Directive) Errorf(format string, args ...any) error {
	return &SyntaxError{File: d.File, Line: d.Line, Msg: fmt.Sprintf(format, args...)}
}

// SyntaxError locates a problem in a trace file.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// File is a parsed trace file.
type File struct {
	Name       string
	Directives []*Directive
	Trailing   string // comments and blank lines after the last directive
}

// Parse reads a trace file.
func Parse(name, text string) (*File, error) { return ParseMax(name, text, 0) }

// ParseMax reads a trace file of at most max directives (0: any number). A
// longer file is an error at its first directive past max, found without
// building the directives after it.
func ParseMax(name, text string, max int) (*File, error) {
	p := &parser{name: name, lines: splitLines(text), max: max}
	return p.file()
}

type parser struct {
	name  string
	lines []string
	i     int // next line, 0-based
	max   int // directives allowed, 0: any
}

func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		// Every trailing '\r', not just one: a line ending in "\r\r"
		// would otherwise keep a '\r' that Format writes back as a CRLF
		// line end, which reads back without it (found by fuzz.FuzzTrace).
		lines[i] = strings.TrimRight(l, "\r")
	}
	return lines
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &SyntaxError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) file() (*File, error) {
	f := &File{Name: p.name}
	var leading strings.Builder
	for p.i < len(p.lines) {
		line := p.lines[p.i]
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			leading.WriteString(line)
			leading.WriteByte('\n')
			p.i++
			continue
		}
		if p.max > 0 && len(f.Directives) == p.max {
			return nil, p.errorf(p.i+1, "more than %d directives in one file", p.max)
		}
		d, err := p.directive()
		if err != nil {
			return nil, err
		}
		d.Leading = leading.String()
		leading.Reset()
		f.Directives = append(f.Directives, d)
	}
	f.Trailing = leading.String()
	return f, nil
}

func (p *parser) directive() (*Directive, error) {
	d := &Directive{File: p.name, Line: p.i + 1}
	cmd, args, err := parseCommand(p.lines[p.i])
	if err != nil {
		return nil, p.errorf(d.Line, "%v", err)
	}
	d.Cmd, d.Args = cmd, args
	p.i++
	for {
		if p.i >= len(p.lines) {
			return nil, p.errorf(d.Line, "command %q: expected a line \"----\" before the end of the file", d.Cmd)
		}
		line := p.lines[p.i]
		p.i++
		if line == "----" {
			break
		}
		if strings.TrimSpace(line) == "" {
			return nil, p.errorf(p.i, "command %q: expected input lines then \"----\", got a blank line", d.Cmd)
		}
		d.Input = append(d.Input, line)
	}
	// Double separator: output may hold blank lines and ends with "----"
	// twice.
	if p.i < len(p.lines) && p.lines[p.i] == "----" {
		p.i++
		var out strings.Builder
		for {
			if p.i+1 >= len(p.lines) {
				return nil, p.errorf(d.Line, "command %q: output opened with \"----\" twice must close with two \"----\" lines", d.Cmd)
			}
			if p.lines[p.i] == "----" && p.lines[p.i+1] == "----" {
				p.i += 2
				break
			}
			out.WriteString(p.lines[p.i])
			out.WriteByte('\n')
			p.i++
		}
		d.Want = out.String()
		return d, nil
	}
	var out strings.Builder
	for p.i < len(p.lines) && p.lines[p.i] != "" {
		out.WriteString(p.lines[p.i])
		out.WriteByte('\n')
		p.i++
	}
	d.Want = out.String()
	return d, nil
}

// parseCommand splits "cmd a b=c d=(e, f)".
func parseCommand(line string) (string, []Arg, error) {
	s := strings.TrimSpace(line)
	cmd, rest, _ := strings.Cut(s, " ")
	if !validWord(cmd) {
		return "", nil, fmt.Errorf("expected a command name (letters, digits, '-', '_', '.'), got %q", cmd)
	}
	var args []Arg
	rest = strings.TrimSpace(rest)
	for rest != "" {
		end := strings.IndexAny(rest, " =")
		if end < 0 {
			end = len(rest)
		}
		key := rest[:end]
		if !validWord(key) {
			return "", nil, fmt.Errorf("command %q: expected an argument name, got %q", cmd, key)
		}
		rest = rest[end:]
		a := Arg{Key: key}
		if strings.HasPrefix(rest, "=") {
			rest = rest[1:]
			if strings.HasPrefix(rest, "(") {
				closing := strings.IndexByte(rest, ')')
				if closing < 0 {
					return "", nil, fmt.Errorf("command %q: argument %q: expected ')' to close the list", cmd, key)
				}
				for _, v := range strings.Split(rest[1:closing], ",") {
					a.Vals = append(a.Vals, strings.TrimSpace(v))
				}
				rest = rest[closing+1:]
			} else {
				end := strings.IndexByte(rest, ' ')
				if end < 0 {
					end = len(rest)
				}
				if end == 0 {
					return "", nil, fmt.Errorf("command %q: argument %q: expected a value after '='", cmd, key)
				}
				a.Vals = []string{rest[:end]}
				rest = rest[end:]
			}
		}
		args = append(args, a)
		rest = strings.TrimLeft(rest, " ")
	}
	return cmd, args, nil
}

func validWord(w string) bool {
	if w == "" {
		return false
	}
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Format renders the file with each directive's output replaced by got[i]
// (or its Want when got is shorter), as -rewrite does. Parse(Format(nil))
// gives the same directives back.
func (f *File) Format(got []string) string {
	var b strings.Builder
	singleOpen := false // the last output ended without a closing line
	for i, d := range f.Directives {
		if singleOpen && !strings.HasPrefix(d.Leading, "\n") {
			b.WriteByte('\n')
		}
		b.WriteString(d.Leading)
		b.WriteString(d.Cmd)
		for _, a := range d.Args {
			b.WriteByte(' ')
			b.WriteString(a.String())
		}
		b.WriteByte('\n')
		for _, in := range d.Input {
			b.WriteString(in)
			b.WriteByte('\n')
		}
		out := d.Want
		if i < len(got) {
			out = got[i]
		}
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		if needsDouble(out) {
			b.WriteString("----\n----\n")
			b.WriteString(out)
			b.WriteString("----\n----\n")
			singleOpen = false
		} else {
			b.WriteString("----\n")
			b.WriteString(out)
			singleOpen = true
		}
	}
	if singleOpen && f.Trailing != "" && !strings.HasPrefix(f.Trailing, "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(f.Trailing)
	return b.String()
}

// needsDouble reports whether out cannot be written after a single
// separator: it holds a blank line, or its first line is "----" (which
// would read as the second separator). Other "----" lines are fine after a
// single separator, and must stay there: output that ends with a "----"
// line or holds two in a row cannot be written between double separators
// (found by fuzz.FuzzTrace).
func needsDouble(out string) bool {
	if strings.HasPrefix(out, "----\n") {
		return true
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" && out != "" {
			return true
		}
	}
	return false
}
