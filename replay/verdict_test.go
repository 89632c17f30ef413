package replay

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/programs"
)

func TestVerdictJudgesTheReportAlone(t *testing.T) {
	const total = 1 << 20
	writer := func(st programs.Stdout) *Report { // in order unless the case says where not
		if st.OutOfOrderAt == 0 {
			st.OutOfOrderAt = -1
		}
		return &Report{Stdout: st, WorkloadTotal: total, WorkloadEvery: 100 * time.Millisecond, WriteTimeout: 2 * time.Second}
	}
	resumes := func(ms ...int) *Report {
		r := &Report{}
		for _, v := range ms {
			r.Resumes = append(r.Resumes, time.Duration(v)*time.Millisecond)
		}
		return r
	}
	tests := []struct {
		name, kind string
		r          *Report
		verdict    string
		why        string
	}{
		{"blocked short of the total", "wedge",
			writer(programs.Stdout{Written: 600, Delivered: 500, Blocked: true, BlockedSince: 3 * time.Second, LongestBlock: time.Minute}),
			"wedged", "the workload has been blocked writing stdout since 3.000000000; 600 of 1048576 bytes written, 500 delivered"},
		{"timeouts kept the block within bounds", "wedge",
			writer(programs.Stdout{Written: total, Delivered: total - 4096, DroppedByInit: 4096, WriteTimeouts: 1, LongestBlock: 2100 * time.Millisecond}),
			"degraded", "init warned 1 times and dropped 4096 bytes; longest stdout block 2.1s, within the 2s timeout plus one tick"},
		{"a block past timeout plus tick", "wedge",
			writer(programs.Stdout{Written: total, Delivered: total - 4096, DroppedByInit: 4096, WriteTimeouts: 1, LongestBlock: 2101 * time.Millisecond}),
			"unexpected", "written 1048576 of 1048576, delivered 1044480, dropped 4096, timeouts 1, longest block 2.101s"},
		{"everything delivered in order", "wedge",
			writer(programs.Stdout{Written: total, Delivered: total, LongestBlock: 5 * time.Millisecond}),
			"ok", "all 1048576 bytes delivered in order; longest stdout block 5ms"},
		{"delivered out of order", "wedge",
			writer(programs.Stdout{Written: total, Delivered: total, OutOfOrderAt: 32768}),
			"unexpected", "written 1048576 of 1048576, delivered 1048576, dropped 0, timeouts 0, longest block 0s"},
		{"rising past 30 s", "resume", resumes(50, 20000, 30001, 40000),
			"grows", "time-to-started rose with every one of 4 resumes, 50ms to 40s; over 30s from resume 3"},
		{"rising, short", "resume", resumes(50, 150),
			"grows", "time-to-started rose with every one of 2 resumes, 50ms to 150ms"},
		{"flat and fast", "resume", resumes(0, 0, 0),
			"bounded", "all 3 resumes started within 0s"},
		{"one slow resume", "resume", resumes(50, 1000, 50),
			"unbounded", "longest time-to-started 1s over 3 resumes, not rising every time"},
		{"no resumes", "resume", resumes(),
			"unexpected", "no resumes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, why := Verdict(tc.kind, tc.r)
			require.Equal(t, tc.verdict, v)
			require.Equal(t, tc.why, why)
		})
	}
}

func TestReportJSONHasDurationsInMilliseconds(t *testing.T) {
	r := Report{File: "f.trace", Name: "w", Device: "d", Kernel: "k", Seed: 3,
		Stdout:  programs.Stdout{Written: 10, Delivered: 9, DroppedByInit: 1, LongestBlock: 1500 * time.Microsecond},
		Resumes: []time.Duration{50 * time.Millisecond, 3150 * time.Millisecond}, LogSHA256: "ab"}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{"file":"f.trace","name":"w","device":"d","kernel":"k","seed":3,
		"stdout_bytes_written":10,"stdout_bytes_delivered":9,"stdout_bytes_dropped_by_init":1,
		"max_stdout_block_ms":1.5,"resume_ms":[50,3150],"leaked_sockets":0,
		"counters":{"guest_to_host":null,"host_to_guest":null,"rw_bytes":null},"log_sha256":"ab"}`, string(b))
	r.Resumes = nil
	b, err = json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(b), `"resume_ms":null`, "a scenario without resumes, as before the split")
}
