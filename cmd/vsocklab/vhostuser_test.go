package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startVhostUser runs `vsocklab vhost-user` and waits for its readiness
// line; the socket exists from then on, as QEMU needs.
func startVhostUser(t *testing.T, bin, dir string) (*exec.Cmd, *bufio.Reader, string) {
	t.Helper()
	sock := filepath.Join(dir, "vhost.sock")
	cmd := exec.Command(bin, "vhost-user", "--socket", sock, "--uds", filepath.Join(dir, "v.sock"), "--device", "cloud-hypervisor-50")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	r := bufio.NewReader(stderr)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if line == "vhost-user: listening on "+sock+"\n" {
			return cmd, r, sock
		}
	}
}

func vhostFrame(req uint32, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, req)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// TestVhostUserCommand checks the command's contract with a front-end that
// only negotiates: ready line, exit 0 with a summary when the front-end
// disconnects, exit 1 naming the request on a message it refuses, exit 0
// on SIGTERM.
func TestVhostUserCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	dir := t.TempDir()
	bin, _ := buildBinaries(t, dir)

	wait := func(cmd *exec.Cmd, r *bufio.Reader) (int, string) {
		rest, _ := io.ReadAll(r)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("vsocklab vhost-user did not exit")
		}
		return cmd.ProcessState.ExitCode(), string(rest)
	}

	t.Run("front-end disconnects", func(t *testing.T) {
		cmd, r, sock := startVhostUser(t, bin, t.TempDir())
		c, err := net.Dial("unix", sock)
		require.NoError(t, err)
		_, err = c.Write(vhostFrame(1, nil)) // GET_FEATURES
		require.NoError(t, err)
		reply := make([]byte, 20)
		_, err = io.ReadFull(c, reply)
		require.NoError(t, err)
		require.Equal(t, uint64(1<<32|1<<30), binary.LittleEndian.Uint64(reply[12:]))
		c.Close()
		code, out := wait(cmd, r)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "vhost-user: front-end disconnected: 0 packets from the guest")
	})

	t.Run("refused message", func(t *testing.T) {
		cmd, r, sock := startVhostUser(t, bin, t.TempDir())
		c, err := net.Dial("unix", sock)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write(vhostFrame(25, make([]byte, 12))) // SET_CONFIG
		require.NoError(t, err)
		code, out := wait(cmd, r)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "vsocklab vhost-user: vhost-user SET_CONFIG: not supported by this back-end")
		n, _ := c.Read(make([]byte, 1))
		require.Zero(t, n, "the connection is closed")
	})

	t.Run("signal", func(t *testing.T) {
		cmd, r, _ := startVhostUser(t, bin, t.TempDir())
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		code, out := wait(cmd, r)
		require.Equal(t, 0, code, out)
		require.True(t, strings.Contains(out, "vhost-user: stopped by signal"), out)
	})

	t.Run("bad flags", func(t *testing.T) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "vhost-user", "--socket", filepath.Join(dir, "x.sock"))
		cmd.Stderr = &stderr
		err := cmd.Run()
		require.Error(t, err)
		require.Contains(t, stderr.String(), "--socket and --uds are required")
		cmd = exec.Command(bin, "vhost-user", "--socket", filepath.Join(dir, "x.sock"), "--uds", filepath.Join(dir, "y.sock"), "--device", "nope")
		stderr.Reset()
		cmd.Stderr = &stderr
		require.Error(t, cmd.Run())
		require.Contains(t, stderr.String(), "nope")
		cmd = exec.Command(bin, "vhost-user", "--socket", filepath.Join(dir, "x.sock"), "--uds", filepath.Join(dir, "y.sock"), "--buf-alloc", "100")
		stderr.Reset()
		cmd.Stderr = &stderr
		require.Error(t, cmd.Run())
		require.Contains(t, stderr.String(), "--buf-alloc 100: must be 0 or 4096 to 1073741824")
	})
}
