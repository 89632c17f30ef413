package fuzz

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/trace"
	"github.com/vsocklab/vsocklab/vsockport"
)

// World is one configuration of the whole system, as CheckWorld's input
// chooses it: device and kernel profiles, init's and hostd's options, the
// workload, an injected fault, suspend/resume cycles, a device reset, host
// connects to init's API and a byte stream in either direction with its
// reader's behaviour. It renders as a
// trace file (Trace), so that a failing configuration is at once a replay
// script: `vsocklab replay` runs it to the same verdict.
type World struct {
	Device, Kernel string
	Seed           uint64

	NoWriteTimeout    bool
	WriteTimeout      time.Duration // 0: init's default
	KeepResetSessions bool
	ReadChunk         int           // 0: init's default
	MetricsInterval   time.Duration // 0: init's default
	SessionFirst      bool

	Total, Size int // the writer workload: Total bytes in writes of Size
	Every       time.Duration

	DropTX, DropMinLen int // fault drop-tx n=DropTX min-len=DropMinLen; 0: none

	Cycles       int // suspend/resume cycles after the boot's start sequence
	Dwell, Pause time.Duration

	// DeviceReset: the guest resets the device after the cycles (only
	// where the device profile implements a reset: device.Profile.ResetInPlace).
	DeviceReset bool
	// Probes: host connects to init's API port after the cycles and the
	// reset, one after the other, as a health checker makes them.
	Probes int

	// The stream, started after the cycles, the reset and the probes (so
	// that nothing of the scenario resets it): none when StreamTotal is 0.
	StreamFromGuest         bool // else the host writes to a guest reader
	StreamTotal, StreamSize int
	StreamEvery             time.Duration
	ReadSize                int           // 0: the stream directive's default
	ReadEvery               time.Duration // 0: as the data comes
	Unread                  bool          // the reader never reads
	Rcvlowat                int           // SO_RCVLOWAT of a guest reader; 0: none
}

// The stream's ports: the guest listens on streamGuestPort for a host
// writer, the host on streamHostPort for a guest writer; init's API and
// log ports keep their defaults, apart from these.
const (
	streamGuestPort = 5000
	streamHostPort  = 6000
	// maxStreamWrites bounds a stream's writes (its total is cut to this
	// many writes of its size), so that a paced stream of small writes
	// stays within a few minutes of virtual time.
	maxStreamWrites = 2048
	// startTimeout bounds the wait for each of hostd's start sequences, at
	// twice the bound of the resume-slow oracle
	// (replay.MaxTimeToStarted): one that takes longer has failed
	// (start-failed), and a world whose device rejects every buffer the
	// guest posts does not spin through hostd's 60 s of retries.
	startTimeout = 2 * replay.MaxTimeToStarted
)

// The choices DecodeWorld picks from.
var (
	worldTotals      = []int{4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20}
	worldSizes       = []int{512, 1 << 10, 4 << 10, 16 << 10, 32 << 10, 32768 + 4096, 64 << 10, 100 << 10}
	worldTimeouts    = []time.Duration{0, 500 * time.Millisecond, time.Second, 3 * time.Second}
	worldReadChunks  = []int{0, 1 << 10, 4 << 10, 16 << 10}
	worldMetrics     = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}
	worldDropMinLens = []int{1, 4096, 32768, 65536}
	worldDevices     = device.Profiles()
	worldKernels     = guest.Profiles()

	streamTotals    = []int{4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 768 << 10, 1 << 20}
	streamSizes     = []int{200, 512, 1 << 10, 4 << 10, 16 << 10, 32768 + 4096, 64 << 10, 128 << 10}
	streamEverys    = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	streamReadSizes = []int{0, 1 << 10, 4 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10}
	// The last read interval, -1, is a reader that never reads.
	streamReadEverys = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, 0, time.Millisecond, 10 * time.Millisecond, -1}
	streamRcvlowats  = []int{0, 4 << 10, 64 << 10, 256 << 10}
)

// Choices is CheckWorld's input: one byte per choice, in the order of the
// Choice constants. One byte each, because Go's mutator changes a fuzzed
// integer by adding or subtracting 1 to 100 (Go's src/internal/fuzz/mutator.go,
// mutateUInt): in a uint64 whose bits 16 and up chose init's options,
// those options never changed (measured: 462 execs in 30 s from the seeds
// found nothing a blind search finds in seconds). A byte per choice puts
// every choice within the mutator's reach.
type Choices [NumChoices]byte

// The choices, in input order.
const (
	ChoiceDevice      = iota // device profile (device.Profiles order, modulo)
	ChoiceKernel             // kernel among those the device takes, modulo
	ChoiceInit               // bit 0 no write timeout, 1-2 write timeout, 3 keep reset sessions, 4-5 read chunk, 6-7 metrics interval
	ChoiceHostd              // bit 0 session first
	ChoiceSeed               // the world's seed, minus one
	ChoiceTotal              // bits 0-2: the writer's total bytes
	ChoiceSize               // bits 0-2: its write size
	ChoiceEvery              // bits 0-5: milliseconds between writes
	ChoiceFault              // 240 and up: drop-tx, n from bits 0-1, min-len from bits 2-3
	ChoiceCycles             // bits 0-2: suspend/resume cycles after boot, where a VMM can snapshot the device
	ChoiceDwell              // bits 0-4: dwell before each, x 100 ms
	ChoicePause              // bits 0-4: pause, x 100 ms, plus 100 ms
	ChoiceReset              // bit 0: a device reset after the cycles, where the device implements one
	ChoiceProbes             // bits 0-1: host connects to init's API after the cycles and the reset
	ChoiceStream             // bits 0-1: 1 the host writes a stream to a guest reader, 2 the guest to a host reader; else none
	ChoiceStreamTotal        // bits 0-2: the stream's total bytes
	ChoiceStreamSize         // bits 0-2: its write size
	ChoiceStreamEvery        // bits 0-1: the interval between its writes
	ChoiceReadSize           // bits 0-2: the reader's read size
	ChoiceReadEvery          // bits 0-2: the reader's read interval, or a reader that never reads
	ChoiceRcvlowat           // bits 0-1: SO_RCVLOWAT of a guest reader
	NumChoices
)

// bits takes n bits from b at shift.
func bits(b byte, shift, n uint) int { return int(b >> shift & (1<<n - 1)) }

// DecodeWorld turns the fuzzer's choices into a configuration. Every input
// decodes to a valid configuration. Every kernel pairs with every device,
// those whose receive buffers the device rejects (emu.RXCompatible false)
// included: such a pairing is a configuration a user can run, and the
// oracles judge what becomes of it.
func DecodeWorld(c Choices) World {
	var w World
	dev := worldDevices[int(c[ChoiceDevice])%len(worldDevices)]
	w.Device = dev.Name
	w.Kernel = worldKernels[int(c[ChoiceKernel])%len(worldKernels)].Name
	in := c[ChoiceInit]
	w.NoWriteTimeout = bits(in, 0, 1) == 1
	if !w.NoWriteTimeout {
		w.WriteTimeout = worldTimeouts[bits(in, 1, 2)]
	}
	w.KeepResetSessions = bits(in, 3, 1) == 1
	w.ReadChunk = worldReadChunks[bits(in, 4, 2)]
	w.MetricsInterval = worldMetrics[bits(in, 6, 2)]
	w.SessionFirst = bits(c[ChoiceHostd], 0, 1) == 1
	w.Seed = 1 + uint64(c[ChoiceSeed])

	w.Total = worldTotals[bits(c[ChoiceTotal], 0, 3)]
	w.Size = min(worldSizes[bits(c[ChoiceSize], 0, 3)], w.Total)
	w.Every = time.Duration(bits(c[ChoiceEvery], 0, 6)) * time.Millisecond
	if f := c[ChoiceFault]; f >= 240 {
		w.DropTX = 1 + bits(f, 0, 2)
		w.DropMinLen = worldDropMinLens[bits(f, 2, 2)]
	}

	if !dev.NoSnapshot {
		w.Cycles = bits(c[ChoiceCycles], 0, 3)
	}
	w.Dwell = time.Duration(bits(c[ChoiceDwell], 0, 5)) * 100 * time.Millisecond
	w.Pause = time.Duration(1+bits(c[ChoicePause], 0, 5)) * 100 * time.Millisecond

	w.DeviceReset = bits(c[ChoiceReset], 0, 1) == 1 && dev.ResetInPlace
	w.Probes = bits(c[ChoiceProbes], 0, 2)

	if dir := bits(c[ChoiceStream], 0, 2); dir == 1 || dir == 2 {
		w.StreamFromGuest = dir == 2
		w.StreamSize = streamSizes[bits(c[ChoiceStreamSize], 0, 3)]
		w.StreamTotal = min(streamTotals[bits(c[ChoiceStreamTotal], 0, 3)], w.StreamSize*maxStreamWrites)
		w.StreamSize = min(w.StreamSize, w.StreamTotal)
		w.StreamEvery = streamEverys[bits(c[ChoiceStreamEvery], 0, 2)]
		if every := streamReadEverys[bits(c[ChoiceReadEvery], 0, 3)]; every < 0 {
			w.Unread = true
		} else {
			w.ReadEvery = every
			w.ReadSize = streamReadSizes[bits(c[ChoiceReadSize], 0, 3)]
			if !w.StreamFromGuest {
				w.Rcvlowat = streamRcvlowats[bits(c[ChoiceRcvlowat], 0, 2)]
			}
		}
	}
	return w
}

// String names the configuration in one line, for failure messages.
func (w World) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device %s, kernel %s, seed %d; init", w.Device, w.Kernel, w.Seed)
	b.WriteString(strings.TrimPrefix(w.initArgs(), "init"))
	fmt.Fprintf(&b, "; hostd%s; writer total=%d size=%d every=%s", strings.TrimPrefix(w.hostdArgs(), "hostd"), w.Total, w.Size, w.Every)
	if w.DropTX > 0 {
		fmt.Fprintf(&b, "; fault drop-tx n=%d min-len=%d", w.DropTX, w.DropMinLen)
	}
	if w.Cycles > 0 {
		fmt.Fprintf(&b, "; %d suspend/resume cycles, dwell %s, pause %s", w.Cycles, w.Dwell, w.Pause)
	}
	if w.DeviceReset {
		b.WriteString("; device reset")
	}
	if w.Probes > 0 {
		fmt.Fprintf(&b, "; %d connects to init's API", w.Probes)
	}
	if w.StreamTotal > 0 {
		b.WriteString("; " + w.streamArgs())
	}
	return b.String()
}

func (w World) streamArgs() string {
	from, port := "host", streamGuestPort
	if w.StreamFromGuest {
		from, port = "guest", streamHostPort
	}
	s := fmt.Sprintf("stream from=%s port=%d total=%d size=%d", from, port, w.StreamTotal, w.StreamSize)
	if w.StreamEvery > 0 {
		s += " every=" + w.StreamEvery.String()
	}
	if w.Unread {
		return s + " unread"
	}
	if w.ReadSize > 0 {
		s += fmt.Sprintf(" read=%d", w.ReadSize)
	}
	if w.ReadEvery > 0 {
		s += " read-every=" + w.ReadEvery.String()
	}
	if w.Rcvlowat > 0 {
		s += fmt.Sprintf(" rcvlowat=%d", w.Rcvlowat)
	}
	return s
}

func (w World) initArgs() string {
	s := "init"
	if w.NoWriteTimeout {
		s += " no-write-timeout"
	} else if w.WriteTimeout > 0 {
		s += " write-timeout=" + w.WriteTimeout.String()
	}
	if w.KeepResetSessions {
		s += " keep-reset-sessions"
	}
	if w.ReadChunk > 0 {
		s += fmt.Sprintf(" read-chunk=%d", w.ReadChunk)
	}
	if w.MetricsInterval > 0 {
		s += " metrics-interval=" + w.MetricsInterval.String()
	}
	return s
}

func (w World) hostdArgs() string {
	if w.SessionFirst {
		return "hostd session-first"
	}
	return "hostd"
}

// span is how long the workload writes, plus 30 s for the last bytes to
// drain (or to show that they never will).
func (w World) span() time.Duration {
	writes := (w.Total + w.Size - 1) / w.Size
	return time.Duration(writes)*w.Every + 30*time.Second
}

// streamSpan is how long the stream writes and its reader reads at its
// pace (the stream directive's default read size is 64 KiB), plus 30 s.
func (w World) streamSpan() time.Duration {
	if w.StreamTotal == 0 {
		return 0
	}
	writes := (w.StreamTotal + w.StreamSize - 1) / w.StreamSize
	read := w.ReadSize
	if read == 0 {
		read = 64 << 10
	}
	reads := (w.StreamTotal + read - 1) / read
	return time.Duration(writes)*w.StreamEvery + time.Duration(reads)*w.ReadEvery + 30*time.Second
}

// Trace renders the configuration as a trace file whose last directive is
// "verdict oracles", without outputs (replay fills them in).
func (w World) Trace() string {
	var b strings.Builder
	directive := func(lines ...string) {
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n----\n\n")
	}
	fmt.Fprintf(&b, "# A configuration the fuzzer chose (fuzz.DecodeWorld): %s.\n\n", w)
	directive(fmt.Sprintf("world name=fuzzworld device=%s kernel=%s seed=%d", w.Device, w.Kernel, w.Seed))
	directive(w.hostdArgs())
	directive(w.initArgs(), fmt.Sprintf("writer total=%d size=%d every=%s", w.Total, w.Size, w.Every))
	if w.DropTX > 0 {
		directive(fmt.Sprintf("fault drop-tx n=%d min-len=%d", w.DropTX, w.DropMinLen))
	}
	directive("boot")
	directive("wait-started timeout=" + startTimeout.String())
	if w.Cycles > 0 {
		directive(fmt.Sprintf("cycles n=%d dwell=%s pause=%s timeout=%s", w.Cycles, w.Dwell, w.Pause, startTimeout))
	}
	if w.DeviceReset {
		directive("device-reset")
		directive("run 1s")
	}
	for range w.Probes {
		directive(fmt.Sprintf("connect port=%d", vsockport.API))
	}
	if w.StreamTotal > 0 {
		directive(w.streamArgs())
	}
	directive("run " + max(w.span(), w.streamSpan()).String())
	directive("report")
	directive("verdict oracles")
	return b.String()
}

// Finding is a configuration for which an oracle did not hold.
type Finding struct {
	Oracle string // replay.FailedOracle's name
	Why    string
	World  World
	Trace  string // the trace file with its outputs: it replays to this verdict
}

func (f *Finding) Error() string {
	return fmt.Sprintf("oracle %s failed: %s\nconfiguration: %s\nclass: %s", f.Oracle, f.Why, f.World, f.Class())
}

// CheckWorld builds the system DecodeWorld(c) describes, runs it as
// a trace through the replay engine and checks the oracles that hold for
// any correct system (replay.FailedOracle). It returns a *Finding when one
// did not hold; any other error is a bug of the lab or the trace.
//
// The run stops at the first directive that fails
// (replay.Options.StopAtError): a start sequence that never finished
// decides the finding (start-failed) whatever the directives after it
// would do, and a world whose device rejects every receive buffer spends
// the most CPU of any in those directives. The finding's trace is then
// the part that ran, which replays to the same outputs.
func CheckWorld(r lab.Runner, c Choices) error {
	w := DecodeWorld(c)
	f, err := replay.Parse("fuzzworld.trace", w.Trace())
	if err != nil {
		return fmt.Errorf("configuration %s renders an invalid trace: %v", w, err)
	}
	// No log hash: the verdict and the outputs need none, and the
	// finding's trace, replayed, hashes its own log.
	res := replay.RunFile(recycling{r}, f, replay.Options{NoLogHash: true, StopAtError: true})
	return judgeWorld(w, res)
}

// judgeWorld is CheckWorld's verdict on a replay of w's trace with
// StopAtError, or of a finding's trace the same way (which judges the
// same). A resume's start sequence that never finished (cycles) counts as
// start-failed as the boot's does, after cycles that did: the earlier
// check, which read the first output starting with "error:", missed it
// behind the cycles' lines (none of 2,000 random configurations had one).
func judgeWorld(w World, res *replay.Result) error {
	sc := res.Scenarios[0]
	var stop *replay.DirectiveError
	if errors.As(sc.Err, &stop) {
		// The first directive that failed: the trace that ran ends there.
		ran := &trace.File{Name: res.File.Name, Directives: res.File.Directives[:stop.Index+1]}
		if cmd := stop.Directive.Cmd; cmd == "wait-started" || cmd == "cycles" {
			// hostd's start sequence did not finish in time: a finding, and
			// the trace shows the error as that directive's output.
			ran.Trailing = fmt.Sprintf("\n# CheckWorld stopped here: %s (start-failed) decides the verdict whatever\n# the directives after it would do (replay.Options.StopAtError).\n", cmd)
			return &Finding{Oracle: "start-failed", Why: cmd + ": error: " + stop.Err.Error(), World: w, Trace: ran.Format(res.Outputs)}
		}
		return fmt.Errorf("configuration %s: %s: error: %v", w, stop.Directive.Cmd, stop.Err)
	}
	if sc.Err != nil {
		return fmt.Errorf("configuration %s: %v", w, sc.Err)
	}
	if o := replay.FailedOracle(&sc.Report); o != nil {
		return &Finding{Oracle: o.Name, Why: o.Why, World: w, Trace: res.Text()}
	}
	return nil
}

// recycling runs worlds on recycled guest memory
// (lab.Config.RecycleMemory): CheckWorld reads nothing of a world's memory
// after its run, and a fuzz worker runs one world after another.
type recycling struct{ lab.Runner }

func (r recycling) Run(cfg lab.Config, scenario func(l *lab.Lab)) *lab.Result {
	cfg.RecycleMemory = true
	return r.Runner.Run(cfg, scenario)
}

// WriteFinding writes a finding's trace to dir as <oracle>-<hash>.trace
// and returns the path: a file for testdata/incidents/.
func WriteFinding(dir string, f *Finding) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var h uint64 = 14695981039346656037 // FNV-1a over the configuration
	for _, c := range []byte(f.World.String()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%016x.trace", f.Oracle, h))
	return path, os.WriteFile(path, []byte(f.Trace), 0o644)
}

// Class names a finding's class by what failed and where: the oracle, the
// device and kernel profiles, and the parts of the configuration that are
// known defects, injected faults or events rather than tunings (init
// without its write timeout, init keeping reset sessions, a drop-tx fault,
// a device reset) and, for the stream oracles, the stream's direction.
// Findings of one class share a cause; a triage reads the trace to tell
// more. No class names an incident: a triage maps classes to incidents.
func (f *Finding) Class() string {
	w := f.World
	c := f.Oracle + "/" + w.Device + "/" + w.Kernel
	if w.NoWriteTimeout {
		c += "+no-write-timeout"
	}
	if w.KeepResetSessions {
		c += "+keep-reset-sessions"
	}
	if w.DropTX > 0 {
		c += "+drop-tx"
	}
	if w.DeviceReset {
		c += "+device-reset"
	}
	if strings.HasPrefix(f.Oracle, "stream-") {
		if w.StreamFromGuest {
			c += "+from-guest"
		} else {
			c += "+from-host"
		}
	}
	return c
}

// LogFinding appends a line "UNIXNANO CLASS ORACLE" to the findings log at
// path: a campaign's record of when each class showed (the fuzzer's
// workers append to one file; each line is one write).
func LogFinding(path string, f *Finding) error {
	fd, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(fd, "%d %s %s\n", time.Now().UnixNano(), f.Class(), f.Oracle)
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return err
}
