package main

import (
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// templates are the files `vsocklab new` writes, one per kind of verdict.
// Each replays as written: TestTemplatesReplayAsWritten checks them.
//
//go:embed templates/*.trace
var templates embed.FS

var templateKinds = []string{"wedge", "resume", "stream"}

const newUsage = `usage: vsocklab new [--kind wedge|resume|stream] [--force] FILE

Writes a commented trace file that replays as it is: a starting point for a
scenario of your own. Edit its directives, empty the outputs under "----",
run "vsocklab replay --rewrite FILE" and read what it says.

  wedge   does the workload's stdout reach the host? (verdict wedge)
  resume  how long does hostd take after each resume? (verdict resume)
  stream  does a host-to-guest byte stream arrive whole? (verdict stream)

Exit status: 0 written; 2 bad flags, an unknown kind, a FILE that exists
(without --force) or cannot be written.

Flags:
`

func newMain(args []string) int {
	fls := flag.NewFlagSet("new", flag.ContinueOnError)
	kind := fls.String("kind", "wedge", "the kind of scenario: "+strings.Join(templateKinds, ", "))
	force := fls.Bool("force", false, "overwrite FILE if it exists")
	fls.Usage = func() {
		fmt.Fprint(fls.Output(), newUsage)
		fls.PrintDefaults()
	}
	if err := fls.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fls.NArg() != 1 {
		fls.Usage()
		return 2
	}
	text, err := fs.ReadFile(templates, "templates/"+*kind+".trace")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vsocklab new: --kind %q: expected one of %s\n", *kind, strings.Join(templateKinds, ", "))
		return 2
	}
	path := fls.Arg(0)
	mode := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		mode = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, mode, 0o644)
	if errors.Is(err, fs.ErrExist) {
		fmt.Fprintf(os.Stderr, "vsocklab new: %s exists (--force to overwrite it)\n", path)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab new:", err)
		return 2
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "vsocklab new:", err)
		return 2
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab new:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "wrote %s (a %s scenario): vsocklab replay %s\n", path, *kind, path)
	return 0
}
