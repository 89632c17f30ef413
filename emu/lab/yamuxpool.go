package lab

import (
	"sync"
	_ "unsafe" // go:linkname

	_ "github.com/hashicorp/yamux" // the package whose timerPool is linked below
)

// yamuxTimerPool is hashicorp/yamux's package-level timer pool
// (hashicorp/yamux util.go, timerPool, v0.1.2): a *sync.Pool of
// *time.Timer that Session.waitForSendErr and Session.sendNoWait
// (session.go) take a timer from and put it back into. A timer made in
// one synctest bubble and taken from the pool in another crashes the
// second ("select on synctest channel from outside bubble"), so each
// bubble gets a pool of its own (freshYamuxTimerPool).
//
// A pull linkname to a third-party package's variable: should yamux
// rename or drop timerPool, the link fails ("relocation target not
// defined") rather than the lab silently losing its guard. go.mod pins
// v0.1.2; whoever upgrades yamux rereads its pools.
//
//go:linkname yamuxTimerPool github.com/hashicorp/yamux.timerPool
var yamuxTimerPool *sync.Pool

// freshYamuxTimerPool replaces yamux's timer pool with an empty one that
// makes timers as yamux's own does. Called with bubbles held, before a
// bubble starts and after it ends: every timer a bubble takes from the
// pool was then made in that bubble, and no timer of an ended bubble is
// ever reachable from the pool again. It replaces forcing two garbage
// collections before and after each bubble to empty every sync.Pool
// (which cost about 1.5 ms per bubble, a third of a small fuzz exec): of
// the packages the lab runs in bubbles (guestinit, hostd, yamux, the
// standard library), yamux's is the only pool that holds timers or
// channels (docs/sources.md#go-yamux-timer-pool).
func freshYamuxTimerPool() {
	yamuxTimerPool = &sync.Pool{New: yamuxTimerPool.New}
}
