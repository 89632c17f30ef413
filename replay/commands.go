package replay

import (
	"fmt"
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
	duration                // "dwell=5s"
	number                  // "n=50"
)

// command describes one trace command.
type command struct {
	args       map[string]argKind
	positional string // name of a single positional argument ("" for none)
	input      string // what the input lines are, "" when none are taken
	check      func(d *trace.Directive) error
	run        func(sr *scenarioRun, d *trace.Directive) (string, error)
}

var commands = map[string]command{
	"world": {
		args:  map[string]argKind{"name": value, "device": value, "kernel": value, "seed": number, "cid": number},
		check: checkWorld,
		run:   (*scenarioRun).cmdWorld,
	},
	"hostd": {
		args: map[string]argKind{"session-first": flagArg, "backoff-initial": duration, "backoff-max": duration,
			"give-up": duration, "api-port": number, "log-port": number, "attempt-timeout": duration},
		run: (*scenarioRun).cmdHostd,
	},
	"init": {
		args: map[string]argKind{"no-write-timeout": flagArg, "write-timeout": duration, "keep-reset-sessions": flagArg,
			"api-port": number, "log-port": number, "metrics-interval": duration, "read-chunk": number},
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
		args: map[string]argKind{"cycle": number, "timeout": duration},
		run:  (*scenarioRun).cmdWaitStarted,
	},
	"cycles": {
		args: map[string]argKind{"n": number, "dwell": duration, "pause": duration, "timeout": duration},
		run:  (*scenarioRun).cmdCycles,
	},
	"connect": {
		args: map[string]argKind{"port": number},
		run:  (*scenarioRun).cmdConnect,
	},
	"stream": {
		args: map[string]argKind{"from": value, "port": number, "total": value, "size": value, "every": duration,
			"read": value, "read-every": duration, "rcvlowat": value},
		check: checkStream,
		run:   (*scenarioRun).cmdStream,
	},
	"fault": {
		positional: "drop-tx",
		args:       map[string]argKind{"n": number, "min-len": number},
		check:      checkFault,
		run:        (*scenarioRun).cmdFault,
	},
	"timeline": {
		args:  map[string]argKind{"kinds": list, "comp": list, "grep": value, "all": flagArg, "limit": number},
		check: checkTimeline,
		run:   (*scenarioRun).cmdTimeline,
	},
	"sockets":  {args: map[string]argKind{"limit": number}, run: (*scenarioRun).cmdSockets},
	"counters": {run: (*scenarioRun).cmdCounters},
	"report":   {run: (*scenarioRun).cmdReport},
	"verdict":  {positional: "wedge|resume|stream|oracles", check: checkVerdict, run: (*scenarioRun).cmdVerdict},
}

// checkArgs applies a command's argument table.
func checkArgs(d *trace.Directive, c command) error {
	args := d.Args
	if c.positional != "" {
		if len(args) == 0 || len(args[0].Vals) != 0 {
			return d.Errorf("%s: expected a %s first", d.Cmd, c.positional)
		}
		args = args[1:]
	}
	for _, a := range args {
		kind, ok := c.args[a.Key]
		if !ok {
			var known []string
			for k := range c.args {
				known = append(known, k)
			}
			if len(known) == 0 {
				return d.Errorf("%s takes no arguments, got %q", d.Cmd, a.Key)
			}
			slices.Sort(known)
			return d.Errorf("%s: unknown argument %q (known: %s)", d.Cmd, a.Key, strings.Join(known, ", "))
		}
		switch kind {
		case flagArg:
			if len(a.Vals) != 0 {
				return d.Errorf("%s: %s is a flag and takes no value", d.Cmd, a.Key)
			}
		case list:
			if len(a.Vals) == 0 {
				return d.Errorf("%s: %s needs a value", d.Cmd, a.Key)
			}
		default:
			if len(a.Vals) != 1 {
				return d.Errorf("%s: %s needs exactly one value", d.Cmd, a.Key)
			}
			v := a.Vals[0]
			switch kind {
			case duration:
				if dd, err := time.ParseDuration(v); err != nil || dd < 0 {
					return d.Errorf("%s: %s=%s: expected a duration such as 500ms or 5s", d.Cmd, a.Key, v)
				}
			case number:
				if _, err := parseUint(v); err != nil {
					return d.Errorf("%s: %s=%s: expected a non-negative integer", d.Cmd, a.Key, v)
				}
			}
		}
	}
	if c.input == "" && len(d.Input) > 0 {
		return d.Errorf("%s takes no input lines, got %q", d.Cmd, d.Input[0])
	}
	return nil
}

func checkRun(d *trace.Directive) error {
	if _, err := time.ParseDuration(d.Args[0].Key); err != nil {
		return d.Errorf("run: expected a duration such as 30s, got %q", d.Args[0].Key)
	}
	if len(d.Args) > 1 {
		return d.Errorf("run takes one duration, got %d arguments", len(d.Args))
	}
	return nil
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

func checkInit(d *trace.Directive) error {
	if len(d.Input) != 1 {
		return d.Errorf("init: expected one input line with the workload (e.g. \"writer total=1MiB size=64KiB every=10ms\"), got %d", len(d.Input))
	}
	if _, err := labenv.ParseWorkload(strings.Fields(d.Input[0])); err != nil {
		return d.Errorf("init: %v", err)
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
	if n := numArg(d, "n", 1); n == 0 || n > 1<<31 {
		return d.Errorf("fault: n=%d: expected 1 to 2147483648 packets", n)
	}
	if v := numArg(d, "min-len", 1); v > 0xffffffff {
		return d.Errorf("fault: min-len=%d does not fit in 32 bits", v)
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
