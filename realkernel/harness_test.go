package realkernel_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/realkernel"
)

// gate is the environment variable that turns the real-kernel tests on.
const gate = "VSOCKLAB_REALKERNEL"

// env is what every real-kernel test needs: the cached kernels and the
// static binaries, built once per test binary.
type env struct {
	root    string // the clone
	kernels []realkernel.Kernel
	bin     string // directory of the built binaries
}

var (
	envOnce sync.Once
	envVal  *env
	envSkip string
	envErr  error
)

// needEnv skips the test, naming what is missing, unless the gate is set
// and qemu and the kernels are there.
func needEnv(t testing.TB) *env {
	t.Helper()
	if os.Getenv(gate) != "1" {
		t.Skipf("real-kernel tests are off: set %s=1 (they boot Linux under QEMU TCG for minutes; scripts/realkernel-install.sh installs what they need)", gate)
	}
	envOnce.Do(func() { envVal, envSkip, envErr = setup() })
	if envSkip != "" {
		t.Skip(envSkip)
	}
	require.NoError(t, envErr)
	return envVal
}

func setup() (*env, string, error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, realkernel.ErrNoQEMU.Error(), nil
	}
	cache, err := realkernel.CacheDir(".")
	if err != nil {
		return nil, "", err
	}
	ks, err := realkernel.FindKernels(cache)
	if err != nil || len(ks) == 0 {
		return nil, fmt.Sprintf("no kernels cached in %s (%v): run scripts/realkernel-install.sh", cache, err), nil
	}
	e := &env{root: filepath.Dir(cache), kernels: ks}
	e.bin, err = os.MkdirTemp("", "realkernel-bin-")
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, b := range []struct{ pkg, out string }{
		{"./realkernel/kinit", "kinit"},
		{"./cmd/guestinit", "guestinit"},
		{"./cmd/vsocklab", "vsocklab"},
	} {
		if err := realkernel.BuildStatic(ctx, e.root, b.pkg, filepath.Join(e.bin, b.out)); err != nil {
			return nil, "", err
		}
	}
	return e, "", nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if envVal != nil {
		os.RemoveAll(envVal.bin)
	}
	os.Exit(code)
}

func (e *env) kernel(t testing.TB, series string) realkernel.Kernel {
	t.Helper()
	k, err := realkernel.KernelBySeries(e.kernels, series)
	if err != nil {
		t.Skip(err.Error())
	}
	return k
}

// initramfs writes an initramfs for k running run, in t's temp dir.
func (e *env) initramfs(t testing.TB, k realkernel.Kernel, stayUp bool, run ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "initrd.cpio")
	err := realkernel.Initramfs{
		Kinit:    filepath.Join(e.bin, "kinit"),
		Kernel:   k,
		Programs: map[string]string{"/bin/guestinit": filepath.Join(e.bin, "guestinit")},
		Run:      run,
		StayUp:   stayUp,
	}.Write(p)
	require.NoError(t, err)
	return p
}

// echo is where console and backend lines go: the test log with -v.
type echo struct{ t testing.TB }

func (e echo) Write(p []byte) (int, error) {
	e.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// boot starts QEMU for the test and tears it down at its end.
func boot(t testing.TB, ctx context.Context, cfg realkernel.VMConfig) *realkernel.VM {
	t.Helper()
	if testing.Verbose() {
		cfg.Echo = echo{t}
	}
	vm, err := realkernel.Boot(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	return vm
}

// TestBootModules boots each kernel with no vsock device: kinit comes up
// as PID 1, loads the modules in order and powers off, and QEMU exits by
// itself.
func TestBootModules(t *testing.T) {
	e := needEnv(t)
	for _, series := range []string{"6.12", "6.1"} {
		t.Run(series, func(t *testing.T) {
			k := e.kernel(t, series)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			vm := boot(t, ctx, realkernel.VMConfig{Kernel: k, Initramfs: e.initramfs(t, k, false)})
			pid1, err := vm.Expect(ctx, "kinit: pid1 up")
			require.NoError(t, err)
			require.Contains(t, pid1.Text, "kernel "+k.Release)
			_, err = vm.Expect(ctx, fmt.Sprintf("kinit: modules loaded (%d)", len(k.Modules)))
			require.NoError(t, err)
			_, err = vm.Expect(ctx, "kinit: powering off")
			require.NoError(t, err)
			require.NoError(t, vm.Wait(ctx), "QEMU should exit by itself after the power-off")
			t.Logf("%s: PID 1 at %s wall time", k.Release, pid1.At)
		})
	}
}

// TestTeardown: when a test's context ends with the guest still running,
// QEMU is killed and reaped, and a Close after that is harmless.
func TestTeardown(t *testing.T) {
	e := needEnv(t)
	k := e.kernel(t, "6.12")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bctx, bcancel := context.WithCancel(ctx)
	vm := boot(t, bctx, realkernel.VMConfig{Kernel: k, Initramfs: e.initramfs(t, k, true)})
	_, err := vm.Expect(ctx, "kinit: ready")
	require.NoError(t, err)
	pid := vm.Pid()
	bcancel()
	select {
	case <-vm.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("QEMU still running 10s after its context ended")
	}
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "QEMU's process is gone")
	require.NoError(t, vm.Close())
}
