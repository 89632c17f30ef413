package lab

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Hosted returns the Runner of a process that is neither a test nor able
// to give its main goroutine to Main: a libFuzzer binary, whose C driver
// calls into Go once per input and owns the process. Bubbles need a
// *testing.T from the testing framework, so the first Run starts the
// framework (testing.Main) on a goroutine of its own, with one test that
// serves runs for the rest of the process; each Run becomes a subtest of
// it, with the real T, and runs exactly as Run does under go test.
//
// What Run leaves to its caller:
//
//   - A failed run makes Run panic, naming the run; its messages (the
//     bubble's t.Errorf lines and the event log's tail) are on stderr
//     just before. Under libFuzzer that panic is the crash: it happens on
//     the caller's goroutine, and the Go runtime of a c-archive aborts
//     the process with SIGABRT, so the driver saves the input. (The
//     framework itself would os.Exit, which no atexit handler survives.)
//   - Runs are serialised, as bubbles are anyway (one at a time).
//   - Output: the framework runs verbose, so a run's messages stream to
//     stderr as they are written; its own per-run lines (=== RUN,
//     --- PASS) are dropped.
//   - While the first Run starts the framework, os.Args, os.Stdout and
//     os.Stderr are the framework's (it parses flags, and captures stdout
//     for its output); they are restored before that Run's scenario
//     starts. The
//     framework's test.* flags are set on flag.CommandLine, so a program
//     that parsed its own flags already still gets a serving test.
//   - Memory per run is constant: the runs are subtests of one name, which
//     the framework numbers (hosted/run, hosted/run#01, ...) with a single
//     counter, and no output is kept for the serving test (hostedFlags).
//
// In a go test binary Run panics: the framework is already running there,
// and its flags say which tests run; a test passes its T to T or Run.
func Hosted() Runner { return hostedRunner{} }

type hostedRunner struct{}

func (hostedRunner) Run(cfg Config, scenario func(l *Lab)) *Result {
	h, err := theHost()
	if err != nil {
		panic(err.Error())
	}
	return h.run(cfg, scenario)
}

// theHost starts the serving test once per process.
var theHost = sync.OnceValues(startHost)

// host is the serving test's end of the runs.
type host struct {
	runs   chan hostedRun
	out    *os.File      // the framework's output: a pipe to forwardOutput
	synced chan struct{} // forwardOutput read a syncLine
}

type hostedRun struct {
	cfg      Config
	scenario func(l *Lab)
	done     chan hostedEnd
}

type hostedEnd struct {
	name   string // the subtest's name
	passed bool
	res    *Result
}

// hostedTest is the serving test's name; its runs are hostedTest/run#NN.
const hostedTest = "hosted"

// hostedFlags are the framework's flags for the serving test: only it
// runs, with no timeout (a campaign runs for hours) and none of the
// options that would reorder, repeat or skip it. Verbose, so that a run's
// messages stream; in test2json mode, because in plain verbose mode a
// subtest's "--- PASS" line goes to its parent's output buffer, printed
// when the parent ends: the serving test never ends, so the buffer would
// grow by a line per run. test2json mode streams those lines too, and
// marks the framework's own lines (framing), which forwardOutput drops.
var hostedFlags = [][2]string{
	{"test.run", "^" + hostedTest + "$"},
	{"test.skip", ""},
	{"test.list", ""},
	{"test.v", "test2json"},
	{"test.timeout", "0"},
	{"test.count", "1"},
	{"test.cpu", ""},
	{"test.shuffle", "off"},
	{"test.failfast", "false"},
	{"test.fuzz", ""},
	{"test.bench", ""},
}

func startHost() (*host, error) {
	if testing.Testing() {
		return nil, errors.New("lab.Hosted: this is a go test binary, where the testing framework already runs " +
			"and its flags choose the tests: pass the test's *testing.T to lab.T or lab.Run instead")
	}
	testing.Init()
	for _, f := range hostedFlags {
		if err := flag.Set(f[0], f[1]); err != nil {
			return nil, fmt.Errorf("lab.Hosted: setting the testing flag -%s=%q: %v", f[0], f[1], err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lab.Hosted: a pipe for the testing framework's output: %v", err)
	}
	h := &host{runs: make(chan hostedRun), out: w, synced: make(chan struct{})}
	go forwardOutput(r, os.Stderr, h.synced)

	stdout, stderr, args := os.Stdout, os.Stderr, os.Args
	// The framework writes to the os.Stdout it finds when it starts (and,
	// in test2json mode, points os.Stderr at it), and parses os.Args (the
	// driver's own flags) unless flags were parsed.
	os.Stdout = w
	os.Args = []string{"lab-hosted"}
	if len(args) > 0 {
		os.Args[0] = args[0]
	}
	serving := make(chan struct{})
	go testing.Main(func(pat, str string) (bool, error) { return regexp.MatchString(pat, str) },
		[]testing.InternalTest{{Name: hostedTest, F: func(t *testing.T) {
			os.Stdout, os.Stderr, os.Args = stdout, stderr, args
			close(serving)
			h.serve(t)
		}}}, nil, nil)
	<-serving
	return h, nil
}

// serve runs each run in a subtest of t, forever: the process ends with
// the driver, never with the framework.
func (h *host) serve(t *testing.T) {
	for r := range h.runs {
		end := hostedEnd{}
		end.passed = t.Run("run", func(t *testing.T) {
			end.name = t.Name()
			end.res = Test(t, r.cfg, func(_ *testing.T, l *Lab) { r.scenario(l) })
		})
		// Everything the run wrote is on stderr before Run returns (or
		// panics, and the process dies).
		h.sync()
		r.done <- end
	}
}

func (h *host) run(cfg Config, scenario func(l *Lab)) *Result {
	done := make(chan hostedEnd, 1)
	h.runs <- hostedRun{cfg: cfg, scenario: scenario, done: done}
	end := <-done
	if !end.passed {
		panic(fmt.Sprintf("lab: hosted run %s failed (its messages are above)", end.name))
	}
	return end.res
}

// syncLine, written to the framework's output pipe, tells forwardOutput to
// report that it has forwarded everything written before it.
const syncLine = "\x00lab.Hosted sync\n"

func (h *host) sync() {
	if _, err := io.WriteString(h.out, syncLine); err != nil {
		return // the forwarder is gone: nothing to wait for
	}
	<-h.synced
}

// forwardOutput copies the framework's output to w line by line, without
// the framework's per-run lines (frameworkLine) and its framing marks, and
// answers syncLines.
func forwardOutput(r io.Reader, w io.Writer, synced chan<- struct{}) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		switch {
		case line == syncLine:
			synced <- struct{}{}
		case frameworkLine(line):
		default:
			io.WriteString(w, strings.TrimPrefix(line, framing))
		}
		if err != nil {
			return
		}
	}
}

// framing is the mark (^V) the framework puts before its own lines in
// test2json mode, and only before them (Go's src/testing/testing.go,
// marker): a run's messages never carry it.
const framing = "\x16"

// frameworkLine reports whether line is one the framework prints for
// every run: the start of a test, the name of the test whose output
// follows, and a pass. A failure's and a skip's lines stay.
func frameworkLine(line string) bool {
	line, ok := strings.CutPrefix(line, framing)
	if !ok {
		return false
	}
	for _, p := range []string{"=== RUN ", "=== NAME ", "=== CONT ", "=== PAUSE ", "--- PASS: "} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}
