package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vsocklabBinary builds the command once for every test of the package
// that runs it.
func vsocklabBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vsocklab-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vsocklab")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// runVsocklab runs the binary and returns its exit status and outputs.
func runVsocklab(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(vsocklabBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), errb.String()
	}
	require.NoError(t, err)
	return 0, out.String(), errb.String()
}

func writeTrace(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "t.trace")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

const oneWorld = "world name=w\n----\nworld w: device firecracker-1.14, guest linux-6.12.68, seed 1\n"

// TestReplayExitStatus pins every exit status `vsocklab replay --help`
// documents, and the summary table on standard error.
func TestReplayExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Run("0: replays as written, summary on stderr", func(t *testing.T) {
		code, out, errs := runVsocklab(t, "replay", "--check", writeTrace(t, oneWorld))
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "ok   ")
		require.Regexp(t, `(?m)^FILE\s+SCENARIO\s+DEVICE\s+KERNEL\s+VERDICT\s+KEY FIGURE$`, errs)
		require.Regexp(t, `(?m)^t\.trace\s+w\s+firecracker-1\.14\s+linux-6\.12\.68\s+-\s+-$`, errs)
	})
	t.Run("0: without --check, stdout is the trace text alone", func(t *testing.T) {
		code, out, errs := runVsocklab(t, "replay", writeTrace(t, oneWorld))
		require.Equal(t, 0, code, errs)
		require.Equal(t, oneWorld, out)
		require.Contains(t, errs, "KEY FIGURE")
	})
	t.Run("0: --summary=false leaves the table out", func(t *testing.T) {
		code, _, errs := runVsocklab(t, "replay", "--check", "--summary=false", writeTrace(t, oneWorld))
		require.Equal(t, 0, code, errs)
		require.NotContains(t, errs, "KEY FIGURE")
	})
	t.Run("0: --help", func(t *testing.T) {
		code, _, errs := runVsocklab(t, "replay", "--help")
		require.Equal(t, 0, code)
		require.Contains(t, errs, "Exit status:")
	})
	t.Run("1: a mismatch under --check", func(t *testing.T) {
		path := writeTrace(t, "world name=w\n----\nworld w: something else\n")
		code, _, errs := runVsocklab(t, "replay", "--check", path)
		require.Equal(t, 1, code, errs)
		require.Contains(t, errs, path+":1: world: output differs")
	})
	t.Run("1: a scenario stopped by a limit", func(t *testing.T) {
		code, out, errs := runVsocklab(t, "replay", "--max-wall", "1ns", writeTrace(t, oneWorld+"\nrun 1s\n----\n"))
		require.Equal(t, 1, code, errs)
		require.Contains(t, out, "error: not run: wall-time limit")
		require.Regexp(t, `(?m)^t\.trace\s+w\s+\S+\s+\S+\s+error\s+wall-time limit`, errs)
	})
	t.Run("2: a file that does not parse", func(t *testing.T) {
		path := writeTrace(t, oneWorld+"\nbogus\n----\n\nrun -1s\n----\n")
		code, out, errs := runVsocklab(t, "replay", "--check", path)
		require.Equal(t, 2, code)
		require.Empty(t, out, "nothing runs")
		require.Contains(t, errs, path+":5: unknown command \"bogus\"")
		require.Contains(t, errs, path+":8: run: expected a duration")
	})
	t.Run("2: a file that does not exist", func(t *testing.T) {
		code, _, _ := runVsocklab(t, "replay", filepath.Join(t.TempDir(), "missing.trace"))
		require.Equal(t, 2, code)
	})
	t.Run("2: bad flags", func(t *testing.T) {
		code, _, _ := runVsocklab(t, "replay", "--no-such-flag", writeTrace(t, oneWorld))
		require.Equal(t, 2, code)
		code, _, _ = runVsocklab(t, "replay")
		require.Equal(t, 2, code)
	})
}
