package replay

import (
	"testing"

	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/trace"
)

// Bad traces are refused before anything runs, with the file, the line and
// what was expected; unknown profiles list the known ones.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"no world first", "boot\n----\n", `t.trace:1: a trace starts with a world directive, got "boot"`},
		{"unknown command", "world\n----\n\nfly\n----\n", `t.trace:4: unknown command "fly" (known: boot, close, connect, counters, cycles, device-reset, fault, hostd, init, recv, report, resume, run, send, sockets, stream, suspend, timeline, verdict, wait-started, world)`},
		{"unknown device", "world device=qemu\n----\n", `t.trace:1: world: unknown device profile "qemu" (known: firecracker-1.5`},
		{"unknown kernel", "world kernel=linux-2.6\n----\n", `t.trace:1: world: unknown guest kernel profile "linux-2.6" (known: linux-5.15`},
		{"bad seed", "world seed=x\n----\n", `t.trace:1: world: seed=x: expected a non-negative integer`},
		{"seed 0", "world seed=0\n----\n", `t.trace:1: world: seed=0: seeds start at 1 (the default)`},
		{"bad duration", "world\n----\n\nrun soon\n----\n", `t.trace:4: run: expected a duration such as 30s, got "soon"`},
		{"unknown argument", "world\n----\n\nhostd fast\n----\n", `t.trace:4: hostd: unknown argument "fast" (known: api-port, attempt-timeout, backoff-initial, backoff-max, give-up, log-port, session-first, status-only)`},
		{"flag with a value", "world\n----\n\nhostd session-first=yes\n----\n", `t.trace:4: hostd: session-first is a flag and takes no value`},
		{"init without a workload", "world\n----\n\ninit\n----\n", `t.trace:4: init: expected one input line with the workload`},
		{"bad workload", "world\n----\n\ninit\nwriter total=lots\n----\n", `t.trace:4: init: workload writer: total=lots: bad size "lots"`},
		{"contradictory init", "world\n----\n\ninit no-write-timeout write-timeout=1s\nidle\n----\n", `t.trace:4: init: no-write-timeout and write-timeout contradict each other`},
		{"unknown timeline kind", "world\n----\n\ntimeline kinds=(packets)\n----\n", `t.trace:4: timeline: unknown kind "packets"`},
		{"verdict of what", "world\n----\n\nverdict speed\n----\n", `t.trace:4: verdict: expected wedge, resume, stream or oracles, got "speed"`},
		{"stream from nowhere", "world\n----\n\nstream port=5000 from=vm\n----\n", `t.trace:4: stream: from=vm: expected host or guest`},
		{"stream without a port", "world\n----\n\nstream total=1MiB\n----\n", `t.trace:4: stream: port=N is required`},
		{"stream of a bad size", "world\n----\n\nstream port=1 size=lots\n----\n", `t.trace:4: stream: size=lots: expected a size such as 4096, 64KiB or 1MiB`},
		{"stream of nothing", "world\n----\n\nstream port=1 total=0\n----\n", `t.trace:4: stream: total must be above 0`},
		{"stream unread with a read size", "world\n----\n\nstream port=1 unread read=4096\n----\n", `t.trace:4: stream: unread: the reader never reads, so read has no meaning`},
		{"stream rcvlowat on the host", "world\n----\n\nstream port=1 from=guest rcvlowat=4096\n----\n", `t.trace:4: stream: rcvlowat is set on the guest reader, so it needs from=host`},
		{"fault of what", "world\n----\n\nfault drop-rx\n----\n", `t.trace:4: fault: expected drop-tx, got "drop-rx"`},
		{"fault of no packets", "world\n----\n\nfault drop-tx n=0\n----\n", `t.trace:4: fault: n=0: expected an integer from 1 to 2147483648`},
		{"fault without a kind", "world\n----\n\nfault n=2\n----\n", `t.trace:4: fault: expected a drop-tx first`},
		{"input where none is taken", "world\n----\n\nboot\nnow\n----\n", `t.trace:4: boot takes no input lines, got "now"`},
		{"syntax", "world\n", `t.trace:1: command "world": expected a line "----" before the end of the file`},

		// Issue 17: every argument checked before anything runs.
		{"empty file", "", `t.trace:1: no directives: a trace starts with a world directive`},
		{"only comments", "# nothing\n\n", `t.trace:1: no directives`},
		{"negative run", "world\n----\n\nrun -5s\n----\n", `t.trace:4: run: expected a duration such as 30s, got "-5s"`},
		{"run past the virtual-time limit", "world\n----\n\nrun 1000000h\n----\n", `t.trace:4: run: the scenario would pass at least 1000000h0m0s of virtual time by here, over its limit of 24h0m0s`},
		{"runs adding up past the limit", "world\n----\n\nrun 20h\n----\n\nrun 5h\n----\n", `t.trace:7: run: the scenario would pass at least 25h0m0s`},
		{"cycles past the limit", "world\n----\n\ninit\nidle\n----\n\nboot\n----\n\nwait-started\n----\n\ncycles n=10000 dwell=10s\n----\n", `t.trace:14: cycles: the scenario would pass at least 30h33m20s`},
		{"absurd count", "world\n----\n\ncycles n=100000\n----\n", `t.trace:4: cycles: n=100000: expected an integer from 1 to 10000`},
		{"negative duration argument", "world\n----\n\nhostd give-up=-1s\n----\n", `t.trace:4: hostd: give-up=-1s: expected a duration such as 500ms or 5s`},
		{"duration past the limit", "world\n----\n\nhostd backoff-max=1000000h\n----\n", `t.trace:4: hostd: backoff-max=1000000h: longer than the scenario's virtual-time limit of 24h0m0s`},
		{"port out of u32", "world\n----\n\nconnect port=99999999999\n----\n", `t.trace:4: connect: port=99999999999: expected an integer from 0 to 4294967295`},
		{"negative port", "world\n----\n\ninit api-port=-1\nidle\n----\n", `t.trace:4: init: api-port=-1: expected an integer from 0 to 4294967295`},
		{"missing port", "world\n----\n\nconnect\n----\n", `t.trace:4: connect: port=... is required`},
		{"repeated argument", "world\n----\n\nconnect port=1 port=2\n----\n", `t.trace:4: connect: port given twice`},
		{"repeated world argument", "world seed=1 seed=2\n----\n", `t.trace:1: world: seed given twice`},
		{"bad cid", "world cid=2\n----\n", `t.trace:1: world: cid=2: expected an integer from 3 to 4294967294`},
		{"negative workload delay", "world\n----\n\ninit\nwriter total=1KiB size=1KiB every=-1s\n----\n", `t.trace:4: init: workload "writer total=1KiB size=1KiB every=-1s": negative sizes and delays mean nothing`},
		{"timeline limit absurd", "world\n----\n\ntimeline limit=99999999999\n----\n", `t.trace:4: timeline: limit=99999999999: expected an integer from 0 to 1000000`},
		{"boot before init", "world\n----\n\nboot\n----\n", `t.trace:4: boot needs an init directive first`},
		{"boot twice", "world\n----\n\ninit\nidle\n----\n\nboot\n----\n\nboot\n----\n", `t.trace:11: boot: already booted at line 8's boot`},
		{"wait before boot", "world\n----\n\nwait-started\n----\n", `t.trace:4: wait-started needs a boot first`},
		{"cycles before the boot cycle", "world\n----\n\ninit\nidle\n----\n\nboot\n----\n\ncycles\n----\n", `t.trace:11: cycles needs the boot cycle first (boot, then wait-started)`},
		{"resume of a running VM", "world\n----\n\nresume\n----\n", `t.trace:4: resume: the VM is not suspended`},
		{"suspend twice", "world\n----\n\nsuspend\n----\n\nsuspend\n----\n", `t.trace:7: suspend: the VM is already suspended`},
		{"each scenario on its own", "world\n----\n\nsuspend\n----\n\nworld\n----\n\nresume\n----\n", `t.trace:10: resume: the VM is not suspended`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.trace", tc.text)
			require.Error(t, err)
			var se *trace.SyntaxError
			require.ErrorAs(t, err, &se)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// Every problem of a file is reported at once, each with its line, in the
// file's order.
func TestParseReportsEveryError(t *testing.T) {
	text := "world seed=x\n----\n\nrun -5s\n----\n\nconnect port=99999999999 port=1 speed=3\n----\n\nfly\n----\n"
	_, err := Parse("t.trace", text)
	require.Error(t, err)
	require.Equal(t, `t.trace:1: world: seed=x: expected a non-negative integer
t.trace:4: run: expected a duration such as 30s, got "-5s"
t.trace:7: connect: port=99999999999: expected an integer from 0 to 4294967295
t.trace:7: connect: port given twice
t.trace:7: connect: unknown argument "speed" (known: name, port, timeout)
t.trace:10: unknown command "fly" (known: boot, close, connect, counters, cycles, device-reset, fault, hostd, init, recv, report, resume, run, send, sockets, stream, suspend, timeline, verdict, wait-started, world)`, err.Error())
}

// The limits given to ParseWith are the ones validation holds scenarios to.
func TestParseWithLimits(t *testing.T) {
	text := "world\n----\n\nrun 2h\n----\n"
	_, err := ParseWith("t.trace", text, Options{MaxVirtual: time.Hour})
	require.ErrorContains(t, err, "t.trace:4: run: the scenario would pass at least 2h0m0s of virtual time by here, over its limit of 1h0m0s")
	_, err = ParseWith("t.trace", text, Options{MaxVirtual: -1})
	require.NoError(t, err, "a negative limit is none")
}

// An error while a directive runs is part of its output, not a crash.
func TestRuntimeErrorsArePrinted(t *testing.T) {
	f, err := Parse("t.trace", "world\n----\n\ninit\nidle\n----\n\nboot\n----\n\nwait-started cycle=1 timeout=1s\n----\n")
	require.NoError(t, err)
	res := RunFile(lab.T(t), f, Options{})
	require.Equal(t, []string{
		"world scenario-1: device firecracker-1.14, guest linux-6.12.68, seed 1\n",
		"init: vsock write timeout 2s, closes reset sessions; workload: idle\n",
		"booted at 0.000000000\n",
		"error: cycle 1 did not finish within 1s\n",
	}, res.Outputs)
	require.False(t, res.Failed(), "a wait that times out is the story, not a limit")
}

// With StopAtError, the first directive that fails stops its scenario:
// the directives after it say they did not run, Err names the directive,
// and the next scenario runs as usual.
func TestStopAtErrorStopsAScenario(t *testing.T) {
	text := "world name=a\n----\n\ninit\nidle\n----\n\nboot\n----\n\nwait-started cycle=1 timeout=1s\n----\n\n" +
		"run 1h\n----\n\nreport\n----\n\nworld name=b\n----\n\nrun 1s\n----\n"
	f, err := Parse("t.trace", text)
	require.NoError(t, err)
	res := RunFile(lab.T(t), f, Options{StopAtError: true})
	why := "t.trace:11: wait-started: cycle 1 did not finish within 1s"
	require.Equal(t, "error: cycle 1 did not finish within 1s\n", res.Outputs[3])
	require.Equal(t, "error: not run: "+why+"\n", res.Outputs[4])
	require.Equal(t, "error: not run: "+why+"\n", res.Outputs[5])
	require.Equal(t, "now 1.000000000\n", res.Outputs[7])
	require.True(t, res.Failed())
	var stop *DirectiveError
	require.ErrorAs(t, res.Scenarios[0].Err, &stop)
	require.Equal(t, 3, stop.Index)
	require.Same(t, f.Directives[3], stop.Directive)
	require.EqualError(t, stop, why)
	require.Less(t, res.Scenarios[0].End, 2*time.Second, "the hour's run did not run")
	require.NoError(t, res.Scenarios[1].Err)
}

// A scenario that reaches its virtual-time limit while it runs stops there
// with an error; its other directives say they did not run, the next
// scenario runs as usual, and the result has failed.
func TestVirtualTimeLimitStopsAScenario(t *testing.T) {
	text := "world name=a\n----\n\ninit\nidle\n----\n\nboot\n----\n\nrun 50s\n----\n\n" +
		"wait-started cycle=1 timeout=30s\n----\n\nreport\n----\n\nworld name=b\n----\n\nrun 1s\n----\n"
	f, err := ParseWith("t.trace", text, Options{MaxVirtual: time.Minute})
	require.NoError(t, err, "50 s of runs fit in a minute: only the wait goes over")
	res := RunFile(lab.T(t), f, Options{MaxVirtual: time.Minute})
	limit := "virtual-time limit: the scenario reached 1m0s of virtual time, its limit"
	require.Equal(t, "now 50.000000000\n", res.Outputs[3])
	require.Equal(t, "error: "+limit+"\n", res.Outputs[4])
	require.Equal(t, "error: not run: "+limit+"\n", res.Outputs[5])
	require.Equal(t, "now 1.000000000\n", res.Outputs[7])
	require.True(t, res.Failed())
	require.EqualError(t, res.Scenarios[0].Err, limit)
	require.Equal(t, limit, res.Scenarios[0].Report.Error)
	require.NoError(t, res.Scenarios[1].Err)
	require.Equal(t, time.Minute, res.Scenarios[0].End)
}

// A scenario past its wall-time limit stops at the next check (here the
// first) and says so in every directive left.
func TestWallTimeLimitStopsAScenario(t *testing.T) {
	f, err := Parse("t.trace", "world\n----\n\nrun 20h\n----\n\ncounters\n----\n")
	require.NoError(t, err)
	res := RunFile(lab.T(t), f, Options{MaxWall: time.Nanosecond})
	require.True(t, res.Failed())
	for _, out := range res.Outputs {
		require.Contains(t, out, "error: not run: wall-time limit: the scenario replayed for 1ns of real time, its limit")
	}
	require.Less(t, res.Scenarios[0].End, 20*time.Hour)
}

// The log stores only what the scenario's timelines print and forgets what
// they have printed, unless a later timeline looks back or a capture reads
// it afterwards; the hash is the same as with everything stored.
func TestLogKeepsOnlyWhatTimelinesNeed(t *testing.T) {
	text := "world\n----\n\ninit\nwriter total=256KiB size=4KiB every=1ms\n----\n\nboot\n----\n\nrun 2s\n----\n\n" +
		"timeline kinds=(world) limit=1\n----\n\nrun 1s\n----\n"
	run := func(opts Options) *Scenario {
		f, err := Parse("t.trace", text)
		require.NoError(t, err)
		return RunFile(lab.T(t), f, opts).Scenarios[0]
	}
	few, all := run(Options{}), run(Options{Capture: true})
	require.Equal(t, all.Report.LogSHA256, few.Report.LogSHA256)
	require.Greater(t, len(all.records), 100, "a capture keeps every record")
	require.Less(t, len(few.records), 5, "world records only, and those printed are forgotten")
	for _, r := range few.records {
		require.Equal(t, engine.KindWorld, r.Kind)
	}
}
