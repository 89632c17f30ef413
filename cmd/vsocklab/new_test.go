package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/trace"
)

// Every template `vsocklab new` writes replays as written.
func TestTemplatesReplayAsWritten(t *testing.T) {
	for _, kind := range templateKinds {
		t.Run(kind, func(t *testing.T) {
			replay.RunTest(t, filepath.Join("templates", kind+".trace"))
		})
	}
}

// The workflow docs/trace.md describes: a template with every output
// emptied, rewritten once, is the template again, byte for byte.
func TestEmptiedTemplateRewritesToItself(t *testing.T) {
	for _, kind := range templateKinds {
		t.Run(kind, func(t *testing.T) {
			want, err := templates.ReadFile("templates/" + kind + ".trace")
			require.NoError(t, err)
			f, err := trace.Parse(kind, string(want))
			require.NoError(t, err)
			empty := make([]string, len(f.Directives))
			for i := range empty {
				empty[i] = "\n" // Format ends a non-empty output with "\n": "" would keep Want
			}
			text := f.Format(empty)
			require.NotContains(t, text, "verdict: ", "outputs emptied")
			path := filepath.Join(t.TempDir(), kind+".trace")
			require.NoError(t, os.WriteFile(path, []byte(text), 0o644))

			replay.RunTestWith(t, path, replay.TestConfig{Rewrite: true})
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}

func TestNewWritesTemplate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mine.trace")
	require.Equal(t, 0, newMain([]string{"--kind", "resume", path}))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	want, _ := templates.ReadFile("templates/resume.trace")
	require.Equal(t, string(want), string(got))

	require.Equal(t, 2, newMain([]string{"--kind", "wedge", path}), "an existing file is kept")
	got, _ = os.ReadFile(path)
	require.Equal(t, string(want), string(got))
	require.Equal(t, 0, newMain([]string{"--force", "--kind", "wedge", path}))
	got, _ = os.ReadFile(path)
	want, _ = templates.ReadFile("templates/wedge.trace")
	require.Equal(t, string(want), string(got))

	require.Equal(t, 0, newMain([]string{filepath.Join(dir, "default.trace")}), "wedge is the default kind")
	require.Equal(t, 2, newMain([]string{"--kind", "nope", filepath.Join(dir, "x.trace")}))
	require.Equal(t, 2, newMain(nil))
	require.Equal(t, 2, newMain([]string{"a", "b"}))
}
