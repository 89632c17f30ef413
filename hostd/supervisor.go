package hostd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/vsocklab/vsocklab/vsockport"
)

// Backoff is the supervisor's retry policy for connecting to init.
type Backoff struct {
	Initial time.Duration // first wait after a failure (default 50 ms)
	Max     time.Duration // cap of the doubling (default 5 s)
	GiveUp  time.Duration // the status check gives up after this long (default 60 s)
}

func (b *Backoff) defaults() {
	if b.Initial == 0 {
		b.Initial = 50 * time.Millisecond
	}
	if b.Max == 0 {
		b.Max = 5 * time.Second
	}
	if b.GiveUp == 0 {
		b.GiveUp = 60 * time.Second
	}
}

// Options configure the daemon.
type Options struct {
	APIPort uint32 // init API port in the guest (default vsockport.API)
	LogPort uint32 // host port of the log collector (default vsockport.Log)
	Backoff Backoff
	// SessionFirst opens the long-lived metrics session before the status
	// check after boot and resume: the unlucky order of seed 003, where the
	// session is the first connection to succeed and so takes the lowest
	// free device port.
	SessionFirst bool
	// StatusOnly runs the status check alone after boot and every resume,
	// with no metrics session: the smallest host side that still tells
	// whether the guest came back.
	StatusOnly bool
	// AttemptTimeout bounds one connection attempt (default 2 s).
	AttemptTimeout time.Duration
}

// WithDefaults returns the options with every unset field at its default,
// as New fills them in.
func (o Options) WithDefaults() Options {
	o.defaults()
	return o
}

func (o *Options) defaults() {
	if o.APIPort == 0 {
		o.APIPort = vsockport.API
	}
	if o.LogPort == 0 {
		o.LogPort = vsockport.Log
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	o.Backoff.defaults()
}

// Attempt is one failed or successful try to reach init.
type Attempt struct {
	Step     string        // "status" or "session"
	At       time.Duration // since the cycle started
	HostPort uint32        // the device's port for it, from the OK line (0: none)
	Err      string        // empty on success
}

// Cycle is what one boot or resume took.
type Cycle struct {
	N             int // 0 is the boot, then one per resume
	Started       bool
	TimeToStarted time.Duration
	Attempts      []Attempt
	Err           string // why the status check gave up
	SessionPort   uint32 // device port of the session opened in this cycle
}

// Failures counts the failed attempts of a step.
func (c Cycle) Failures(step string) int {
	n := 0
	for _, a := range c.Attempts {
		if a.Step == step && a.Err != "" {
			n++
		}
	}
	return n
}

// runCycle performs the start sequence of one boot or resume: the status
// check with retry (and, in the configured order, the session open). The
// cycle is reported done once the status check succeeds or gives up; a
// session opened afterwards is recorded in the same cycle.
func (d *Daemon) runCycle(ctx context.Context, n int) {
	start := time.Now()
	c := &Cycle{N: n}
	steps := []string{"status", "session"}
	switch {
	case d.opts.StatusOnly:
		steps = []string{"status"}
	case d.opts.SessionFirst:
		steps = []string{"session", "status"}
	}
	for _, step := range steps {
		if ctx.Err() != nil {
			break
		}
		switch step {
		case "status":
			err := d.statusCheck(ctx, start, c)
			d.mu.Lock()
			if err != nil {
				c.Err = err.Error()
			} else {
				c.Started = true
				c.TimeToStarted = time.Since(start)
			}
			d.finishCycle(c)
			d.mu.Unlock()
			if err == nil {
				d.logf("hostd: cycle %d: started after %s (%d failed attempts)", n, c.TimeToStarted, len(failed(c.Attempts)))
			} else if ctx.Err() == nil {
				d.logf("hostd: cycle %d: status check gave up: %v", n, err)
			}
		case "session":
			d.openSession(ctx, start, c)
		}
	}
}

func failed(as []Attempt) []Attempt {
	var out []Attempt
	for _, a := range as {
		if a.Err != "" {
			out = append(out, a)
		}
	}
	return out
}

// retry runs try with the backoff until it succeeds, ctx ends, or (when
// giveUp > 0) the next wait would pass giveUp since the step began.
func (d *Daemon) retry(ctx context.Context, cycleStart time.Time, c *Cycle, step string, giveUp time.Duration, try func(ctx context.Context) (uint32, error)) error {
	stepStart := time.Now()
	wait := d.opts.Backoff.Initial
	for {
		actx, cancel := context.WithTimeout(ctx, d.opts.AttemptTimeout)
		port, err := try(actx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a := Attempt{Step: step, At: time.Since(cycleStart), HostPort: port}
		if err != nil {
			a.Err = err.Error()
		}
		d.mu.Lock()
		c.Attempts = append(c.Attempts, a)
		d.mu.Unlock()
		if err == nil {
			return nil
		}
		from := ""
		if port != 0 {
			from = fmt.Sprintf(" from host port %d", port)
		}
		d.logf("hostd: cycle %d: %s attempt %d%s failed: %v", c.N, step, len(c.Attempts), from, err)
		if giveUp > 0 && time.Since(stepStart)+wait > giveUp {
			return fmt.Errorf("gave up after %s: %w", time.Since(stepStart), err)
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, d.opts.Backoff.Max)
	}
}

// statusCheck asks init's status endpoint until the workload runs.
func (d *Daemon) statusCheck(ctx context.Context, cycleStart time.Time, c *Cycle) error {
	return d.retry(ctx, cycleStart, c, "status", d.opts.Backoff.GiveUp, func(ctx context.Context) (uint32, error) {
		hc, err := Connect(ctx, d.dial, d.opts.APIPort)
		if err != nil {
			return 0, err
		}
		defer hc.Close()
		st, err := getStatus(hc)
		if err != nil {
			return hc.HostPort, err
		}
		if st.Workload != "running" {
			return hc.HostPort, fmt.Errorf("workload is %s", st.Workload)
		}
		return hc.HostPort, nil
	})
}

type status struct {
	Workload string `json:"workload"`
}

func getStatus(c net.Conn) (status, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://init/v1/status", nil)
	req.Close = true
	if err := req.Write(c); err != nil {
		return status{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return status{}, fmt.Errorf("status endpoint answered %s", resp.Status)
	}
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return status{}, fmt.Errorf("status endpoint: %w", err)
	}
	return st, nil
}

// Session is the long-lived metrics session to init.
type Session struct {
	N       int    // cycle that opened it
	Port    uint32 // device port
	Samples int
	Closed  bool
	Err     string
}

// openSession opens the long-lived session (HTTP upgrade to yamux) with
// retry and no give-up, then reads samples in the background until the
// session breaks.
func (d *Daemon) openSession(ctx context.Context, cycleStart time.Time, c *Cycle) {
	var sess *yamux.Session
	var stream net.Conn
	var port uint32
	err := d.retry(ctx, cycleStart, c, "session", 0, func(actx context.Context) (uint32, error) {
		hc, err := Connect(actx, d.dial, d.opts.APIPort)
		if err != nil {
			return 0, err
		}
		s, st, err := upgrade(actx, hc)
		if err != nil {
			hc.Close()
			return hc.HostPort, err
		}
		sess, stream, port = s, st, hc.HostPort
		return hc.HostPort, nil
	})
	if err != nil {
		if sess != nil { // opened, but the cycle ended meanwhile
			sess.Close()
		}
		return
	}
	rec := &Session{N: c.N, Port: port}
	d.mu.Lock()
	c.SessionPort = port
	d.sessions = append(d.sessions, rec)
	d.mu.Unlock()
	d.logf("hostd: cycle %d: metrics session open on host port %d", c.N, port)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		stop := context.AfterFunc(ctx, func() { sess.Close() })
		defer stop()
		dec := json.NewDecoder(stream)
		for {
			var s json.RawMessage
			if err := dec.Decode(&s); err != nil {
				d.mu.Lock()
				rec.Closed, rec.Err = true, err.Error()
				d.mu.Unlock()
				// A clean end of the stream leaves a healthy session to
				// close. Any other error means the session is already
				// shutting itself down; closing it again from here would
				// wait on yamux's shutdown lock for nothing.
				if err == io.EOF {
					sess.Close()
				}
				return
			}
			d.mu.Lock()
			rec.Samples++
			d.mu.Unlock()
		}
	}()
}

// upgrade turns a connection to the init API into a yamux session and
// opens the metrics stream on it.
func upgrade(ctx context.Context, c net.Conn) (*yamux.Session, net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://init/v1/session", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "yamux")
	if err := req.Write(c); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "yamux") {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("session upgrade answered %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(&bufferedConn{Conn: c, r: br}, cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := sess.Open()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	return sess, st, nil
}

// bufferedConn reads first what the HTTP parser buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
