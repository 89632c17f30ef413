package realkernel

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StdoutRun is what one seed-000 run with a real kernel showed: the
// workload's progress (from its console lines), what the host's log
// collector received, init's warnings and the device's dropped chains.
type StdoutRun struct {
	Total     uint64 // bytes the workload meant to write
	Written   uint64 // bytes its writes returned
	Delivered uint64 // bytes of the stdout stream the host received
	// InOrder: every delivered byte matched the test stream at its offset
	// (package internal/pattern).
	InOrder bool
	// Blocked: the workload made no progress for the run's stall window
	// while it had not written everything.
	Blocked bool
	// LongestWrite is the longest time between two progress reports of
	// the workload (the longest stdout write, TCG overhead included).
	LongestWrite time.Duration
	// WriteTimeout is init's vsock write timeout (0: none).
	WriteTimeout time.Duration
	// Warnings counts init's "WARNING" lines (a dropped write each).
	Warnings int
	// DroppedChains counts the device's "dropped TX chain" lines.
	DroppedChains int
}

// Slack is how much longer than init's write timeout the workload may
// wait in one write and the run still count as degraded rather than
// wedged: the timeout fires in init, then init reads the next chunk from
// the pipe, all under TCG on a loaded machine.
const Slack = 3 * time.Second

// Verdict judges the run with the words of `vsocklab replay`'s
// `verdict wedge` (docs/trace.md): wedged when the workload is blocked
// writing stdout and did not write everything; degraded when init dropped
// bytes after write timeouts but the workload never waited much longer
// than the timeout; ok when every byte arrived in order.
func (r StdoutRun) Verdict() (string, string) {
	switch {
	case r.Blocked && r.Written < r.Total:
		return "wedged", fmt.Sprintf("the workload is blocked writing stdout; %d of %d bytes written, %d delivered, %d TX chains dropped by the device",
			r.Written, r.Total, r.Delivered, r.DroppedChains)
	case r.Warnings > 0 && r.WriteTimeout > 0 && r.Written == r.Total && r.LongestWrite <= r.WriteTimeout+Slack:
		return "degraded", fmt.Sprintf("init warned %d times; %d of %d bytes delivered; longest stdout write %s, within the %s timeout plus %s",
			r.Warnings, r.Delivered, r.Total, r.LongestWrite.Round(time.Millisecond), r.WriteTimeout, Slack)
	case r.Written == r.Total && r.Delivered == r.Total && r.InOrder && r.Warnings == 0:
		return "ok", fmt.Sprintf("all %d bytes delivered in order; longest stdout write %s", r.Delivered, r.LongestWrite.Round(time.Millisecond))
	}
	return "unexpected", fmt.Sprintf("written %d of %d, delivered %d (in order %v), warnings %d, longest write %s, dropped chains %d",
		r.Written, r.Total, r.Delivered, r.InOrder, r.Warnings, r.LongestWrite.Round(time.Millisecond), r.DroppedChains)
}

// WriteProgress parses the workload's progress line, "kinit: write: N of
// M bytes written at T s".
func WriteProgress(line string) (written, total uint64, at time.Duration, ok bool) {
	i := strings.Index(line, "kinit: write: ")
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(line[i+len("kinit: write: "):])
	if len(f) != 8 || f[1] != "of" || f[3] != "bytes" || f[4] != "written" || f[5] != "at" || f[7] != "s" {
		return 0, 0, 0, false
	}
	w, err1 := strconv.ParseUint(f[0], 10, 64)
	t, err2 := strconv.ParseUint(f[2], 10, 64)
	s, err3 := strconv.ParseFloat(f[6], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return w, t, time.Duration(s * float64(time.Second)), true
}

// ResumeVerdict judges time-to-started per resume with the words of
// `vsocklab replay`'s `verdict resume` (docs/trace.md): bounded when every
// resume started within limit (replay uses one second of virtual time);
// grows when it rose with every resume.
func ResumeVerdict(tts []time.Duration, limit time.Duration) (string, string) {
	if len(tts) == 0 {
		return "unexpected", "no resumes"
	}
	rising := true
	longest := tts[0]
	for i, v := range tts {
		if i > 0 && v <= tts[i-1] {
			rising = false
		}
		longest = max(longest, v)
	}
	round := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	// Unlike replay, bounded is checked first: in real time a handful of
	// fast resumes can rise by chance.
	switch {
	case longest < limit:
		return "bounded", fmt.Sprintf("all %d resumes started within %s", len(tts), round(longest))
	case rising && len(tts) > 1:
		return "grows", fmt.Sprintf("time-to-started rose with every one of %d resumes, %s to %s", len(tts), round(tts[0]), round(tts[len(tts)-1]))
	}
	return "unbounded", fmt.Sprintf("longest time-to-started %s over %d resumes, not rising every time", round(longest), len(tts))
}
