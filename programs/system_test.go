package programs

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
)

func cfg(device, kernel string) lab.Config {
	return lab.Config{Config: emu.Config{Device: device, Kernel: kernel, Seed: 1}}
}

func waitCycle(t *testing.T, s *System, n int) hostd.Cycle {
	t.Helper()
	c, err := s.WaitCycle(n, 10*time.Minute)
	require.NoError(t, err)
	return c
}

func TestBootDeliversLogsExactly(t *testing.T) {
	res := lab.Run(t, cfg("firecracker-1.14", "linux-6.12.68"), func(l *lab.Lab) {
		s := Start(l, guestinit.Options{}, []string{"writer", "total=1MiB", "size=4KiB", "every=1ms"}, hostd.Options{})
		c := waitCycle(t, s, 0)
		require.True(t, c.Started)
		require.Less(t, c.TimeToStarted, time.Second)
		time.Sleep(10 * time.Second)
		st, ok := s.Hostd.Collector.Stream("stdout")
		require.True(t, ok)
		require.Equal(t, uint64(1<<20), st.Bytes)
		require.Equal(t, int64(-1), labenv.CheckPattern(st.Data), "every byte, in order")
		require.Equal(t, int64(1<<20), s.Workload().Written())
	})
	require.Contains(t, res.Log, "hostd: cycle 0: started after")
}

func TestWriteTimeoutWarnsWithTheHistoricalDevice(t *testing.T) {
	// Seed 000: nonlinear TX against Cloud Hypervisor before v51 drops the
	// first large packet and the stream's credit never comes back; init's
	// write timeout keeps the pipe draining, with a warning.
	res := lab.Run(t, cfg("cloud-hypervisor-50", "linux-6.12.68"), func(l *lab.Lab) {
		s := Start(l, guestinit.Options{}, []string{"writer", "total=1MiB", "size=64KiB", "every=100ms"}, hostd.Options{})
		waitCycle(t, s, 0)
		time.Sleep(time.Minute)
		require.Equal(t, int64(1<<20), s.Workload().Written(), "the workload never stays blocked")
		stats := s.Init.Stats()
		require.Positive(t, stats.WriteTimeouts)
		require.Positive(t, stats.LogBytesDropped["stdout"])
		for _, p := range l.Pipes() {
			require.LessOrEqual(t, p.MaxBlock, 2*time.Second+100*time.Millisecond)
		}
	})
	require.Contains(t, res.Log, "vsock: error reading TX packet: BufDescTooSmall")
	require.Contains(t, res.Log, "init: WARNING: vsock write did not finish within 2s; dropped")
}

func TestNoTimeoutWedgesTheWorkload(t *testing.T) {
	lab.Run(t, cfg("cloud-hypervisor-50", "linux-6.12.68"), func(l *lab.Lab) {
		s := Start(l, guestinit.Options{NoVsockWriteTimeout: true}, []string{"writer", "total=1MiB", "size=64KiB", "every=100ms"}, hostd.Options{})
		waitCycle(t, s, 0)
		time.Sleep(time.Minute)
		require.Less(t, s.Workload().Written(), int64(1<<20))
		var blocked bool
		for _, p := range l.Pipes() {
			blocked = blocked || p.Blocked
		}
		require.True(t, blocked, "the workload is blocked writing stdout")
	})
}

func TestResumeReopensSessionAndLeakOption(t *testing.T) {
	for _, leak := range []bool{false, true} {
		t.Run(map[bool]string{false: "current init", true: "KeepResetSessions"}[leak], func(t *testing.T) {
			lab.Run(t, cfg("firecracker-1.14", "linux-6.12.68"), func(l *lab.Lab) {
				s := Start(l, guestinit.Options{KeepResetSessions: leak}, []string{"idle"}, hostd.Options{})
				waitCycle(t, s, 0)
				time.Sleep(5 * time.Second)
				require.NoError(t, l.Suspend())
				time.Sleep(time.Second)
				require.NoError(t, l.Resume())
				time.Sleep(time.Second) // the guest handles the reset; hostd has not been told
				sessions := s.Hostd.Sessions()
				require.Len(t, sessions, 1)
				require.True(t, sessions[0].Closed, "the reset itself ended the session, before hostd's new cycle")
				s.Hostd.Resumed() // only now: the assertions above are about the time before hostd knows
				c := waitCycle(t, s, 1)
				require.True(t, c.Started)
				time.Sleep(5 * time.Second)
				sessions = s.Hostd.Sessions()
				require.Len(t, sessions, 2)
				require.True(t, sessions[0].Closed, "nothing survives a reset")
				require.False(t, sessions[1].Closed)
				require.Positive(t, sessions[1].Samples)
				var leaked int
				require.NoError(t, l.Do(func(w *emu.World) error { leaked = w.Guest.Leaked(); return nil }))
				if leak {
					require.Equal(t, 1, leaked, "the reset session socket stays in the guest's table")
				} else {
					require.Zero(t, leaked, "the table is clean after the resume")
				}
			})
		})
	}
}

func TestTimeToStartedRecordedPerCycle(t *testing.T) {
	lab.Run(t, cfg("firecracker-1.14", "linux-6.12.68"), func(l *lab.Lab) {
		s := Start(l, guestinit.Options{KeepResetSessions: true}, []string{"idle"}, hostd.Options{SessionFirst: true})
		waitCycle(t, s, 0)
		for i := 1; i <= 4; i++ {
			time.Sleep(5 * time.Second)
			c, err := s.SuspendResume(i, time.Second, 10*time.Minute)
			require.NoError(t, err)
			require.True(t, c.Started)
			require.Equal(t, i, c.Failures("session"), "cycle %d: one refused attempt per leaked port", i)
		}
		cycles := s.Hostd.Cycles()
		require.Len(t, cycles, 5)
		for i := 1; i < len(cycles); i++ {
			require.Greater(t, cycles[i].TimeToStarted, cycles[i-1].TimeToStarted)
		}
	})
}

func TestSystemIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("20 runs")
	}
	res := lab.Deterministic(t, 20, cfg("firecracker-1.14", "linux-6.12.68"), func(l *lab.Lab) {
		s := Start(l, guestinit.Options{KeepResetSessions: true}, []string{"writer", "total=256KiB", "size=16KiB", "every=10ms"}, hostd.Options{SessionFirst: true})
		waitCycle(t, s, 0)
		for i := 1; i <= 2; i++ {
			time.Sleep(3 * time.Second)
			_, err := s.SuspendResume(i, 0, 10*time.Minute)
			require.NoError(t, err)
		}
	})
	require.True(t, strings.Contains(res.Log, "cycle 2: started"))
}
