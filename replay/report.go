package replay

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/programs"
	"github.com/vsocklab/vsocklab/virtio"
)

// Report is what the replay of one scenario measured, and its verdict.
// Durations stay time.Duration; only the JSON form (vsocklab replay --json)
// turns them into milliseconds.
type Report struct {
	File   string
	Name   string
	Device string
	Kernel string
	Seed   uint64
	Init   string // the init directive in words, "" without one
	Hostd  string // the hostd directive in words, "" without one

	Verdict string
	Stdout  programs.Stdout
	// Resumes is hostd's time-to-started after every resume, in order (the
	// boot's start sequence is not a resume).
	Resumes       []time.Duration
	LeakedSockets int
	// Suspended is how long the cycles directive kept the guest suspended.
	Suspended time.Duration
	// LeakedByResume is LeakedSockets when each resume's start sequence
	// ended, in order.
	LeakedByResume []int
	// Violations are the device's invariant violations, as its event log
	// states them.
	Violations []string
	Counters   Counters
	LogSHA256  string
	// Error is why a limit stopped the scenario ("" when it ran to the end).
	Error string

	// What the verdicts weigh besides: the workload's plan and init's write
	// timeout (0 when it has none).
	WorkloadTotal int64
	WorkloadEvery time.Duration
	WriteTimeout  time.Duration

	// Stream is the stream directive's account, StreamTotal its plan (0
	// without one).
	Stream      programs.StreamStats
	StreamTotal int64

	// StartFailures are hostd's start sequences (boot or resume) that gave
	// up, one line each; DeviceResets counts the device-reset directives;
	// ConnectFailures are the connect directives that got no connection,
	// one line each, as the directive printed them.
	StartFailures   []string
	DeviceResets    int
	ConnectFailures []string
}

// Counters are the packets and payload bytes that crossed the device, by
// direction, as the world's own tap counted them; a capture must agree.
type Counters struct {
	GuestToHost map[string]uint64 `json:"guest_to_host"`
	HostToGuest map[string]uint64 `json:"host_to_guest"`
	RWBytes     map[string]uint64 `json:"rw_bytes"`
}

// String renders the counters as the counters directive prints them:
// packets by op in each direction, then the RW payload bytes.
func (c Counters) String() string {
	var b strings.Builder
	for _, dir := range []struct {
		name string
		m    map[string]uint64
	}{{"guest->host", c.GuestToHost}, {"host->guest", c.HostToGuest}} {
		fmt.Fprintf(&b, "%s:", dir.name)
		for op := virtio.Op(1); op <= virtio.OpCreditRequest; op++ {
			if n := dir.m[op.String()]; n > 0 {
				fmt.Fprintf(&b, " %s=%d", op, n)
			}
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "rw bytes: guest->host %d, host->guest %d\n", c.RWBytes["guest_to_host"], c.RWBytes["host_to_guest"])
	return b.String()
}

func countersOf(w *emu.World) Counters {
	c := w.Counters()
	out := Counters{GuestToHost: map[string]uint64{}, HostToGuest: map[string]uint64{}, RWBytes: map[string]uint64{}}
	for op := virtio.Op(1); op <= virtio.OpCreditRequest; op++ {
		if n := c.Packets[device.GuestToHost][op]; n > 0 {
			out.GuestToHost[op.String()] = n
		}
		if n := c.Packets[device.HostToGuest][op]; n > 0 {
			out.HostToGuest[op.String()] = n
		}
	}
	out.RWBytes["guest_to_host"] = c.RWBytes[device.GuestToHost]
	out.RWBytes["host_to_guest"] = c.RWBytes[device.HostToGuest]
	return out
}

// reportJSON is the --json record, one per scenario.
type reportJSON struct {
	File            string    `json:"file"`
	Name            string    `json:"name"`
	Device          string    `json:"device"`
	Kernel          string    `json:"kernel"`
	Seed            uint64    `json:"seed"`
	Init            string    `json:"init,omitempty"`
	Hostd           string    `json:"hostd,omitempty"`
	Verdict         string    `json:"verdict,omitempty"`
	StdoutWritten   int64     `json:"stdout_bytes_written"`
	StdoutDelivered int64     `json:"stdout_bytes_delivered"`
	StdoutDropped   int64     `json:"stdout_bytes_dropped_by_init"`
	MaxStdoutBlock  float64   `json:"max_stdout_block_ms"`
	ResumeMS        []float64 `json:"resume_ms"`
	LeakedSockets   int       `json:"leaked_sockets"`
	Counters        Counters  `json:"counters"`
	LogSHA256       string    `json:"log_sha256"`
	StreamWritten   int64     `json:"stream_bytes_written,omitempty"`
	StreamDelivered int64     `json:"stream_bytes_delivered,omitempty"`
	Error           string    `json:"error,omitempty"`
}

// MarshalJSON writes the report with durations in milliseconds.
func (r Report) MarshalJSON() ([]byte, error) {
	j := reportJSON{
		File: r.File, Name: r.Name, Device: r.Device, Kernel: r.Kernel, Seed: r.Seed, Init: r.Init, Hostd: r.Hostd,
		Verdict: r.Verdict, StdoutWritten: r.Stdout.Written, StdoutDelivered: r.Stdout.Delivered,
		StdoutDropped: r.Stdout.DroppedByInit, MaxStdoutBlock: millis(r.Stdout.LongestBlock),
		LeakedSockets: r.LeakedSockets, Counters: r.Counters, LogSHA256: r.LogSHA256,
		StreamWritten: r.Stream.Written, StreamDelivered: r.Stream.Delivered,
		Error: r.Error,
	}
	for _, d := range r.Resumes {
		j.ResumeMS = append(j.ResumeMS, millis(d))
	}
	return json.Marshal(j)
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
