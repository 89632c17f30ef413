package replay

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/trace"
)

// argKind says what an argument takes.
type argKind uint8

const (
	flagArg  argKind = iota // "keep-reset-sessions"
	value                   // "seed=3"
	list                    // "kinds=(packet, conn)" or "kinds=packet"
	duration                // "dwell=5s": from 0 to the scenario's virtual-time limit
	number                  // "n=50": an integer in [min, max]
)

// arg is what one argument of a command takes.
type arg struct {
	kind     argKind
	min, max uint64 // numbers: the accepted range
	required bool
}

var (
	flagA  = arg{kind: flagArg}
	valueA = arg{kind: value}
	listA  = arg{kind: list}
	durA   = arg{kind: duration}
	portA  = arg{kind: number, max: math.MaxUint32}
)

func numA(lo, hi uint64) arg { return arg{kind: number, min: lo, max: hi} }

func required(a arg) arg { a.required = true; return a }

// Bounds of counts that no story needs more of; beyond them a trace is
// more likely a mistake (or an attack on the machine replaying it) than an
// incident.
const (
	maxCycles      = 10_000
	maxLines       = 1_000_000 // timeline and sockets limits
	maxReadChunk   = 16 << 20
	maxDirectives  = 100_000 // in one file
	maxScenarios   = 1_000   // in one file
	maxCycleNumber = maxCycles
)

// command describes one trace command.
type command struct {
	args       map[string]arg
	positional string // name of a single positional argument ("" for none)
	input      string // what the input lines are, "" when none are taken
	check      func(d *trace.Directive) error
	run        func(sr *scenarioRun, d *trace.Directive) (string, error)
}

var commands = map[string]command{
	"world": {
		args:  map[string]arg{"name": valueA, "device": valueA, "kernel": valueA, "seed": numA(0, math.MaxUint64), "cid": numA(3, 0xfffffffe)},
		check: checkWorld,
		run:   (*scenarioRun).cmdWorld,
	},
	"hostd": {
		args: map[string]arg{"session-first": flagA, "status-only": flagA, "backoff-initial": durA, "backoff-max": durA,
			"give-up": durA, "api-port": portA, "log-port": portA, "attempt-timeout": durA},
		check: checkHostd,
		run:   (*scenarioRun).cmdHostd,
	},
	"init": {
		args: map[string]arg{"no-write-timeout": flagA, "write-timeout": durA, "keep-reset-sessions": flagA,
			"api-port": portA, "log-port": portA, "metrics-interval": durA, "read-chunk": numA(0, maxReadChunk)},
		input: "the workload, one line",
		check: checkInit,
		run:   (*scenarioRun).cmdInit,
	},
	"boot":         {run: (*scenarioRun).cmdBoot},
	"run":          {positional: "duration", check: checkRun, run: (*scenarioRun).cmdRun},
	"suspend":      {run: (*scenarioRun).cmdSuspend},
	"device-reset": {run: (*scenarioRun).cmdDeviceReset},
	"resume":       {run: (*scenarioRun).cmdResume},
	"wait-started": {
		args: map[string]arg{"cycle": numA(0, maxCycleNumber), "timeout": durA},
		run:  (*scenarioRun).cmdWaitStarted,
	},
	"cycles": {
		args: map[string]arg{"n": numA(1, maxCycles), "dwell": durA, "pause": durA, "timeout": durA},
		run:  (*scenarioRun).cmdCycles,
	},
	"connect": {
		args:  map[string]arg{"port": required(portA), "name": valueA, "timeout": durA},
		check: checkConnName,
		run:   (*scenarioRun).cmdConnect,
	},
	"send": {
		args:  map[string]arg{"name": required(valueA), "crlf": flagA, "size": valueA, "timeout": durA},
		input: "the lines to send",
		check: checkSend,
		run:   (*scenarioRun).cmdSend,
	},
	"recv": {
		args:  map[string]arg{"name": required(valueA), "max": valueA, "timeout": durA},
		check: checkRecv,
		run:   (*scenarioRun).cmdRecv,
	},
	"close": {
		args:  map[string]arg{"name": required(valueA), "write": flagA},
		check: checkConnName,
		run:   (*scenarioRun).cmdClose,
	},
	"stream": {
		args: map[string]arg{"from": valueA, "port": portA, "total": valueA, "size": valueA, "every": durA,
			"read": valueA, "read-every": durA, "rcvlowat": valueA, "unread": flagA},
		check: checkStream,
		run:   (*scenarioRun).cmdStream,
	},
	"fault": {
		positional: "drop-tx",
		args:       map[string]arg{"n": numA(1, 1<<31), "min-len": numA(0, math.MaxUint32)},
		check:      checkFault,
		run:        (*scenarioRun).cmdFault,
	},
	"timeline": {
		args:  map[string]arg{"kinds": listA, "comp": listA, "grep": valueA, "all": flagA, "limit": numA(0, maxLines)},
		check: checkTimeline,
		run:   (*scenarioRun).cmdTimeline,
	},
	"sockets":  {args: map[string]arg{"limit": numA(0, maxLines)}, run: (*scenarioRun).cmdSockets},
	"counters": {run: (*scenarioRun).cmdCounters},
	"report":   {run: (*scenarioRun).cmdReport},
	"verdict":  {positional: "wedge|resume|stream|oracles", check: checkVerdict, run: (*scenarioRun).cmdVerdict},
}

// checkArgs applies a command's argument table and returns every problem
// it finds. maxDur bounds durations (the scenario's virtual-time limit; 0:
// none).
func checkArgs(d *trace.Directive, c command, maxDur time.Duration) []error {
	var errs []error
	args := d.Args
	if c.positional != "" {
		if len(args) == 0 || len(args[0].Vals) != 0 {
			return append(errs, d.Errorf("%s: expected a %s first", d.Cmd, c.positional))
		}
		args = args[1:]
	}
	seen := map[string]bool{}
	for _, a := range args {
		spec, ok := c.args[a.Key]
		if !ok {
			if len(c.args) == 0 {
				errs = append(errs, d.Errorf("%s takes no arguments, got %q", d.Cmd, a.Key))
				continue
			}
			known := slices.Sorted(maps.Keys(c.args))
			errs = append(errs, d.Errorf("%s: unknown argument %q (known: %s)", d.Cmd, a.Key, strings.Join(known, ", ")))
			continue
		}
		if seen[a.Key] {
			errs = append(errs, d.Errorf("%s: %s given twice", d.Cmd, a.Key))
			continue
		}
		seen[a.Key] = true
		if err := checkArg(d, a, spec, maxDur); err != nil {
			errs = append(errs, err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(c.args)) {
		if c.args[key].required && !seen[key] {
			errs = append(errs, d.Errorf("%s: %s=... is required", d.Cmd, key))
		}
	}
	if c.input == "" && len(d.Input) > 0 {
		errs = append(errs, d.Errorf("%s takes no input lines, got %q", d.Cmd, d.Input[0]))
	}
	return errs
}

func checkArg(d *trace.Directive, a trace.Arg, spec arg, maxDur time.Duration) error {
	switch spec.kind {
	case flagArg:
		if len(a.Vals) != 0 {
			return d.Errorf("%s: %s is a flag and takes no value", d.Cmd, a.Key)
		}
		return nil
	case list:
		if len(a.Vals) == 0 {
			return d.Errorf("%s: %s needs a value", d.Cmd, a.Key)
		}
		return nil
	}
	if len(a.Vals) != 1 {
		return d.Errorf("%s: %s needs exactly one value", d.Cmd, a.Key)
	}
	v := a.Vals[0]
	switch spec.kind {
	case duration:
		return checkDuration(d, a.Key+"="+v, v, maxDur)
	case number:
		n, err := parseUint(v)
		if err != nil && spec.min == 0 && spec.max == math.MaxUint64 {
			return d.Errorf("%s: %s=%s: expected a non-negative integer", d.Cmd, a.Key, v)
		}
		if err != nil || n < spec.min || n > spec.max {
			return d.Errorf("%s: %s=%s: expected an integer from %d to %d", d.Cmd, a.Key, v, spec.min, spec.max)
		}
	}
	return nil
}

// checkDuration wants a Go duration from 0 to maxDur (0: any).
func checkDuration(d *trace.Directive, what, v string, maxDur time.Duration) error {
	dd, err := time.ParseDuration(v)
	switch {
	case err != nil || dd < 0:
		return d.Errorf("%s: %s: expected a duration such as 500ms or 5s", d.Cmd, what)
	case maxDur > 0 && dd > maxDur:
		return d.Errorf("%s: %s: longer than the scenario's virtual-time limit of %s", d.Cmd, what, maxDur)
	}
	return nil
}

func checkRun(d *trace.Directive) error {
	if len(d.Args) > 1 {
		return d.Errorf("run takes one duration, got %d arguments", len(d.Args))
	}
	if dd, err := time.ParseDuration(d.Args[0].Key); err != nil || dd < 0 {
		return d.Errorf("run: expected a duration such as 30s, got %q", d.Args[0].Key)
	}
	return nil
}

// checkScenario checks what only the order of a scenario's directives
// shows (boot before init, cycles before the boot cycle, a resume of a
// running VM) and the virtual time its directives pass at the least (runs,
// and the dwells and pauses of cycles), against maxVirtual (0: no limit).
// ds starts with the world directive.
func checkScenario(ds []*trace.Directive, maxVirtual time.Duration) []error {
	var errs []error
	var inited, booted, waited, suspended bool
	var least time.Duration
	for _, d := range ds {
		switch d.Cmd {
		case "init":
			inited = true
		case "boot":
			switch {
			case booted:
				errs = append(errs, d.Errorf("boot: already booted at line %d's boot", firstLine(ds, "boot")))
			case !inited:
				errs = append(errs, d.Errorf("boot needs an init directive first"))
			}
			booted = true
		case "wait-started":
			if !booted {
				errs = append(errs, d.Errorf("wait-started needs a boot first"))
			}
			waited = true
		case "cycles":
			switch {
			case !booted || !waited:
				errs = append(errs, d.Errorf("cycles needs the boot cycle first (boot, then wait-started)"))
			case suspended:
				errs = append(errs, d.Errorf("cycles: the VM is suspended (resume it first)"))
			}
			each := durArg(d, "dwell", defaultDwell) + durArg(d, "pause", defaultPause)
			least = satAdd(least, satMul(each, numArg(d, "n", 1)))
		case "suspend":
			if suspended {
				errs = append(errs, d.Errorf("suspend: the VM is already suspended"))
			}
			suspended = true
		case "resume":
			if !suspended {
				errs = append(errs, d.Errorf("resume: the VM is not suspended"))
			}
			suspended = false
		case "run":
			dd, _ := time.ParseDuration(d.Args[0].Key) // checked by checkRun
			least = satAdd(least, dd)
		}
		if maxVirtual > 0 && least > maxVirtual {
			errs = append(errs, d.Errorf("%s: the scenario would pass at least %s of virtual time by here, over its limit of %s", d.Cmd, least, maxVirtual))
			break
		}
	}
	return append(errs, checkConns(ds)...)
}

// satAdd and satMul saturate at the longest duration instead of wrapping.
func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a time.Duration, n uint64) time.Duration {
	if n != 0 && uint64(a) > math.MaxInt64/n {
		return math.MaxInt64
	}
	return a * time.Duration(n)
}

func firstLine(ds []*trace.Directive, cmd string) int {
	for _, d := range ds {
		if d.Cmd == cmd {
			return d.Line
		}
	}
	return 0
}

func checkWorld(d *trace.Directive) error {
	cfg, _, err := worldConfig(d)
	if err != nil {
		return err
	}
	if cfg.Device != "" {
		if _, err := device.LookupProfile(cfg.Device); err != nil {
			return d.Errorf("world: %v", err)
		}
	}
	if cfg.Kernel != "" {
		if _, err := guest.LookupProfile(cfg.Kernel); err != nil {
			return d.Errorf("world: %v", err)
		}
	}
	return nil
}

func checkHostd(d *trace.Directive) error {
	if hasFlag(d, "session-first") && hasFlag(d, "status-only") {
		return d.Errorf("hostd: session-first and status-only contradict each other (status-only opens no session)")
	}
	return nil
}

func checkInit(d *trace.Directive) error {
	if len(d.Input) != 1 {
		return d.Errorf("init: expected one input line with the workload (e.g. \"writer total=1MiB size=64KiB every=10ms\"), got %d", len(d.Input))
	}
	w, err := labenv.ParseWorkload(strings.Fields(d.Input[0]))
	if err != nil {
		return d.Errorf("init: %v", err)
	}
	if w.Every < 0 || w.Total < 0 || slices.ContainsFunc(w.Writes, func(x labenv.Write) bool { return x.Delay < 0 }) {
		return d.Errorf("init: workload %q: negative sizes and delays mean nothing", d.Input[0])
	}
	if _, ok := d.Arg("no-write-timeout"); ok {
		if _, ok := d.Arg("write-timeout"); ok {
			return d.Errorf("init: no-write-timeout and write-timeout contradict each other")
		}
	}
	return nil
}

var kindNames = map[string]engine.Kind{
	"packet": engine.KindPacket, "conn": engine.KindConn, "credit": engine.KindCredit, "host": engine.KindHost,
	"program": engine.KindProgram, "fault": engine.KindFault, "invariant": engine.KindInvariant, "world": engine.KindWorld,
}

func checkTimeline(d *trace.Directive) error {
	if a, ok := d.Arg("kinds"); ok {
		for _, v := range a.Vals {
			if _, ok := kindNames[v]; !ok {
				return d.Errorf("timeline: unknown kind %q (known: conn, credit, fault, host, invariant, packet, program, world)", v)
			}
		}
	}
	return nil
}

func checkVerdict(d *trace.Directive) error {
	switch d.Args[0].Key {
	case "wedge", "resume", "stream", "oracles":
		return nil
	}
	return d.Errorf("verdict: expected wedge, resume, stream or oracles, got %q", d.Args[0].Key)
}

// checkStream: from is host or guest; sizes parse and the stream has bytes.
func checkStream(d *trace.Directive) error {
	from := "host"
	if a, ok := d.Arg("from"); ok {
		from = argVal(a)
	}
	if from != "host" && from != "guest" {
		return d.Errorf("stream: from=%s: expected host or guest", from)
	}
	if _, ok := d.Arg("port"); !ok {
		return d.Errorf("stream: port=N is required")
	}
	if v := numArg(d, "port", 0); v > 0xffffffff {
		return d.Errorf("stream: port=%d does not fit in 32 bits", v)
	}
	for _, key := range []string{"total", "size", "read", "rcvlowat"} {
		a, ok := d.Arg(key)
		if !ok {
			continue
		}
		n, err := labenv.ParseSize(argVal(a))
		if err != nil || n < 0 || n > 1<<40 {
			return d.Errorf("stream: %s=%s: expected a size such as 4096, 64KiB or 1MiB", key, argVal(a))
		}
		if (key == "total" || key == "size") && n == 0 {
			return d.Errorf("stream: %s must be above 0", key)
		}
	}
	if _, ok := d.Arg("rcvlowat"); ok && from != "host" {
		return d.Errorf("stream: rcvlowat is set on the guest reader, so it needs from=host")
	}
	if _, ok := d.Arg("unread"); ok {
		for _, key := range []string{"read", "read-every", "rcvlowat"} {
			if _, set := d.Arg(key); set {
				return d.Errorf("stream: unread: the reader never reads, so %s has no meaning", key)
			}
		}
	}
	return nil
}

// sizeArg returns the size argument key (checked by checkStream), or def.
func sizeArg(d *trace.Directive, key string, def int64) int64 {
	if a, ok := d.Arg(key); ok {
		v, _ := labenv.ParseSize(argVal(a))
		return v
	}
	return def
}

func checkFault(d *trace.Directive) error {
	if d.Args[0].Key != "drop-tx" {
		return d.Errorf("fault: expected drop-tx, got %q", d.Args[0].Key)
	}
	return nil
}

func argVal(a trace.Arg) string {
	if len(a.Vals) == 0 {
		return ""
	}
	return a.Vals[0]
}

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

// durArg returns the duration argument key, or def.
func durArg(d *trace.Directive, key string, def time.Duration) time.Duration {
	if a, ok := d.Arg(key); ok {
		v, _ := time.ParseDuration(argVal(a)) // checked by checkArgs
		return v
	}
	return def
}

// numArg returns the number argument key, or def.
func numArg(d *trace.Directive, key string, def uint64) uint64 {
	if a, ok := d.Arg(key); ok {
		v, _ := parseUint(argVal(a)) // checked by checkArgs
		return v
	}
	return def
}

func hasFlag(d *trace.Directive, key string) bool {
	_, ok := d.Arg(key)
	return ok
}

func port32(d *trace.Directive, key string) (uint32, error) {
	v := numArg(d, key, 0)
	if v > 0xffffffff {
		return 0, fmt.Errorf("%s=%d does not fit in 32 bits", key, v)
	}
	return uint32(v), nil
}
