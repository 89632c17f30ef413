package lab

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
)

// failingScenarios are tests that must fail; TestFailingScenarioReports
// runs each in a child process (the test binary itself) and reads its
// report. In a normal run they skip.
const failingEnv = "VSOCKLAB_LAB_FAILING_SCENARIO"

func failingOnly(t *testing.T) {
	if os.Getenv(failingEnv) == "" {
		t.Skip("run by TestFailingScenarioReports in a child process")
	}
}

func TestFailingScenarioFatalOnTheScenariosT(t *testing.T) {
	failingOnly(t)
	Test(t, Config{}, func(t *testing.T, l *Lab) {
		_, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		_, err = l.Guest.Dial(2, 7000) // nobody listens on the host: refused
		require.NoError(t, err, "dial the host")
		t.Log("not reached")
	})
	t.Log("not reached either")
}

func TestFailingScenarioFatalOnTheOuterT(t *testing.T) {
	failingOnly(t)
	Run(t, Config{}, func(l *Lab) {
		_, err := l.Guest.Dial(2, 7000)
		require.NoError(t, err, "dial the host")
	})
}

func TestFailingScenarioPanics(t *testing.T) {
	failingOnly(t)
	Test(t, Config{FailLogLines: 3}, func(t *testing.T, l *Lab) {
		_, _ = l.Guest.Dial(2, 7000)
		panic("scenario bug")
	})
}

func TestFailingScenarioDeadlocks(t *testing.T) {
	failingOnly(t)
	Test(t, Config{}, func(t *testing.T, l *Lab) {
		ln, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		_, err = ln.Accept() // nobody dials
		require.NoError(t, err, "accept")
	})
}

func TestFailingScenarioReports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary once per failing scenario")
	}
	for _, tc := range []struct {
		test string
		want []string
	}{
		{"TestFailingScenarioFatalOnTheScenariosT", []string{"dial the host", "connection reset by peer", "the event log's last lines", "RST"}},
		{"TestFailingScenarioFatalOnTheOuterT", []string{"dial the host", "without failing the scenario's t", "the event log's last lines", "RST"}},
		{"TestFailingScenarioPanics", []string{"the scenario panicked: scenario bug", "(", "earlier lines)"}},
		{"TestFailingScenarioDeadlocks", []string{
			"lab stopped: nothing happened for 1000h0m0s of virtual time and nothing is due: the programs are deadlocked; waiting: Accept on vsock listener vm(3):5000 blocked since    0.000000000",
			"accept", "lab shut down", "the event log's last lines (virtual time 3600000.000000000)",
		}},
	} {
		t.Run(tc.test, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^"+tc.test+"$", "-test.v")
			cmd.Env = append(os.Environ(), failingEnv+"=1")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the failing test passed:\n%s", out)
			for _, w := range tc.want {
				require.Contains(t, string(out), w)
			}
			require.NotContains(t, string(out), "subtest may have called FailNow")
			require.NotContains(t, string(out), "not reached")
			require.True(t, strings.Contains(string(out), "--- FAIL: "+tc.test), "%s", out)
		})
	}
}

// A zero Config boots the world a trace's bare "world" directive does:
// the same profiles, CID and seed 1, so the ephemeral ports a trace shows
// are the ones a test sees.
func TestZeroConfigIsTheTracesDefaultWorld(t *testing.T) {
	zero := Test(t, Config{}, func(t *testing.T, l *Lab) {
		_, _ = l.Guest.Dial(2, 7000)
	})
	seed1 := Test(t, Config{Config: emu.Config{Seed: 1, Device: "firecracker-1.14", Kernel: "linux-6.12.68", GuestCID: 3}}, func(t *testing.T, l *Lab) {
		_, _ = l.Guest.Dial(2, 7000)
	})
	require.Equal(t, seed1.Log, zero.Log)
	require.Contains(t, zero.Log, "boot: device firecracker-1.14, guest linux-6.12.68, cid 3, seed 1\n")
}

func TestGuestCIDOutsideSockaddrVMIsAnError(t *testing.T) {
	for _, cid := range []uint64{2, 1 << 32} {
		_, err := Start(Config{Config: emu.Config{GuestCID: cid}})
		require.ErrorContains(t, err, "want one in [3, 4294967294]")
	}
}
