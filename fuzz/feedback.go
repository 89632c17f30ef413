package fuzz

import (
	"slices"
	"time"

	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

// feedback turns what a run measured into code coverage, the one signal
// Go's fuzzer keeps inputs for: each quantity the oracles judge (how long
// a write waited, how many resumes in a row grew, what share of a stream
// arrived, resets and credit messages on the wire) is cut into buckets,
// and each bucket is a branch of its own switch. An input that brings a
// quantity into a bucket no input reached before is new coverage and
// joins the corpus, so the search climbs towards the oracles' bounds
// (stdout blocked 4 s, then 5 s; two growing resumes, then three) instead
// of waiting for a blind hit. No bucket names a device, kernel or
// incident. The switches are written out one per quantity (a shared
// helper would share its branches), by hand, in the order below.
//
// It returns the number of buckets above zero, so that the work is not
// dead code to the compiler.
func feedback(rep *replay.Report) int {
	hot := 0
	// stdout's longest write block, in steps of a second
	switch min(int(rep.Stdout.LongestBlock/time.Second), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// init's write timeouts
	switch min(level(rep.Stdout.WriteTimeouts), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// stdout bytes neither delivered nor dropped by init
	switch min(level(rep.Stdout.Written-rep.Stdout.Delivered-rep.Stdout.DroppedByInit), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// resumes in a row whose time-to-started rose
	switch min(risingRun(rep.Resumes), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// the longest time-to-started, in steps of 500 ms
	switch min(int(slices.Max(append([]time.Duration{0}, rep.Resumes...))/(500*time.Millisecond)), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// resumes in a row whose leaked sockets rose
	switch min(risingRun(rep.LeakedByResume), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// sockets a reset left unclosed
	switch min(level(rep.LeakedSockets), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// failed host connects
	switch min(len(rep.ConnectFailures), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// the stream's longest write block, in steps of a second
	switch min(int(rep.Stream.LongestBlock/time.Second), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// the stream reader's current wait, in steps of a second
	switch min(int(rep.Stream.ReaderWait/time.Second), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// the stream's delivered bytes, in eighths of those written
	switch min(eighths(rep.Stream.Delivered, rep.Stream.Written), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// the stream's written bytes, in eighths of its total
	switch min(eighths(rep.Stream.Written, rep.StreamTotal), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// packets answered with a reset, guest to host
	switch min(level(rep.Counters.GuestToHost[virtio.OpRST.String()]), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// packets answered with a reset, host to guest
	switch min(level(rep.Counters.HostToGuest[virtio.OpRST.String()]), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// credit requests, guest to host
	switch min(level(rep.Counters.GuestToHost[virtio.OpCreditRequest.String()]), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// credit updates, guest to host
	switch min(level(rep.Counters.GuestToHost[virtio.OpCreditUpdate.String()]), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// credit updates, host to guest
	switch min(level(rep.Counters.HostToGuest[virtio.OpCreditUpdate.String()]), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	// device invariant violations
	switch min(level(len(rep.Violations)), 7) {
	case 0:
	case 1:
		hot += 1
	case 2:
		hot += 2
	case 3:
		hot += 3
	case 4:
		hot += 4
	case 5:
		hot += 5
	case 6:
		hot += 6
	case 7:
		hot += 7
	}
	return hot
}

// level is the bucket of a count: 0, 1, 2-3, 4-7, 8-15, 16-63, 64-255, 256+.
func level[N int | int64 | uint64](n N) int {
	switch {
	case n <= 0:
		return 0
	case n == 1:
		return 1
	case n < 4:
		return 2
	case n < 8:
		return 3
	case n < 16:
		return 4
	case n < 64:
		return 5
	case n < 256:
		return 6
	}
	return 7
}

// risingRun is the longest run of rises in a row in s.
func risingRun[T int | time.Duration](s []T) int {
	run, best := 0, 0
	for i := 1; i < len(s); i++ {
		if s[i] > s[i-1] {
			run++
		} else {
			run = 0
		}
		best = max(best, run)
	}
	return best
}

// eighths is part/whole in eighths, 0 to 8; 0 when whole is 0.
func eighths(part, whole int64) int {
	if whole <= 0 {
		return 0
	}
	return int(min(8, max(0, part*8/whole)))
}
