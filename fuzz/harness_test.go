package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/engine"
)

func TestPattern(t *testing.T) {
	p := make([]byte, 3*patternPeriod+17)
	fillPattern(p, 12345)
	require.NoError(t, checkPattern(p, 12345))
	for i := 0; i < 1000; i++ {
		require.Equal(t, byte((uint32(12345+i)*0x9e3779b1)>>24), p[i])
	}
	// A chunk at the wrong offset is caught, whatever size a model moves.
	for _, shift := range []uint64{1, 4096, 32768, 65536, 212992} {
		require.Error(t, checkPattern(p[:70000], 12345+shift), "shift %d", shift)
	}
	p[2*patternPeriod+5]++
	require.ErrorContains(t, checkPattern(p, 12345), "offset 2109496")
}

func TestRunUntilBounded(t *testing.T) {
	eng := engine.New(1)
	var loop func()
	loop = func() { eng.After(0, loop) } // an event that reschedules itself at the same instant
	eng.After(0, loop)
	var np *engine.NoProgressError
	require.ErrorAs(t, settle(eng), &np)
}

func TestInput(t *testing.T) {
	w := &input{b: []byte{1, 2, 3}}
	require.Equal(t, byte(1), w.u8())
	require.Equal(t, uint16(0x0302), w.u16())
	require.True(t, w.done())
	require.Equal(t, uint32(0), w.u32())
}
