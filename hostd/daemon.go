package hostd

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// Daemon is the host daemon of one VM.
type Daemon struct {
	opts   Options
	dial   Dialer
	listen func() (net.Listener, error)
	logf   func(format string, args ...any)

	Collector *Collector

	mu       sync.Mutex
	cond     *sync.Cond
	cycles   []*Cycle
	sessions []*Session
	next     int // number of the next cycle
	resumed  chan struct{}
	wg       sync.WaitGroup
}

// New prepares a daemon. dial reaches the VM's hybrid vsock socket; listen
// binds the log collector's socket (<uds>_<LogPort>); logf receives the
// daemon's log lines (nil: discarded).
func New(opts Options, dial Dialer, listen func() (net.Listener, error), logf func(string, ...any)) *Daemon {
	opts.defaults()
	if logf == nil {
		logf = func(string, ...any) {}
	}
	d := &Daemon{opts: opts, dial: dial, listen: listen, logf: logf, Collector: &Collector{Keep: -1}, resumed: make(chan struct{}, 1)}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Options returns the options with defaults filled in.
func (d *Daemon) Options() Options { return d.opts }

// SetListen replaces the function that binds the log collector's socket,
// for callers that need the defaulted options to build it. Call it before
// Run.
func (d *Daemon) SetListen(listen func() (net.Listener, error)) { d.listen = listen }

// Run serves the log collector and runs the start sequence after boot and
// after every Resumed call, until ctx is done.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := d.listen()
	if err != nil {
		return fmt.Errorf("hostd: log collector: %w", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.Collector.Serve(ctx, ln); err != nil {
			d.logf("hostd: log collector: %v", err)
		}
	}()
	defer d.wg.Wait()
	for {
		cctx, cancel := context.WithCancel(ctx)
		d.mu.Lock()
		n := d.next
		d.next++
		d.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.runCycle(cctx, n)
		}()
		select {
		case <-ctx.Done():
			cancel()
			<-done
			d.wakeAll()
			return nil
		case <-d.resumed:
			cancel()
			<-done
		}
	}
}

// Resumed tells the daemon the VM was resumed: the current start sequence
// stops and a new cycle begins.
func (d *Daemon) Resumed() {
	select {
	case d.resumed <- struct{}{}:
	default:
	}
}

func (d *Daemon) finishCycle(c *Cycle) {
	d.cycles = append(d.cycles, c)
	d.cond.Broadcast()
}

func (d *Daemon) wakeAll() {
	d.mu.Lock()
	d.cond.Broadcast()
	d.mu.Unlock()
}

// WaitCycle blocks until cycle n has started or given up, or ctx is done.
func (d *Daemon) WaitCycle(ctx context.Context, n int) (Cycle, error) {
	stop := context.AfterFunc(ctx, d.wakeAll)
	defer stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for _, c := range d.cycles {
			if c.N == n {
				return c.copy(), nil
			}
		}
		if ctx.Err() != nil {
			return Cycle{}, ctx.Err()
		}
		d.cond.Wait()
	}
}

// Cycles returns every finished cycle.
func (d *Daemon) Cycles() []Cycle {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Cycle, 0, len(d.cycles))
	for _, c := range d.cycles {
		out = append(out, c.copy())
	}
	return out
}

// Sessions returns every metrics session opened so far.
func (d *Daemon) Sessions() []Session {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Session, 0, len(d.sessions))
	for _, s := range d.sessions {
		out = append(out, *s)
	}
	return out
}

func (c *Cycle) copy() Cycle {
	out := *c
	out.Attempts = append([]Attempt(nil), c.Attempts...)
	return out
}
