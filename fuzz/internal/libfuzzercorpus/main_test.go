package main

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConvert(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       []byte // nil: skipped
		err        string
	}{
		{name: "bytes", file: "go test fuzz v1\n[]byte(\"ab\\x00\")\n", want: []byte{0, 0, 0, 3, 'a', 'b', 0}},
		{name: "string", file: "go test fuzz v1\nstring(\"hi\")\n", want: []byte{0, 0, 0, 2, 'h', 'i'}},
		{name: "empty bytes skipped", file: "go test fuzz v1\n[]byte(\"\")\n"},
		{name: "empty string skipped", file: "go test fuzz v1\nstring(\"x\")\nstring(\"\")\n"},
		{name: "bytes as go writes them", file: "go test fuzz v1\nbyte('\\x02')\nbyte('a')\nbyte('\\x00')\nbyte('\\u00ff')\nbyte('ÿ')\n",
			want: []byte{2, 'a', 0, 0xff, 0xff}},
		{name: "bytes as integers", file: "go test fuzz v1\nbyte(2)\nbyte(0xff)\nbyte(0o17)\n", want: []byte{2, 0xff, 0o17}},
		{name: "mixed", file: "go test fuzz v1\nbyte('\\x01')\n[]byte(\"z\")\nbyte(7)\n", want: []byte{1, 0, 0, 0, 1, 'z', 7}},
		{name: "blank lines", file: "go test fuzz v1\n\nbyte(1)\n\n", want: []byte{1}},
		{name: "rune too big for a byte", file: "go test fuzz v1\nbyte('\\u0100')\n", err: `value "byte('\\u0100')": '\u0100' is not a byte`},
		{name: "integer too big", file: "go test fuzz v1\nbyte(256)\n", err: `value "byte(256)": strconv.ParseUint: parsing "256": value out of range`},
		{name: "two characters", file: "go test fuzz v1\nbyte('ab')\n", err: `value "byte('ab')": more than one character in 'ab'`},
		{name: "uint64 unsupported", file: "go test fuzz v1\nuint64(1)\n", err: `unsupported value "uint64(1)" (only []byte, string and byte)`},
		{name: "not a corpus file", file: "hello\n", err: "not a go test fuzz v1 file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok, err := convert([]byte(c.file))
			if c.err != "" {
				require.EqualError(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want != nil, ok)
			if ok {
				require.Equal(t, c.want, got)
			}
		})
	}
}

// TestCommittedCorpora converts every committed corpus of the fuzz
// package, the world target's byte arguments included: none may hold a
// value the converter cannot read.
func TestCommittedCorpora(t *testing.T) {
	dirs, err := filepath.Glob("../../testdata/fuzz/Fuzz*")
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, dir := range dirs {
		if holdsUint64(t, dir) {
			continue // the system targets' words: not in the libFuzzer build
		}
		out := filepath.Join(t.TempDir(), "seed.zip")
		require.NoError(t, run(out, "", dir), dir)
		z, err := zip.OpenReader(out)
		require.NoError(t, err)
		require.NotEmpty(t, z.File, dir)
		for _, f := range z.File {
			r, err := f.Open()
			require.NoError(t, err)
			input, err := io.ReadAll(r)
			require.NoError(t, err)
			require.NotEmpty(t, input, "%s/%s", dir, f.Name)
		}
		require.NoError(t, z.Close())
	}
	world, err := os.ReadDir("../../testdata/fuzz/Fuzz" + "World")
	require.NoError(t, err)
	for _, e := range world {
		text, err := os.ReadFile(filepath.Join("../../testdata/fuzz/Fuzz"+"World", e.Name()))
		require.NoError(t, err)
		input, ok, err := convert(text)
		require.NoError(t, err)
		require.True(t, ok)
		require.Len(t, input, 21, "%s: one byte per choice", e.Name())
	}
}

// holdsUint64 reports whether a corpus holds uint64 values, which only
// targets outside the libFuzzer build take. (Target names are not spelled
// out in this directory: compile_native_go_fuzzer greps the fuzz package's
// directory, this one included, for the file that holds a target.)
func holdsUint64(t *testing.T, dir string) bool {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	for _, f := range files {
		text, err := os.ReadFile(f)
		require.NoError(t, err)
		if strings.Contains(string(text), "\nuint64(") {
			return true
		}
	}
	return false
}
