package programs

import (
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/internal/pattern"
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

// orderCheck finds the first byte of a growing stream that is not the
// writer's pattern, checking each byte once: the collector only appends
// to a stream's Data, and a scenario accounts for its stdout several
// times (each report, each verdict, the end), megabytes each time.
type orderCheck struct {
	mu      sync.Mutex
	checked int   // Data[:checked] has been checked
	at      int64 // the first wrong byte found, -1 if none
}

// check returns labenv.CheckPattern(data) for data that extends every
// earlier data it was given.
func (c *orderCheck) check(data []byte) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked == 0 {
		c.at = -1
	}
	if c.at >= 0 || len(data) <= c.checked {
		return c.at
	}
	// The writer's pattern from offset checked on (labenv.CheckPattern
	// checks it from offset 0).
	if i := pattern.Mismatch(data[c.checked:], uint64(c.checked)); i >= 0 {
		c.at = int64(c.checked) + i
	}
	c.checked = len(data)
	return c.at
}

// Stdout accounts for the workload's stdout at the lab's current time.
func (s *System) Stdout() Stdout {
	out := Stdout{OutOfOrderAt: -1}
	if p := s.Workload(); p != nil {
		out.Written = p.Written()
	}
	s.Hostd.Collector.Inspect("stdout", func(st hostd.Stream) {
		out.Delivered = int64(st.Bytes)
		out.OutOfOrderAt = s.stdoutOrder.check(st.Data)
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
