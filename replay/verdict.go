package replay

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// Verdict judges a report: kind "wedge" asks what became of the workload's
// stdout, kind "resume" how hostd's start sequence fared across resumes,
// kind "oracles" whether the oracles that hold for any correct system held.
// It reads nothing but r.
func Verdict(kind string, r *Report) (verdict, why string) {
	switch kind {
	case "wedge":
		return wedgeVerdict(r)
	case "resume":
		return resumeVerdict(r)
	case "oracles":
		if o := FailedOracle(r); o != nil {
			return o.Name, o.Why
		}
		return "ok", "every oracle held"
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

// The generic oracles' bounds.
const (
	// MaxUnreportedBlock: no stdout write of the workload may wait longer
	// (init's write timeout, 2 s by default, reports and ends any wait).
	MaxUnreportedBlock = 5 * time.Second
	// MaxTimeToStarted: every resume's start sequence must finish within
	// this (hostd's backoff alone reaches 5 s only after six failures).
	MaxTimeToStarted = 5 * time.Second
	// growthCycles: time-to-started (or the leaked sockets) rising over
	// this many resumes in a row grows with the cycles.
	growthCycles = 3
)

// Oracle is one generic oracle that did not hold: its name and the numbers.
type Oracle struct {
	Name string
	Why  string
}

// FailedOracle checks the oracles that hold for any correct system, device
// and kernel whatever the configuration, and returns the first that did
// not hold, nil when all did:
//
//   - stdout-blocked: no stdout write waits longer than MaxUnreportedBlock
//     plus the time the guest spent suspended;
//   - stdout-lost: once the workload wrote everything and nothing waits,
//     every byte it wrote was delivered to hostd or dropped by init, which
//     warns (a device that loses bytes fails this); runs without resumes
//     or device resets;
//   - stdout-order: when init dropped nothing, stdout arrived in order,
//     without duplicates; runs without resumes or device resets;
//   - start-failed: every start sequence of hostd (the boot's and each
//     resume's) finished: none gave up;
//   - resume-slow: every resume started within MaxTimeToStarted;
//   - resume-grows: time-to-started did not rise over growthCycles resumes
//     in a row;
//   - socket-leak: the sockets a reset left in the guest's connected table
//     and their owners never closed do not rise over growthCycles resumes
//     in a row (a socket a reset caught idle, such as a log stream with
//     nothing more to write, is not yet a leak: its owner learns of the
//     reset on its next write; one more with every cycle is seed 003's
//     leak);
//   - connect-refused: every host connect to a guest port a program
//     listens on (the connect directive) got its connection;
//   - stream-connect, stream-corrupt, stream-reset, stream-stalled,
//     stream-lost: the stream directive's connection (streamOracle);
//   - device-invariant: the device reported no invariant violation.
func FailedOracle(r *Report) *Oracle {
	st := r.Stdout
	// The lab's programs keep virtual time while the guest is suspended, so
	// a write may wait out the suspensions too: they count on top.
	if bound := MaxUnreportedBlock + r.Suspended; st.LongestBlock > bound {
		return &Oracle{"stdout-blocked", fmt.Sprintf("a stdout write waited %s (bound %s, suspensions included); %d of %d bytes written, %d delivered, init warned %d times",
			st.LongestBlock, bound, st.Written, r.WorkloadTotal, st.Delivered, st.WriteTimeouts)}
	}
	// A transport reset (every resume) discards what the connections held,
	// as the virtio spec has the driver do on VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
	// (virtio v1.2, 5.10.6.6): no correct system accounts for those bytes,
	// so the byte oracles judge runs without resumes.
	resumed := len(r.Resumes) > 0 || r.DeviceResets > 0
	if !resumed && !st.Blocked && st.Written == r.WorkloadTotal && st.Delivered+st.DroppedByInit != st.Written {
		return &Oracle{"stdout-lost", fmt.Sprintf("written %d, delivered %d, dropped by init %d: %d bytes unaccounted for (the device dropped %d)",
			st.Written, st.Delivered, st.DroppedByInit, st.Written-st.Delivered-st.DroppedByInit, st.DroppedByDevice)}
	}
	if !resumed && st.DroppedByInit == 0 && st.OutOfOrderAt >= 0 {
		return &Oracle{"stdout-order", fmt.Sprintf("stdout out of order or duplicated at byte %d of %d delivered", st.OutOfOrderAt, st.Delivered)}
	}
	if len(r.StartFailures) > 0 {
		return &Oracle{"start-failed", fmt.Sprintf("hostd's start sequence gave up %d times, the first: %s", len(r.StartFailures), r.StartFailures[0])}
	}
	for i, v := range r.Resumes {
		if v > MaxTimeToStarted {
			return &Oracle{"resume-slow", fmt.Sprintf("resume %d started after %s (bound %s)", i+1, v, MaxTimeToStarted)}
		}
	}
	rising := 0
	for i := 1; i < len(r.Resumes); i++ {
		if r.Resumes[i] > r.Resumes[i-1] {
			rising++
		} else {
			rising = 0
		}
		if rising >= growthCycles {
			return &Oracle{"resume-grows", fmt.Sprintf("time-to-started rose over resumes %d to %d: %s", i+1-growthCycles, i+1, r.Resumes[i-growthCycles:i+1])}
		}
	}
	rising = 0
	for i := 1; i < len(r.LeakedByResume); i++ {
		l := r.LeakedByResume
		if l[i] > l[i-1] {
			rising++
		} else {
			rising = 0
		}
		if rising >= growthCycles {
			return &Oracle{"socket-leak", fmt.Sprintf("sockets a reset left in the guest's connected table, unclosed by their owners, rose with each of resumes %d to %d: %v",
				i+1-growthCycles, i+1, l[i-growthCycles:i+1])}
		}
	}
	if len(r.ConnectFailures) > 0 {
		return &Oracle{"connect-refused", fmt.Sprintf("%d host connects to a listening guest port failed, the first: %s", len(r.ConnectFailures), r.ConnectFailures[0])}
	}
	if o := streamOracle(r); o != nil {
		return o
	}
	if len(r.Violations) > 0 {
		return &Oracle{"device-invariant", fmt.Sprintf("%d violations, the first: %s", len(r.Violations), r.Violations[0])}
	}
	return nil
}

// streamOracle checks the stream directive's connection, which runs after
// every suspension and device reset of the scenario, so nothing may reset
// it (a stream in a scenario without one holds):
//
//   - stream-connect: the writer got its connection to the listening reader;
//   - stream-corrupt: every byte the reader got is the byte written at that
//     position (nothing lost, duplicated or reordered in between);
//   - stream-reset: neither side's reads or writes failed (a flow-controlled
//     stream makes a writer wait for a slow or absent reader; it does not
//     reset the connection);
//   - stream-stalled: the reader has not waited in a read over
//     MaxUnreportedBlock while written bytes did not come, or while the
//     writer waited for room (credit the reader's reads should have
//     returned);
//   - stream-lost: once the writer wrote everything and the reader read
//     the end of the stream, the reader got every byte written.
//
// A reader that never reads (unread) owes nothing but not resetting: its
// writer waits, as flow control has it.
func streamOracle(r *Report) *Oracle {
	st, total := r.Stream, r.StreamTotal
	if total == 0 {
		return nil
	}
	switch {
	case !st.Connected:
		return &Oracle{"stream-connect", "the stream's writer never connected: " + st.ConnectErr}
	case st.OutOfOrderAt >= 0:
		return &Oracle{"stream-corrupt", fmt.Sprintf("byte %d of the stream differs from the byte written there; %d written, %d delivered",
			st.OutOfOrderAt, st.Written, st.Delivered)}
	case st.WriterErr != "" || st.ReaderErr != "":
		return &Oracle{"stream-reset", fmt.Sprintf("the stream failed with neither side closing it: writer %q, reader %q; %d of %d bytes written, %d delivered",
			st.WriterErr, st.ReaderErr, st.Written, total, st.Delivered)}
	case st.ReaderWait > MaxUnreportedBlock && (st.Delivered < st.Written || st.Blocked):
		return &Oracle{"stream-stalled", fmt.Sprintf("the reader has waited %s in a read; %d of %d bytes written, %d delivered, the writer blocked %s",
			st.ReaderWait, st.Written, total, st.Delivered, st.LongestBlock)}
	case st.Ended && st.Written == total && st.Delivered != st.Written:
		return &Oracle{"stream-lost", fmt.Sprintf("the stream ended with %d of %d written bytes delivered", st.Delivered, st.Written)}
	}
	return nil
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
