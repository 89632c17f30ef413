package lab

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHostedOutsideGoTest builds testdata/hosted, a program that runs
// bubbles through Hosted as a libFuzzer binary does, and runs it: passing
// runs return the same result as Run under go test, the driver's flags
// and os.Args stay the program's, the framework's per-run lines are
// dropped, and a failing run streams its messages to stderr and panics,
// naming the run.
func TestHostedOutsideGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a program (-short)")
	}
	bin := filepath.Join(t.TempDir(), "hosted")
	build := exec.Command("go", "build", "-o", bin, "./testdata/hosted")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	want := Run(t, Config{}, func(l *Lab) {
		time.Sleep(1500 * time.Millisecond) // testdata/hosted's sleepAndLog
		l.Logf("hosted", "slept until %s", l.Now())
	})

	for _, parse := range []string{"0", "1"} {
		t.Run("HOSTED_PARSE_FLAGS="+parse, func(t *testing.T) {
			cmd := exec.Command(bin, "-max_total_time=1", "pass", "pass", "fail", "pass")
			cmd.Env = append(os.Environ(), "HOSTED_PARSE_FLAGS="+parse)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the failing run must end the program: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
			require.Equal(t, 2, exit.ExitCode(), "an unrecovered panic\nstderr:\n%s", &stderr)

			args := "args: -max_total_time=1 pass pass fail pass\n"
			require.Equal(t, "run 1 passed: end 1.5s, log "+want.Hash+"\n"+args+
				"run 2 passed: end 1.5s, log "+want.Hash+"\n"+args, stdout.String())

			e := stderr.String()
			msg := strings.Index(e, "deliberate failure at 0s")
			fail := strings.Index(e, "--- FAIL: hosted/run#02")
			crash := strings.Index(e, "panic: lab: hosted run hosted/run#02 failed (its messages are above)")
			require.True(t, msg >= 0 && fail > msg && crash > fail,
				"the failure's message, then the framework's FAIL line, then the panic:\n%s", e)
			require.Contains(t, e, "the event log's last lines")
			require.NotContains(t, e, "=== RUN")
			require.NotContains(t, e, "--- PASS")
			require.NotContains(t, e, "flag provided but not defined")
		})
	}
}

func TestHostedRefusesGoTest(t *testing.T) {
	require.PanicsWithValue(t, "lab.Hosted: this is a go test binary, where the testing framework already runs "+
		"and its flags choose the tests: pass the test's *testing.T to lab.T or lab.Run instead",
		func() { Hosted().Run(Config{}, func(*Lab) {}) })
}

func TestFrameworkLine(t *testing.T) {
	for _, c := range []struct {
		line string
		drop bool
	}{
		{"\x16=== RUN   hosted/run#01\n", true},
		{"\x16=== NAME  hosted/run#01\n", true},
		{"\x16=== CONT  hosted/run#01\n", true},
		{"\x16=== PAUSE hosted/run#01\n", true},
		{"\x16--- PASS: hosted/run#01 (0.00s)\n", true},
		{"\x16--- FAIL: hosted/run#02 (0.01s)\n", false},
		{"\x16--- SKIP: hosted/run#03 (0.00s)\n", false},
		{"=== RUN   a message of a run, not the framework's\n", false},
		{"--- PASS: likewise\n", false},
		{"    bubble.go:172: lab stopped: deadlock\n", false},
		{"\n", false},
	} {
		require.Equal(t, c.drop, frameworkLine(c.line), "%q", c.line)
	}
}

func TestForwardOutput(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	var got bytes.Buffer
	synced := make(chan struct{})
	done := make(chan struct{})
	go func() { forwardOutput(r, &got, synced); close(done) }()
	_, err = w.WriteString("\x16=== RUN   hosted/run\n    x.go:1: kept\n\x16--- PASS: hosted/run (0.00s)\n" + syncLine)
	require.NoError(t, err)
	<-synced
	require.Equal(t, "    x.go:1: kept\n", got.String())
	_, err = w.WriteString("\x16--- FAIL: hosted/run#01 (0.00s)\na partial line")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	<-done
	require.Equal(t, "    x.go:1: kept\n--- FAIL: hosted/run#01 (0.00s)\na partial line", got.String())
}
