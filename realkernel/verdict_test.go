package realkernel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStdoutVerdict(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		run  StdoutRun
		want string
	}{
		{"blocked short of the total", StdoutRun{Total: mib, Written: 131072, Blocked: true, DroppedChains: 1}, "wedged"},
		{"everything in order", StdoutRun{Total: mib, Written: mib, Delivered: mib, InOrder: true, LongestWrite: time.Second}, "ok"},
		{"delivered out of order", StdoutRun{Total: mib, Written: mib, Delivered: mib, LongestWrite: time.Second}, "unexpected"},
		{"warnings within the timeout", StdoutRun{Total: mib, Written: mib, Delivered: 7, Warnings: 15, WriteTimeout: time.Second, LongestWrite: 2 * time.Second}, "degraded"},
		{"warnings but a write blocked far longer", StdoutRun{Total: mib, Written: mib, Warnings: 15, WriteTimeout: time.Second, LongestWrite: time.Minute}, "unexpected"},
		{"not blocked, not finished", StdoutRun{Total: mib, Written: 65536}, "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, why := tc.run.Verdict()
			require.Equal(t, tc.want, v, why)
		})
	}
}

func TestWriteProgress(t *testing.T) {
	for _, tc := range []struct {
		line    string
		ok      bool
		written uint64
		at      time.Duration
	}{
		{"kinit: write: 65536 of 1048576 bytes written at 0.125 s", true, 65536, 125 * time.Millisecond},
		{"[   3.1] kinit: write: 1048576 of 1048576 bytes written at 2.000 s", true, 1048576, 2 * time.Second},
		{"kinit: write: done, 1048576 bytes in 2.000 s", false, 0, 0},
		{"kinit: write: x of 1048576 bytes written at 0.1 s", false, 0, 0},
		{"init: workload started", false, 0, 0},
	} {
		w, _, at, ok := WriteProgress(tc.line)
		require.Equal(t, tc.ok, ok, tc.line)
		require.Equal(t, tc.written, w, tc.line)
		require.Equal(t, tc.at, at, tc.line)
	}
}

func TestResumeVerdict(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		tts  []time.Duration
		want string
	}{
		{ms(120, 260, 480, 900, 1700), "grows"},
		{ms(80, 90, 100, 110, 120), "bounded"},
		{ms(80, 2000, 100, 110, 120), "unbounded"},
		{nil, "unexpected"},
	} {
		v, why := ResumeVerdict(tc.tts, time.Second)
		require.Equal(t, tc.want, v, why)
	}
}
