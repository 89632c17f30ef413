package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// startServe runs `vsocklab serve` on uds until the test ends.
func startServe(t *testing.T, bin, uds string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--uds", uds}, extra...)...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	require.Eventually(t, func() bool { _, err := os.Stat(uds); return err == nil }, 10*time.Second, 10*time.Millisecond)
	return cmd
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
		startServe(t, vsocklab, uds, "--workload", "idle")
		// Firecracker's first host-side port is 2^30 (docs/sources.md#fc-port-allocation).
		require.Equal(t, "OK 1073741824\n", socatConnect(t, socat, uds, "CONNECT 10000\n"))
		// A malformed line closes the connection without a word...
		require.Equal(t, "", socatConnect(t, socat, uds, "HELLO 10000\n"))
		require.Equal(t, "", socatConnect(t, socat, uds, "CONNECT ten\n"))
		// ...and the server goes on serving.
		require.Equal(t, "OK 1073741825\n", socatConnect(t, socat, uds, "connect 10000\n"))
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
		startServe(t, vsocklab, uds, "--workload", "writer total=64KiB size=4KiB every=5ms")

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
}
