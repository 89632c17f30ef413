package lab

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
)

// With ReachRealSockets, a connect in the world to a path nobody in the
// world listens on reaches the real Unix socket there, byte for byte; a
// path with no real listener fails as a real connect does.
func TestReachRealSocketsBridgesToRealListeners(t *testing.T) {
	w, err := emu.NewExternal(emu.Config{})
	require.NoError(t, err)
	l := StartWorld(w)
	defer l.Stop()
	require.Nil(t, l.Guest, "no guest model, no guest API")
	l.Host.ReachRealSockets()

	path := filepath.Join(t.TempDir(), "v.sock_5000")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()

	c, err := l.Host.Dial(path)
	require.NoError(t, err)
	defer c.Close()
	real, err := ln.Accept()
	require.NoError(t, err)
	defer real.Close()
	_, err = c.Write([]byte("to the real side"))
	require.NoError(t, err)
	got := make([]byte, 16)
	require.NoError(t, real.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(real, got)
	require.NoError(t, err)
	require.Equal(t, "to the real side", string(got))
	_, err = real.Write([]byte("back"))
	require.NoError(t, err)
	back := make([]byte, 4)
	_, err = io.ReadFull(c, back)
	require.NoError(t, err)
	require.Equal(t, "back", string(back))

	_, err = l.Host.Dial(filepath.Join(t.TempDir(), "nobody"))
	require.True(t, errors.Is(err, syscall.ENOENT), "%v", err)
}
