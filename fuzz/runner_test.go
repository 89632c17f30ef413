package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
)

func TestRunnerFor(t *testing.T) {
	require.Equal(t, lab.T(t), runnerFor(t), "go test: the test's own T")
	// Any other t is go-118-fuzz-build's stand-in, whose type exists only
	// in the libFuzzer build.
	type standIn struct{ TempDirs []string }
	require.Equal(t, lab.Hosted(), runnerFor(&standIn{}), "libFuzzer: the hosted framework")
}
