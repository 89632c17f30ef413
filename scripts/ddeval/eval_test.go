// Package ddeval compares the repository's trace parser (package trace)
// with github.com/cockroachdb/datadriven v1.0.3 on the same files, to
// decide whether the lab should parse and rewrite its traces with that
// library. It is a module of its own so that the lab does not depend on
// datadriven; run it with
//
//	cd scripts/ddeval && go test -bench . -benchmem -count 5 -args -datadriven-quiet
//
// The result and the decision are in docs/trace.md ("Syntax and parser").
package ddeval

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/trace"
)

// library is every trace of the repository: the incident library, the
// faults, the templates of vsocklab new.
func library(tb testing.TB) (names, texts []string, size int64) {
	for _, glob := range []string{"../../testdata/*/*.trace", "../../cmd/vsocklab/templates/*.trace"} {
		files, err := filepath.Glob(glob)
		require.NoError(tb, err)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(tb, err)
			names, texts = append(names, f), append(texts, string(b))
			size += int64(len(b))
		}
	}
	require.NotEmpty(tb, names)
	return names, texts, size
}

// Both read the same directives, inputs and expected outputs from every
// file: the lab's files are in datadriven's syntax.
func TestSameDirectives(t *testing.T) {
	names, texts, _ := library(t)
	for i := range texts {
		f, err := trace.Parse(names[i], texts[i])
		require.NoError(t, err)
		n := 0
		datadriven.RunTestFromStringAny(t, texts[i], func(t testing.TB, d *datadriven.TestData) string {
			ours := f.Directives[n]
			n++
			require.Equal(t, ours.Cmd, d.Cmd, ours.Pos())
			require.Equal(t, strings.Join(ours.Input, "\n"), d.Input, ours.Pos())
			require.Equal(t, ours.Want, d.Expected, ours.Pos())
			return d.Expected
		})
		require.Equal(t, len(f.Directives), n, names[i])
	}
}

// Malformed files that datadriven reads without a complaint, running fewer
// directives than the file holds, where package trace names the line.
func TestMalformedFiles(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		written    int // directives in the file
		ddRuns     int // directives datadriven runs, without failing
		ours       string
	}{
		{"blank line before the separator", "world\n----\nw\n\nboot\n\nrun 1s\n----\nnow\n", 3, 2,
			`t:6: command "boot": expected input lines then "----", got a blank line`},
		{"double separator never closed", "world\n----\n----\nx\n\ny\n", 1, 1,
			`t:1: command "world": output opened with "----" twice must close with two "----" lines`},
		{"a line over 64 KiB", "world name=" + strings.Repeat("a", 70000) + "\n----\n\nboot\n----\n", 2, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := trace.Parse("t", tc.text)
			if tc.ours != "" {
				require.EqualError(t, err, tc.ours)
			} else {
				require.NoError(t, err)
				require.Len(t, f.Directives, tc.written)
			}
			n := 0
			datadriven.RunTestFromStringAny(t, tc.text, func(t testing.TB, d *datadriven.TestData) string { n++; return d.Expected })
			require.Equal(t, tc.ddRuns, n)
		})
	}
}

func BenchmarkParseTrace(b *testing.B) {
	names, texts, size := library(b)
	b.SetBytes(size)
	for b.Loop() {
		for i := range texts {
			if _, err := trace.Parse(names[i], texts[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkParseDatadriven reads the same files through datadriven, the
// only way it reads a file (a callback per directive under a testing.TB).
func BenchmarkParseDatadriven(b *testing.B) {
	_, texts, size := library(b)
	b.SetBytes(size)
	for b.Loop() {
		for i := range texts {
			datadriven.RunTestFromStringAny(b, texts[i], func(t testing.TB, d *datadriven.TestData) string { return d.Expected })
		}
	}
}
