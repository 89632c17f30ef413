package fuzz

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/replay"
)

// World is one configuration of the whole system, as CheckWorld's input
// chooses it: device and kernel profiles, init's and hostd's options, the
// workload, an injected fault and suspend/resume cycles. It renders as a
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
}

// The choices DecodeWorld picks from.
var (
	worldTotals      = []int{4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20}
	worldSizes       = []int{512, 1 << 10, 4 << 10, 16 << 10, 32 << 10, 32768 + 4096, 64 << 10, 100 << 10}
	worldTimeouts    = []time.Duration{0, 500 * time.Millisecond, time.Second, 3 * time.Second}
	worldReadChunks  = []int{0, 1 << 10, 4 << 10, 16 << 10}
	worldMetrics     = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}
	worldDropMinLens = []int{1, 4096, 32768, 65536}
	worldDevices     = device.Profiles()
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
	ChoiceDevice = iota // device profile (device.Profiles order, modulo)
	ChoiceKernel        // kernel among those the device takes, modulo
	ChoiceInit          // bit 0 no write timeout, 1-2 write timeout, 3 keep reset sessions, 4-5 read chunk, 6-7 metrics interval
	ChoiceHostd         // bit 0 session first
	ChoiceSeed          // the world's seed, minus one
	ChoiceTotal         // bits 0-2: the writer's total bytes
	ChoiceSize          // bits 0-2: its write size
	ChoiceEvery         // bits 0-5: milliseconds between writes
	ChoiceFault         // 240 and up: drop-tx, n from bits 0-1, min-len from bits 2-3
	ChoiceCycles        // bits 0-2: suspend/resume cycles after boot
	ChoiceDwell         // bits 0-4: dwell before each, x 100 ms
	ChoicePause         // bits 0-4: pause, x 100 ms, plus 100 ms
	NumChoices
)

// bits takes n bits from b at shift.
func bits(b byte, shift, n uint) int { return int(b >> shift & (1<<n - 1)) }

// DecodeWorld turns the fuzzer's choices into a configuration. Every input
// decodes to a valid configuration: the kernel is picked among those whose
// receive buffers the device takes (emu.RXCompatible), so no input is
// wasted on a world that cannot be built.
func DecodeWorld(c Choices) World {
	var w World
	dev := worldDevices[int(c[ChoiceDevice])%len(worldDevices)]
	var kernels []string
	for _, k := range guest.Profiles() {
		if emu.RXCompatible(dev, k) {
			kernels = append(kernels, k.Name)
		}
	}
	w.Device = dev.Name
	if len(kernels) > 0 {
		w.Kernel = kernels[int(c[ChoiceKernel])%len(kernels)]
	}
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

	w.Cycles = bits(c[ChoiceCycles], 0, 3)
	w.Dwell = time.Duration(bits(c[ChoiceDwell], 0, 5)) * 100 * time.Millisecond
	w.Pause = time.Duration(1+bits(c[ChoicePause], 0, 5)) * 100 * time.Millisecond
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
	return b.String()
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
	directive("wait-started")
	if w.Cycles > 0 {
		directive(fmt.Sprintf("cycles n=%d dwell=%s pause=%s", w.Cycles, w.Dwell, w.Pause))
	}
	directive("run " + w.span().String())
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
func CheckWorld(r lab.Runner, c Choices) error {
	w := DecodeWorld(c)
	if w.Kernel == "" {
		return nil // no kernel whose buffers this device takes
	}
	f, err := replay.Parse("fuzzworld.trace", w.Trace())
	if err != nil {
		return fmt.Errorf("configuration %s renders an invalid trace: %v", w, err)
	}
	// No log hash: the verdict and the outputs need none, and the
	// finding's trace, replayed, hashes its own log.
	res := replay.RunFile(recycling{r}, f, replay.Options{NoLogHash: true})
	for i, d := range f.Directives {
		out := res.Outputs[i]
		if !strings.HasPrefix(out, "error:") {
			continue
		}
		if d.Cmd == "wait-started" || d.Cmd == "cycles" {
			// hostd's start sequence never finished: a finding, and the
			// trace shows the error as that directive's output.
			return &Finding{Oracle: "start-sequence", Why: d.Cmd + ": " + strings.TrimSpace(out), World: w, Trace: res.Text()}
		}
		return fmt.Errorf("configuration %s: %s: %s", w, d.Cmd, strings.TrimSpace(out))
	}
	rep := &res.Scenarios[0].Report
	if o := replay.FailedOracle(rep); o != nil {
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
// device profile, and the parts of the configuration that are known
// defects or injected faults rather than choices (init without its write
// timeout, init keeping reset sessions, a drop-tx fault). Findings of one
// class share a cause; a triage reads the trace to tell more.
func (f *Finding) Class() string {
	c := f.Oracle + "/" + f.World.Device
	if f.World.NoWriteTimeout {
		c += "+no-write-timeout"
	}
	if f.World.KeepResetSessions {
		c += "+keep-reset-sessions"
	}
	if f.World.DropTX > 0 {
		c += "+drop-tx"
	}
	return c
}
