package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/programs"
)

func TestFailedOracleStreamsStartsAndConnects(t *testing.T) {
	const total = 1 << 20
	stream := func(st programs.StreamStats) *Report {
		st.Connected = true
		if st.OutOfOrderAt == 0 {
			st.OutOfOrderAt = -1
		}
		return &Report{Stdout: programs.Stdout{OutOfOrderAt: -1}, Stream: st, StreamTotal: total}
	}
	tests := []struct {
		name   string
		r      *Report
		oracle string // "" when every oracle holds
		why    string
	}{
		{"a stream delivered whole", stream(programs.StreamStats{Written: total, Delivered: total, Ended: true}), "", ""},
		{"a writer that waits for a reader that never reads", stream(programs.StreamStats{Written: 262144, Blocked: true, LongestBlock: time.Minute}), "", ""},
		{"a slow reader between reads", stream(programs.StreamStats{Written: 524288, Delivered: 262144, Blocked: true, LongestBlock: time.Minute}), "", ""},
		{"never connected", &Report{Stdout: programs.Stdout{OutOfOrderAt: -1}, StreamTotal: total, Stream: programs.StreamStats{OutOfOrderAt: -1, ConnectErr: "refused"}},
			"stream-connect", "the stream's writer never connected: refused"},
		{"a wrong byte", stream(programs.StreamStats{Written: total, Delivered: total + 32768, OutOfOrderAt: 229376, Ended: true}),
			"stream-corrupt", "byte 229376 of the stream differs from the byte written there; 1048576 written, 1081344 delivered"},
		{"reset under a live stream", stream(programs.StreamStats{Written: 91200, WriterErr: "write: no buffer space available"}),
			"stream-reset", `the stream failed with neither side closing it: writer "write: no buffer space available", reader ""; 91200 of 1048576 bytes written, 0 delivered`},
		{"a reader waiting while the writer waits", stream(programs.StreamStats{Written: 458752, Blocked: true, LongestBlock: 10 * time.Second, ReaderWait: 10 * time.Second}),
			"stream-stalled", "the reader has waited 10s in a read; 458752 of 1048576 bytes written, 0 delivered, the writer blocked 10s"},
		{"a reader waiting for bytes written", stream(programs.StreamStats{Written: total, Delivered: total - 4096, ReaderWait: 6 * time.Second}),
			"stream-stalled", "the reader has waited 6s in a read; 1048576 of 1048576 bytes written, 1044480 delivered, the writer blocked 0s"},
		{"a short wait", stream(programs.StreamStats{Written: total, Delivered: total - 4096, ReaderWait: 4 * time.Second}), "", ""},
		{"ended short", stream(programs.StreamStats{Written: total, Delivered: total - 4096, Ended: true}),
			"stream-lost", "the stream ended with 1044480 of 1048576 written bytes delivered"},
		{"a start sequence that gave up", &Report{Stdout: programs.Stdout{OutOfOrderAt: -1}, StartFailures: []string{"cycle 0: gave up after 1m0s"}},
			"start-failed", "hostd's start sequence gave up 1 times, the first: cycle 0: gave up after 1m0s"},
		{"a refused connect", &Report{Stdout: programs.Stdout{OutOfOrderAt: -1}, ConnectFailures: []string{"connect 10000: refused"}},
			"connect-refused", "1 host connects to a listening guest port failed, the first: connect 10000: refused"},
		{"stdout lost, but a device reset discarded it", &Report{Stdout: programs.Stdout{Written: 100, Delivered: 50, OutOfOrderAt: -1}, WorkloadTotal: 100, DeviceResets: 1}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := FailedOracle(tc.r)
			if tc.oracle == "" {
				require.Nil(t, o)
				return
			}
			require.NotNil(t, o)
			require.Equal(t, tc.oracle, o.Name)
			require.Equal(t, tc.why, o.Why)
		})
	}
}
