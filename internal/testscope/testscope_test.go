package testscope

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunsFollowsTheEnvironment(t *testing.T) {
	t.Setenv(Env, "")
	require.False(t, Full())
	require.Equal(t, 3, Runs(t, 3, 20))
	t.Setenv(Env, "1")
	require.True(t, Full())
	require.Equal(t, 20, Runs(t, 3, 20))
}
