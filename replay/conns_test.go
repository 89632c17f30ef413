package replay

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
)

// The connection directives and hostd status-only are checked before
// anything runs, each problem at its line.
func TestConnectionDirectivesValidate(t *testing.T) {
	const w = "world\n----\n\n" // line 1; the directive under test is on line 4
	for _, tc := range []struct{ name, text, want string }{
		{"send before connect", w + "send name=c\nx\n----\n", "t:4: send: no connection named c is open here"},
		{"recv after close", w + "connect port=1 name=c\n----\n\nclose name=c\n----\n\nrecv name=c\n----\n", "t:10: recv: no connection named c is open here"},
		{"name reused while open", w + "connect port=1 name=c\n----\n\nconnect port=2 name=c\n----\n", "t:7: connect: name=c is still open from line 4"},
		{"send needs a name", w + "send\nx\n----\n", "t:4: send: name=... is required"},
		{"send lines and size", w + "connect port=1 name=c\n----\n\nsend name=c size=4\nx\n----\n", "t:7: send: input lines and size=... contradict"},
		{"send nothing", w + "connect port=1 name=c\n----\n\nsend name=c\n----\n", "t:7: send: expected input lines to send, or size=SIZE"},
		{"send a bad literal", w + "connect port=1 name=c\n----\n\nsend name=c\n\"\\q\"\n----\n", "t:7: send: input line 1: \"\\q\" is not a Go string literal"},
		{"send crlf with size", w + "connect port=1 name=c\n----\n\nsend name=c size=4 crlf\n----\n", "t:7: send: crlf ends input lines"},
		{"recv max out of range", w + "connect port=1 name=c\n----\n\nrecv name=c max=17MiB\n----\n", "t:7: recv: max=17MiB: expected a size"},
		{"a name that will not read back", w + "connect port=1 name=a.b\n----\n", "t:4: connect: name=a.b: expected a name"},
		{"close takes no input", w + "connect port=1 name=c\n----\n\nclose name=c\nx\n----\n", "t:7: close takes no input lines"},
		{"send timeout is a duration", w + "connect port=1 name=c\n----\n\nsend name=c timeout=x\nx\n----\n", "t:7: send: timeout=x: expected a duration"},
		{"hostd contradiction", w + "hostd session-first status-only\n----\n", "t:4: hostd: session-first and status-only contradict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t", tc.text)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// A conversation with init's API by hand: what hostd's status check does,
// a directive at a time, and half-closing the sending side.
func TestConnectionConversation(t *testing.T) {
	f, err := Parse("conv.trace", `world name=conv
----

hostd status-only
----

init
idle
----

boot
----

wait-started
----

connect port=10000 name=api
----

send name=api
"GET /v1/status HTTP/1.1\r\nHost: init\r\n\r\n"
----

recv name=api timeout=100ms
----

close name=api write
----

recv name=api max=1
----

close name=api
----

connect port=10000 name=bulk
----

send name=bulk size=64KiB timeout=2s
----

connect port=4242 name=none
----

send name=none
x
----
`)
	require.NoError(t, err)
	res := RunFile(lab.T(t), f, Options{})
	out := res.Outputs
	require.Equal(t, "hostd: status check only, backoff 50ms doubling to 5s, give up after 1m0s\n", out[1])
	require.Regexp(t, `^connect 10000: OK from host port \d+, open as api\n$`, out[5])
	require.Equal(t, "send api at 0.000000000: 39 of 39 bytes\n", out[6])
	require.Contains(t, out[7], "recv api at 0.100000000: ")
	require.Contains(t, out[7], "then nothing more within 100ms\n  \"HTTP/1.1 200 OK\\r\\n\"\n")
	require.Contains(t, out[7], `  "{\"workload\":\"running\"}\n"`)
	require.Equal(t, "close api (sending half) at 0.100000000\n", out[8])
	// The server answered the request and saw the end of the stream: the
	// connection ends.
	require.Regexp(t, `^recv api at 0\.1\d+: 0 bytes, then end of stream\n$`, out[9])
	require.Equal(t, "close api at "+out[9][len("recv api at "):len("recv api at 0.100000000")]+"\n", out[10])
	require.Regexp(t, `^connect 10000: OK from host port \d+, open as bulk\n$`, out[11])
	require.Regexp(t, `^send bulk at \S+: 65536 of 65536 bytes\n$`, out[12])
	require.Contains(t, out[13], "connect 4242: ")
	require.NotContains(t, out[13], "open as")
	require.Equal(t, "error: connection none is not open (its connect failed)\n", out[14])
	require.Nil(t, res.Scenarios[0].Err)
}
