package guestinit

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// Init's pumps read the workload's output while another goroutine waits
// for the workload (Init.Run); what the workload wrote before it exited
// must still be read in full after Wait has returned.
func TestRealWorkloadOutputSurvivesWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var env RealEnv
	p, err := env.StartWorkload(ctx, Workload{Args: []string{"sh", "-c", "head -c 40000 /dev/zero; echo done >&2"}})
	require.NoError(t, err)

	code, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, code)

	out, err := io.ReadAll(p.Stdout())
	require.NoError(t, err)
	require.Len(t, out, 40000)
	errOut, err := io.ReadAll(p.Stderr())
	require.NoError(t, err)
	require.Equal(t, "done\n", string(errOut))
}

// A process the workload leaves behind keeps the pipe's write end open;
// when init's context ends, the pump's read must return instead of
// waiting for that process.
func TestRealWorkloadPumpEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var env RealEnv
	p, err := env.StartWorkload(ctx, Workload{Args: []string{"sh", "-c", "sleep 10 & echo started"}})
	require.NoError(t, err)
	_, err = p.Wait()
	require.NoError(t, err)

	line := make([]byte, len("started\n"))
	_, err = io.ReadFull(p.Stdout(), line)
	require.NoError(t, err)
	require.Equal(t, "started\n", string(line))

	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(p.Stdout()); done <- err }()
	cancel()
	require.Error(t, <-done)
}
