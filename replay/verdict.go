package replay

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// Verdict judges a report: kind "wedge" asks what became of the workload's
// stdout, kind "resume" how hostd's start sequence fared across resumes. It
// reads nothing but r.
func Verdict(kind string, r *Report) (verdict, why string) {
	switch kind {
	case "wedge":
		return wedgeVerdict(r)
	case "resume":
		return resumeVerdict(r)
	case "stream":
		return streamVerdict(r)
	}
	return "unexpected", fmt.Sprintf("no verdict named %q", kind)
}

// wedgeVerdict: wedged when the workload is blocked writing stdout at the
// end of the run and did not write everything; degraded when init dropped
// bytes after write timeouts but the workload never waited longer than the
// timeout plus one tick of its writes; ok when every byte arrived, in order.
func wedgeVerdict(r *Report) (string, string) {
	st, total := r.Stdout, r.WorkloadTotal
	block := st.LongestBlock
	switch {
	case st.Blocked && st.Written < total:
		return "wedged", fmt.Sprintf("the workload has been blocked writing stdout since %s; %d of %d bytes written, %d delivered",
			strings.TrimSpace(engine.FormatTime(st.BlockedSince)), st.Written, total, st.Delivered)
	case st.WriteTimeouts > 0 && r.WriteTimeout > 0 && block <= r.WriteTimeout+max(r.WorkloadEvery, time.Millisecond):
		return "degraded", fmt.Sprintf("init warned %d times and dropped %d bytes; longest stdout block %s, within the %s timeout plus one tick",
			st.WriteTimeouts, st.DroppedByInit, block, r.WriteTimeout)
	case st.Delivered == st.Written && st.Written == total && st.OutOfOrderAt < 0 && st.WriteTimeouts == 0:
		return "ok", fmt.Sprintf("all %d bytes delivered in order; longest stdout block %s", st.Delivered, block)
	}
	return "unexpected", fmt.Sprintf("written %d of %d, delivered %d, dropped %d, timeouts %d, longest block %s",
		st.Written, total, st.Delivered, st.DroppedByInit, st.WriteTimeouts, block)
}

// resumeVerdict: grows when time-to-started rose with every resume; bounded
// when every resume started within a second.
func resumeVerdict(r *Report) (string, string) {
	rs := r.Resumes
	if len(rs) == 0 {
		return "unexpected", "no resumes"
	}
	rising := true
	passed := 0
	for i, v := range rs {
		if i > 0 && v <= rs[i-1] {
			rising = false
		}
		if passed == 0 && v > 30*time.Second {
			passed = i + 1
		}
	}
	longest := slices.Max(rs)
	switch {
	case rising && len(rs) > 1:
		why := fmt.Sprintf("time-to-started rose with every one of %d resumes, %s to %s", len(rs), rs[0], rs[len(rs)-1])
		if passed > 0 {
			why += fmt.Sprintf("; over 30s from resume %d", passed)
		}
		return "grows", why
	case longest < time.Second:
		return "bounded", fmt.Sprintf("all %d resumes started within %s", len(rs), longest)
	}
	return "unbounded", fmt.Sprintf("longest time-to-started %s over %d resumes, not rising every time", longest, len(rs))
}

// streamVerdict judges the stream directive's stream: wedged when the
// writer never got a connection or is blocked at the end with bytes still
// to write; corrupted when the reader got a byte that differs from the one
// written at that position (lost, duplicated or reordered bytes); ok when
// every byte arrived in order.
func streamVerdict(r *Report) (string, string) {
	st, total := r.Stream, r.StreamTotal
	switch {
	case total == 0:
		return "unexpected", "no stream in this scenario"
	case !st.Connected:
		return "wedged", "the writer never connected: " + st.ConnectErr
	case st.OutOfOrderAt >= 0:
		return "corrupted", fmt.Sprintf("byte %d of the stream differs from the byte written there; %d written, %d delivered",
			st.OutOfOrderAt, st.Written, st.Delivered)
	case st.Blocked && st.Written < total:
		return "wedged", fmt.Sprintf("the writer has been blocked since %s; %d of %d bytes written, %d delivered",
			strings.TrimSpace(engine.FormatTime(st.BlockedSince)), st.Written, total, st.Delivered)
	case st.Written == total && st.Delivered == total:
		return "ok", fmt.Sprintf("all %d bytes delivered in order; longest write block %s", total, st.LongestBlock)
	}
	return "unexpected", fmt.Sprintf("written %d of %d, delivered %d, writer error %q, reader error %q",
		st.Written, total, st.Delivered, st.WriterErr, st.ReaderErr)
}
