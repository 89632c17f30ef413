package programs

import (
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
)

// Stdout is where the workload's stdout went: every byte written is
// delivered to hostd, dropped by init after a write timeout, or dropped by
// the device; and how long the workload waited to write it.
type Stdout struct {
	Written         int64 // by the workload into its pipe
	Delivered       int64 // to hostd's collector
	DroppedByInit   int64 // after write timeouts, with a warning
	DroppedByDevice int64 // RW payload the device lost (every connection's)
	OutOfOrderAt    int64 // first byte delivered out of order or twice, -1 if none
	WriteTimeouts   int   // init's warnings

	// LongestBlock is the longest a stdout write waited for room in the
	// pipe, counting a write still waiting.
	LongestBlock time.Duration
	Blocked      bool          // a write is waiting now
	BlockedSince time.Duration // since when, when Blocked
}

// Stdout accounts for the workload's stdout at the lab's current time.
func (s *System) Stdout() Stdout {
	out := Stdout{OutOfOrderAt: -1}
	if p := s.Workload(); p != nil {
		out.Written = p.Written()
	}
	s.Hostd.Collector.Inspect("stdout", func(st hostd.Stream) {
		out.Delivered = int64(st.Bytes)
		out.OutOfOrderAt = labenv.CheckPattern(st.Data)
	})
	is := s.Init.Stats()
	out.DroppedByInit = int64(is.LogBytesDropped["stdout"])
	out.WriteTimeouts = is.WriteTimeouts
	_ = s.L.Do(func(w *emu.World) error { out.DroppedByDevice = int64(w.Dev.Stats().DroppedRWBytes); return nil })
	now := s.L.Now()
	for _, p := range s.L.Pipes() {
		out.LongestBlock = max(out.LongestBlock, p.MaxBlock)
		if p.Blocked {
			out.Blocked, out.BlockedSince = true, p.Since
			out.LongestBlock = max(out.LongestBlock, now-p.Since)
		}
	}
	return out
}
