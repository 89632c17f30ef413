package realkernel_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/realkernel"
	"github.com/vsocklab/vsocklab/vsockport"
)

// shortDir is a temporary directory with a short path: Unix socket paths
// must fit in 108 bytes, and t.TempDir's names grow with the test's.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rk-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startBackend starts `vsocklab vhost-user` for the test and stops it at
// its end.
func (e *env) startBackend(t testing.TB, ctx context.Context, cfg realkernel.BackendConfig) *realkernel.Backend {
	t.Helper()
	cfg.Binary = filepath.Join(e.bin, "vsocklab")
	if testing.Verbose() {
		cfg.Echo = echo{t}
	}
	b, err := realkernel.StartBackend(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// logPort is where guestinit streams stdout and stderr, and where hostd's
// collector listens as <uds>_<port>.
var logPort = strconv.Itoa(vsockport.Log)

// stall is how long the workload may make no progress before the run
// counts it blocked. Under TCG a healthy 64 KiB write takes well under a
// second; init's write timeout in these runs is one second.
const stall = 12 * time.Second

// runStdout is seed 000 with a real kernel: the real guestinit pumps the
// workload's stdout (1 MiB in 64 KiB writes) to the host's log collector
// (hostd's Collector on <uds>_10001) through the backend's device profile.
func runStdout(t *testing.T, e *env, series, device string, writeTimeout time.Duration) realkernel.StdoutRun {
	k := e.kernel(t, series)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := shortDir(t)
	uds := filepath.Join(dir, "v.sock")

	ln, err := net.Listen("unix", uds+"_"+logPort)
	require.NoError(t, err)
	col := &hostd.Collector{Keep: -1}
	colDone := make(chan struct{})
	go func() { defer close(colDone); col.Serve(ctx, ln) }()
	defer func() { cancel(); <-colDone }()

	be := e.startBackend(t, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: device, Log: "packet,fault"})
	run := []string{"/bin/guestinit"}
	if writeTimeout == 0 {
		run = append(run, "--no-write-timeout")
	} else {
		run = append(run, "--write-timeout", writeTimeout.String())
	}
	const total = 1 << 20
	run = append(run, "--", "/bin/kinit", "write", "--total", "1048576", "--size", "65536")
	vm := boot(t, ctx, realkernel.VMConfig{Kernel: k, Initramfs: e.initramfs(t, k, true, run...), VhostSocket: filepath.Join(dir, "vhost.sock")})
	_, err = vm.Expect(ctx, "kinit: started /bin/guestinit")
	require.NoError(t, err)

	r := realkernel.StdoutRun{Total: total, WriteTimeout: writeTimeout}
	lastProgress, lastAt := time.Now(), time.Duration(0)
	seen := 0
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
watch:
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("run did not settle: %v", ctx.Err())
		case <-vm.Done():
			t.Fatalf("QEMU exited during the run")
		case <-tick.C:
		}
		lines := vm.Lines()
		for _, ln := range lines[seen:] {
			if w, _, at, ok := realkernel.WriteProgress(ln.Text); ok {
				r.Written = w
				r.LongestWrite = max(r.LongestWrite, at-lastAt)
				lastAt, lastProgress = at, time.Now()
			}
			if strings.Contains(ln.Text, "init: WARNING") {
				r.Warnings++
			}
		}
		seen = len(lines)
		s, _ := col.Stream("stdout")
		r.Delivered = s.Bytes
		quiet := time.Since(lastProgress)
		switch {
		case r.Written == total && r.Delivered == total:
			break watch
		case r.Written == total && r.Warnings > 0 && quiet > 2*time.Second:
			break watch // degraded: let the last drops be reported first
		case quiet > stall:
			r.Blocked = r.Written < total
			break watch
		}
	}
	s, _ := col.Stream("stdout")
	r.InOrder = pattern.Mismatch(s.Data, 0) < 0
	require.NoError(t, vm.Send("poweroff"))
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil {
		t.Logf("QEMU did not power off cleanly (%v); killed", err)
	}
	vm.Close()
	require.NoError(t, be.Close(), "the backend should exit cleanly on SIGTERM")
	r.DroppedChains = be.Count("dropped TX chain")
	return r
}

// TestSeed000 replays seed 000's stdout wedge with real kernels: the same
// verdicts as testdata/incidents/stdout-wedge.trace gives the model.
func TestSeed000(t *testing.T) {
	e := needEnv(t)
	for _, tc := range []struct {
		name, series, device string
		writeTimeout         time.Duration
		want                 string
	}{
		{"6.12/cloud-hypervisor-50", "6.12", "cloud-hypervisor-50", 0, "wedged"},
		{"6.12/cloud-hypervisor-51", "6.12", "cloud-hypervisor-51", 0, "ok"},
		{"6.1/cloud-hypervisor-50", "6.1", "cloud-hypervisor-50", 0, "ok"},
		{"6.12/cloud-hypervisor-50/write-timeout", "6.12", "cloud-hypervisor-50", time.Second, "degraded"},
		// The same wedge on vhost-device-vsock, whose TX parse also wants one
		// data descriptor (testdata/incidents/vd-nonlinear-tx.trace), and
		// 6.1, which never sends page fragments.
		{"6.12/vhost-device-vsock", "6.12", "vhost-device-vsock", 0, "wedged"},
		{"6.1/vhost-device-vsock", "6.1", "vhost-device-vsock", 0, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runStdout(t, e, tc.series, tc.device, tc.writeTimeout)
			v, why := r.Verdict()
			t.Logf("verdict: %s (%s)", v, why)
			require.Equal(t, tc.want, v, why)
			switch v {
			case "wedged":
				require.Positive(t, r.DroppedChains, "the device log should show the dropped TX chains")
			case "degraded":
				require.Less(t, r.Delivered, r.Written, "init dropped what the device could not take")
			}
		})
	}
}

// dwell is how long a session runs before each reset.
const dwell = 500 * time.Millisecond

// backoffInitial is hostd's first retry wait here (`hostd --backoff-initial`;
// its default and the incident trace's is 50 ms). Under TCG on a loaded
// machine one attempt can take half a second longer than the next, which
// can hide a 100 ms step of growth; from 250 ms the steps are 500 ms,
// 1 s, 2 s, 4 s. The mechanism does not depend on it: cycle n meets n
// leaked sockets either way.
const backoffInitial = 250 * time.Millisecond

// runResume is seed 003's guest half with a real kernel: the real hostd
// (session first) against the real guestinit, with a reset of the guest's
// vsock device between cycles (kinit's "reset": unbind and bind, which
// resets every connected socket and restarts the rings, and the backend
// rebuilds its muxer with the profile's port policy, as a restore does).
func runResume(t *testing.T, e *env, series, device string, keep bool, cycles int) []hostd.Cycle {
	k := e.kernel(t, series)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := shortDir(t)
	uds := filepath.Join(dir, "v.sock")
	be := e.startBackend(t, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: device, Log: "packet,fault"})
	run := []string{"/bin/guestinit"}
	if keep {
		run = append(run, "--keep-reset-sessions")
	}
	run = append(run, "--", "/bin/kinit", "idle")
	vm := boot(t, ctx, realkernel.VMConfig{Kernel: k, Initramfs: e.initramfs(t, k, true, run...), VhostSocket: filepath.Join(dir, "vhost.sock")})
	_, err := vm.Expect(ctx, "init: workload started")
	require.NoError(t, err)

	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", uds)
	}
	listen := func() (net.Listener, error) { return net.Listen("unix", uds+"_"+logPort) }
	d := hostd.New(hostd.Options{SessionFirst: true, Backoff: hostd.Backoff{Initial: backoffInitial}}, dial, listen, func(f string, a ...any) { t.Logf(f, a...) })
	hctx, hcancel := context.WithCancel(ctx)
	hdone := make(chan struct{})
	go func() { defer close(hdone); d.Run(hctx) }()
	defer func() { hcancel(); <-hdone }()

	c, err := d.WaitCycle(ctx, 0)
	require.NoError(t, err)
	require.True(t, c.Started, "boot cycle: %s", c.Err)
	out := []hostd.Cycle{c}
	for n := 1; n <= cycles; n++ {
		// Let the session run a little before the reset, as a VM does
		// between resumes (replay's cycles dwell).
		time.Sleep(dwell)
		require.NoError(t, vm.Send("reset"))
		_, err := vm.Expect(ctx, "kinit: reset done")
		require.NoError(t, err)
		d.Resumed()
		c, err := d.WaitCycle(ctx, n)
		require.NoError(t, err)
		require.True(t, c.Started, "cycle %d: %s", n, c.Err)
		t.Logf("cycle %d: started after %s; session failed %d times", n, c.TimeToStarted.Round(time.Millisecond), c.Failures("session"))
		out = append(out, c)
	}
	hcancel()
	<-hdone
	require.NoError(t, vm.Send("poweroff"))
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil {
		t.Logf("QEMU did not power off cleanly (%v); killed", err)
	}
	vm.Close()
	require.NoError(t, be.Close(), "the backend should exit cleanly on SIGTERM")
	// The historical init says when it keeps a reset session's socket.
	// The count is not asserted to be one per cycle: once in about ten
	// runs one reset leaves no such line although the socket leaked (the
	// next cycle meets it), so the session failures are the measure.
	kept := vm.Count("kept open after a transport reset")
	t.Logf("init kept %d reset session sockets (by its log)", kept)
	if keep {
		require.Positive(t, kept)
	} else {
		require.Zero(t, kept)
	}
	return out
}

// TestSeed003 replays seed 003's guest half with real kernels: with
// fixed-start ports and the leaking init, the guest answers hostd's
// colliding session attempts with RST and time-to-started grows with each
// reset; with persisted ports, or with the init that closes reset sockets,
// it stays bounded.
func TestSeed003(t *testing.T) {
	e := needEnv(t)
	const cycles = 5
	for _, tc := range []struct {
		name, series, device string
		keep                 bool
		want                 string
	}{
		{"6.12/fixed/leak", "6.12", "firecracker-1.14", true, "grows"},
		{"6.12/persisted/leak", "6.12", "firecracker-1.15", true, "bounded"},
		{"6.12/fixed/close", "6.12", "firecracker-1.14", false, "bounded"},
		{"6.1/fixed/leak", "6.1", "firecracker-1.14", true, "grows"},
		{"6.1/persisted/leak", "6.1", "firecracker-1.15", true, "bounded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := runResume(t, e, tc.series, tc.device, tc.keep, cycles)
			var tts []time.Duration
			for _, c := range cs[1:] {
				tts = append(tts, c.TimeToStarted)
			}
			v, why := realkernel.ResumeVerdict(tts, time.Second)
			t.Logf("verdict: %s (%s)", v, why)
			require.Equal(t, tc.want, v, why)
			for _, c := range cs[1:] {
				if tc.want == "grows" {
					// Each leaked socket holds one port from 2^30: cycle n
					// meets n of them, each answered with RST.
					require.Equal(t, c.N, c.Failures("session"), "cycle %d", c.N)
				} else {
					require.Zero(t, c.Failures("session"), "cycle %d", c.N)
				}
			}
		})
	}
}
