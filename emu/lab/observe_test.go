package lab

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
)

// TestObserveSeesTheWholeInstant: a program wakes at the same virtual
// instant as the scenario and opens a listening socket. Do runs first, in
// the instant's deterministic order (world operations before sockets'),
// and does not see the socket; Observe waits for the instant to settle and
// does.
func TestObserveSeesTheWholeInstant(t *testing.T) {
	Run(t, Config{}, func(l *Lab) {
		l.Go(func(ctx context.Context) {
			time.Sleep(time.Second)
			ln, err := l.Guest.Listen(10000)
			if err == nil {
				<-ctx.Done()
				ln.Close()
			}
		})
		time.Sleep(time.Second)
		sockets := func(w *emu.World) int { return len(w.Guest.Sockets()) }
		var byDo, byObserve int // guest sockets
		require.NoError(t, l.Do(func(w *emu.World) error { byDo = sockets(w); return nil }))
		require.NoError(t, l.Observe(func(w *emu.World) error { byObserve = sockets(w); return nil }))
		require.Equal(t, 0, byDo, "Do runs before the program's listen of the same instant")
		require.Equal(t, 1, byObserve, "Observe runs after it")
		require.Equal(t, time.Second, l.Now())
	})
}
