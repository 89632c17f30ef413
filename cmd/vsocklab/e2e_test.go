package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
)

// buildBinaries compiles vsocklab and hostd into dir.
func buildBinaries(t *testing.T, dir string) (vsocklab, hostd string) {
	t.Helper()
	vsocklab, hostd = filepath.Join(dir, "vsocklab"), filepath.Join(dir, "hostd")
	for bin, pkg := range map[string]string{vsocklab: ".", hostd: "../hostd"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	return vsocklab, hostd
}

// startServe runs `vsocklab serve` on uds until the test ends; its
// standard error is echoed and recorded.
func startServe(t *testing.T, bin, uds string, extra ...string) (*exec.Cmd, *lines) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--uds", uds}, extra...)...)
	pipe, err := cmd.StderrPipe()
	require.NoError(t, err)
	out := &lines{done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go out.read(pipe)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-out.done
		cmd.Wait()
	})
	require.Eventually(t, func() bool { _, err := os.Stat(uds); return err == nil }, 10*time.Second, 10*time.Millisecond)
	return cmd, out
}

// lines records a program's log, line by line: a serve process's
// standard error, or an in-process server's logf.
type lines struct {
	t     *testing.T // when set, each line is also logged to the test
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when read has reached the end of its reader
}

func (s *lines) add(line string) {
	if s.t != nil {
		s.t.Log(line)
	}
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
}

func (s *lines) logf(format string, args ...any) { s.add(fmt.Sprintf(format, args...)) }

// read records r's lines, echoing them to standard error.
func (s *lines) read(r io.Reader) {
	defer close(s.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(os.Stderr, sc.Text())
		s.add(sc.Text())
	}
}

// with returns the lines so far that contain sub.
func (s *lines) with(sub string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// wait waits for a line containing sub.
func (s *lines) wait(t *testing.T, sub string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.with(sub)) > 0 }, 20*time.Second, 5*time.Millisecond, "no line with %q", sub)
}

// socatConnect sends line through socat and returns what came back.
func socatConnect(t *testing.T, socat, uds, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, socat, "-t", "1", "-", "UNIX-CONNECT:"+uds)
	cmd.Stdin = strings.NewReader(line)
	out, err := cmd.Output()
	require.NoError(t, err)
	return string(out)
}

// TestServeEndToEnd runs the real binaries against `vsocklab serve` over a
// real Unix socket: socat speaks the hybrid vsock protocol by hand, then the
// hostd binary runs its status check and collects the guest's log stream.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	dir := t.TempDir()
	vsocklab, hostd := buildBinaries(t, dir)

	t.Run("socat CONNECT and OK", func(t *testing.T) {
		socat, err := exec.LookPath("socat")
		if err != nil {
			t.Skip("socat not installed (apt-get install socat)")
		}
		uds := filepath.Join(dir, "a.sock")
		cmd, out := startServe(t, vsocklab, uds, "--workload", "idle")
		// Init's API listener comes up a moment after the socket: until
		// then the guest resets the connection. Each attempt takes a port
		// from Firecracker's allocator, which starts at 2^30 (docs/sources.md#fc-port-allocation).
		attempts := 0
		var port int
		require.Eventually(t, func() bool {
			attempts++
			_, err := fmt.Sscanf(socatConnect(t, socat, uds, "CONNECT 10000\n"), "OK %d\n", &port)
			return err == nil
		}, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, 1<<30+attempts-1, port)
		// A malformed line closes the connection without a word...
		require.Equal(t, "", socatConnect(t, socat, uds, "HELLO 10000\n"))
		require.Equal(t, "", socatConnect(t, socat, uds, "CONNECT ten\n"))
		// ...and the server goes on serving.
		require.Equal(t, fmt.Sprintf("OK %d\n", port+1), socatConnect(t, socat, uds, "connect 10000\n"))

		// One line per client, with the real socket path; a summary on exit.
		out.wait(t, fmt.Sprintf(`host client on %s: "connect 10000": OK %d`, uds, port+1))
		require.Len(t, out.with("host client on "+uds+": "), attempts+3)
		require.Len(t, out.with(`"HELLO 10000": closed by the device without an answer`), 1)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		<-out.done
		require.Len(t, out.with(fmt.Sprintf("summary: host clients %d (2 answered, %d closed unanswered by the device, 0 dropped before it); guest connects 0", attempts+3, attempts+1)), 1)
		require.Empty(t, out.with("/run/vsocklab"), "no internal path in any message")
	})

	t.Run("guest connect with nobody listening", func(t *testing.T) {
		// No hostd: init's log connection to host port 10001 is refused.
		uds := filepath.Join(dir, "r.sock")
		_, out := startServe(t, vsocklab, uds)
		out.wait(t, "guest connect to "+uds+"_10001: refused, the device answers RST")
	})

	t.Run("hostd binary against serve", func(t *testing.T) {
		uds := filepath.Join(dir, "b.sock")
		logs := filepath.Join(dir, "logs")
		require.NoError(t, os.MkdirAll(logs, 0o755))
		// hostd first, so its log collector listens on <uds>_10001 before
		// init's first log connection is forwarded there.
		h := exec.Command(hostd, "--uds", uds, "--log-dir", logs)
		stdout, err := h.StdoutPipe()
		require.NoError(t, err)
		h.Stderr = os.Stderr
		require.NoError(t, h.Start())
		defer func() {
			h.Process.Signal(syscall.SIGTERM)
			h.Wait()
		}()
		require.Eventually(t, func() bool { _, err := os.Stat(uds + "_10001"); return err == nil }, 10*time.Second, 10*time.Millisecond)
		_, _ = startServe(t, vsocklab, uds, "--workload", "writer total=64KiB size=4KiB every=5ms")

		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		var cycle struct {
			Cycle   int  `json:"cycle"`
			Started bool `json:"started"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &cycle), line)
		require.Equal(t, 0, cycle.Cycle)
		require.True(t, cycle.Started, line)

		var got []byte
		require.Eventually(t, func() bool {
			got, _ = os.ReadFile(filepath.Join(logs, "stdout.log"))
			return len(got) >= 64*1024
		}, 20*time.Second, 20*time.Millisecond)
		require.Len(t, got, 64*1024)
		require.Equal(t, int64(-1), labenv.CheckPattern(got), "every byte of the workload, in order")
	})
	// The slow-resume incident (seed 003, testdata/incidents/slow-resume.trace)
	// with the real hostd: serve is suspended and resumed by signal, hostd
	// told of each resume by its own SIGUSR1. With fixed-start ports
	// (firecracker-1.14), an init that keeps reset sessions and hostd's
	// session first, cycle n's session fails n times, as in the trace.
	t.Run("hostd through suspend and resume", func(t *testing.T) {
		uds := filepath.Join(dir, "c.sock")
		logs := filepath.Join(dir, "logs-c")
		require.NoError(t, os.MkdirAll(logs, 0o755))
		h := exec.Command(hostd, "--uds", uds, "--log-dir", logs, "--session-first")
		stdout, err := h.StdoutPipe()
		require.NoError(t, err)
		h.Stderr = os.Stderr
		require.NoError(t, h.Start())
		defer func() {
			h.Process.Signal(syscall.SIGTERM)
			h.Wait()
		}()
		require.Eventually(t, func() bool { _, err := os.Stat(uds + "_10001"); return err == nil }, 10*time.Second, 10*time.Millisecond)
		serve, out := startServe(t, vsocklab, uds, "--workload", "idle", "--keep-reset-sessions", "--device", "firecracker-1.14")

		dec := json.NewDecoder(stdout)
		var cycle struct {
			Cycle          int      `json:"cycle"`
			Started        bool     `json:"started"`
			FailedAttempts []string `json:"failed_attempts"`
		}
		require.NoError(t, dec.Decode(&cycle))
		require.True(t, cycle.Started)
		for n := 1; n <= 3; n++ {
			require.NoError(t, serve.Process.Signal(syscall.SIGUSR1))
			require.Eventually(t, func() bool { return len(out.with("suspended (snapshot)")) == n }, 20*time.Second, 5*time.Millisecond)
			require.NoError(t, serve.Process.Signal(syscall.SIGUSR2))
			out.wait(t, fmt.Sprintf("resumed (restore, cycle %d)", n))
			require.NoError(t, h.Process.Signal(syscall.SIGUSR1))
			require.NoError(t, dec.Decode(&cycle))
			require.Equal(t, n, cycle.Cycle)
			require.True(t, cycle.Started)
			require.Len(t, cycle.FailedAttempts, n, "%q", cycle.FailedAttempts)
			for _, a := range cycle.FailedAttempts {
				require.True(t, strings.HasPrefix(a, "session "), a)
			}
		}
		require.NoError(t, serve.Process.Signal(syscall.SIGTERM))
		<-out.done
		require.Len(t, out.with("suspend/resume cycles 3"), 1)
	})
}

// TestServeFlags: --help describes the signals and exits 0; the old bare
// --log and the deprecated --forward say what to do instead.
func TestServeFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	dir := t.TempDir()
	vsocklab, _ := buildBinaries(t, dir)
	run := func(args ...string) (int, string) {
		cmd := exec.Command(vsocklab, append([]string{"serve"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	code, out := run("--help")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "SIGUSR1       suspend the VM as a snapshot does")
	require.Contains(t, out, "-log string")

	code, out = run("--log", "--uds", filepath.Join(dir, "x.sock"))
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "the old bare --log is --log all")
	code, out = run("--uds", filepath.Join(dir, "x.sock"), "--log", "packets")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, `unknown log kind "packets"`)

	uds := filepath.Join(dir, "f.sock")
	cmd, log := startServe(t, vsocklab, uds, "--workload", "idle", "--forward", "10001,10002", "--log", "world")
	log.wait(t, "--forward 10001,10002 is no longer needed and is ignored")
	require.NoError(t, cmd.Process.Signal(syscall.SIGUSR1))
	log.wait(t, "world   suspend (cycle 1)") // the world record --log world adds
}
