package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/engine"
)

func TestRunUntilBounded(t *testing.T) {
	eng := engine.New(1)
	var loop func()
	loop = func() { eng.After(0, loop) } // an event that reschedules itself at the same instant
	eng.After(0, loop)
	var np *engine.NoProgressError
	require.ErrorAs(t, settle(eng), &np)
}

func TestInputReadsZeroPastTheEnd(t *testing.T) {
	w := &input{b: []byte{1, 2, 3}}
	require.Equal(t, byte(1), w.u8())
	require.Equal(t, uint16(0x0302), w.u16())
	require.True(t, w.done())
	require.Equal(t, uint32(0), w.u32())
}
