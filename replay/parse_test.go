package replay

import (
	"testing"

	"github.com/stretchr/testify/require"
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
		{"unknown command", "world\n----\n\nfly\n----\n", `t.trace:4: unknown command "fly" (known: boot, connect, counters, cycles, device-reset, fault, hostd, init, report, resume, run, sockets, stream, suspend, timeline, verdict, wait-started, world)`},
		{"unknown device", "world device=qemu\n----\n", `t.trace:1: world: unknown device profile "qemu" (known: firecracker-1.5`},
		{"unknown kernel", "world kernel=linux-2.6\n----\n", `t.trace:1: world: unknown guest kernel profile "linux-2.6" (known: linux-5.15`},
		{"bad seed", "world seed=x\n----\n", `t.trace:1: world: seed=x: expected a non-negative integer`},
		{"bad duration", "world\n----\n\nrun soon\n----\n", `t.trace:4: run: expected a duration such as 30s, got "soon"`},
		{"unknown argument", "world\n----\n\nhostd fast\n----\n", `t.trace:4: hostd: unknown argument "fast" (known: api-port, attempt-timeout, backoff-initial, backoff-max, give-up, log-port, session-first)`},
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
		{"stream rcvlowat on the host", "world\n----\n\nstream port=1 from=guest rcvlowat=4096\n----\n", `t.trace:4: stream: rcvlowat is set on the guest reader, so it needs from=host`},
		{"fault of what", "world\n----\n\nfault drop-rx\n----\n", `t.trace:4: fault: expected drop-tx, got "drop-rx"`},
		{"fault of no packets", "world\n----\n\nfault drop-tx n=0\n----\n", `t.trace:4: fault: n=0: expected 1 to 2147483648 packets`},
		{"fault without a kind", "world\n----\n\nfault n=2\n----\n", `t.trace:4: fault: expected a drop-tx first`},
		{"input where none is taken", "world\n----\n\nboot\nnow\n----\n", `t.trace:4: boot takes no input lines, got "now"`},
		{"syntax", "world\n", `t.trace:1: command "world": expected a line "----" before the end of the file`},
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

// An error while a directive runs is part of its output, not a crash.
func TestRuntimeErrorsArePrinted(t *testing.T) {
	f, err := Parse("t.trace", "world\n----\n\nboot\n----\n\nwait-started timeout=1s\n----\n")
	require.NoError(t, err)
	res := RunFile(lab.T(t), f, Options{})
	require.Equal(t, []string{
		"world scenario-1: device firecracker-1.14, guest linux-6.12.68, seed 1\n",
		"error: boot needs an init directive first\n",
		"error: not booted\n",
	}, res.Outputs)
}
