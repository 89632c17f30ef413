package trace

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const sample = `# A comment.
world name=a device=firecracker-1.14 seed=7
----
world a

init no-write-timeout ports=(10000, 10001)
writer total=1MiB
----
----
line one

line three
----
----
run 5s
----

# trailing comment
`

func TestParseReadsDirectivesAndFormatsTheFileBack(t *testing.T) {
	f, err := Parse("x.trace", sample)
	require.NoError(t, err)
	require.Len(t, f.Directives, 3)
	d := f.Directives[0]
	require.Equal(t, "world", d.Cmd)
	require.Equal(t, 2, d.Line)
	require.Equal(t, "# A comment.\n", d.Leading)
	require.Equal(t, []Arg{{Key: "name", Vals: []string{"a"}}, {Key: "device", Vals: []string{"firecracker-1.14"}}, {Key: "seed", Vals: []string{"7"}}}, d.Args)
	require.Equal(t, "world a\n", d.Want)
	d = f.Directives[1]
	require.Equal(t, []string{"writer total=1MiB"}, d.Input)
	require.Equal(t, Arg{Key: "ports", Vals: []string{"10000", "10001"}}, d.Args[1])
	require.Equal(t, "line one\n\nline three\n", d.Want)
	require.Equal(t, "", f.Directives[2].Want)
	require.Equal(t, "x.trace:6", d.Pos())
	// Formatting without new output gives the file back.
	require.Equal(t, sample, f.Format(nil))
}

func TestFormatRewrites(t *testing.T) {
	f, err := Parse("x.trace", "a\n----\nold\n\nb\n----\n")
	require.NoError(t, err)
	require.Equal(t, "a\n----\nnew\n\nb\n----\n----\nx\n\ny\n----\n----\n", f.Format([]string{"new", "x\n\ny\n"}))
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"world\n", `f.trace:1: command "world": expected a line "----" before the end of the file`},
		{"world\n\n----\n", `f.trace:2: command "world": expected input lines then "----", got a blank line`},
		{"wor!d\n----\n", `f.trace:1: expected a command name (letters, digits, '-', '_', '.'), got "wor!d"`},
		{"world a=(1, 2\n----\n", `f.trace:1: command "world": argument "a": expected ')' to close the list`},
		{"world a=\n----\n", `f.trace:1: command "world": argument "a": expected a value after '='`},
		{"run\n----\n----\nx\n----\n", `f.trace:1: command "run": output opened with "----" twice must close with two "----" lines`},
	}
	for _, tc := range tests {
		_, err := Parse("f.trace", tc.text)
		var se *SyntaxError
		require.ErrorAs(t, err, &se, tc.text)
		require.Equal(t, tc.want, err.Error())
	}
}

// ParseMax stops at the first directive past its limit.
func TestParseMax(t *testing.T) {
	text := "a\n----\n\nb\n----\n\nc\n----\n"
	f, err := ParseMax("t.trace", text, 3)
	require.NoError(t, err)
	require.Len(t, f.Directives, 3)
	_, err = ParseMax("t.trace", text, 2)
	require.EqualError(t, err, "t.trace:7: more than 2 directives in one file")
}
