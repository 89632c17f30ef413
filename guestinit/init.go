// Package guestinit is the VM's init: it starts the workload with stdout
// and stderr on pipes, pumps them into vsock streams to the host's log
// collector, and serves the init API (a status check and a long-lived
// yamux session carrying CPU and memory samples) on one vsock port.
//
// The same code runs as PID 1 of a real Firecracker or Cloud Hypervisor VM
// (RealEnv, AF_VSOCK) and inside the lab (package guestinit/labenv), because
// everything it needs from the outside comes through Env.
//
// Two behaviours that caused incidents are options, named for what they
// do and off by default, so an incident can be replayed with the init that
// had it and with the init that fixed it:
//   - Options.NoVsockWriteTimeout: log writes to the vsock block for as long
//     as the vsock does (seed 000's stdout wedge); by default a write that
//     makes no progress for VsockWriteTimeout is abandoned with a warning
//     and the pipe keeps draining.
//   - Options.KeepResetSessions: the socket under a long-lived session is
//     never closed after the transport resets it (seed 003's leak).
package guestinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/vsockport"
)

// Env is what init needs from the machine it runs on.
type Env interface {
	// ListenVsock listens on a vsock port of this VM.
	ListenVsock(port uint32) (net.Listener, error)
	// DialVsock connects to a vsock port of another context (the host is
	// CID 2).
	DialVsock(ctx context.Context, cid uint64, port uint32) (net.Conn, error)
	// StartWorkload starts the workload with stdout and stderr on pipes.
	StartWorkload(ctx context.Context, w Workload) (Process, error)
	// Logf writes one of init's own log lines.
	Logf(format string, args ...any)
}

// Workload says what to run: a command line on a real machine, a named
// simulated workload in the lab (see labenv).
type Workload struct {
	Args []string
	Env  []string
}

// Process is a started workload.
type Process interface {
	Stdout() io.Reader
	Stderr() io.Reader
	// Wait blocks until the workload exits and returns its exit code.
	Wait() (int, error)
	// Usage samples CPU time and resident memory.
	Usage() Usage
}

// Usage is one resource sample of the workload.
type Usage struct {
	CPU time.Duration `json:"cpu_ns"`
	RSS uint64        `json:"rss_bytes"`
}

// HostCID is the host's context ID.
const HostCID = 2

// Options configure init. The zero value is the current, fixed behaviour
// with the default ports.
type Options struct {
	// APIPort is the vsock port of the init API (default vsockport.API).
	APIPort uint32
	// LogPort is the host port that receives stdout and stderr
	// (guest-initiated, default vsockport.Log).
	LogPort uint32
	// VsockWriteTimeout bounds how long one write to a log stream may make
	// no progress before its bytes are dropped with a warning (default 2s).
	VsockWriteTimeout time.Duration
	// NoVsockWriteTimeout restores the historical behaviour: log writes
	// block for as long as the vsock does.
	NoVsockWriteTimeout bool
	// KeepResetSessions restores the historical leak: after a transport
	// reset the long-lived session's socket is never closed.
	KeepResetSessions bool
	// MetricsInterval is the period of samples on the session (default 1s).
	MetricsInterval time.Duration
	// ReadChunk is how much init reads from a pipe at once (default 64 KiB).
	ReadChunk int
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
	if o.VsockWriteTimeout == 0 {
		o.VsockWriteTimeout = 2 * time.Second
	}
	if o.MetricsInterval == 0 {
		o.MetricsInterval = time.Second
	}
	if o.ReadChunk == 0 {
		o.ReadChunk = 64 * 1024
	}
}

// Init is a running init.
type Init struct {
	env  Env
	opts Options

	mu       sync.Mutex
	proc     Process
	exited   bool
	exitCode int
	stats    Stats
}

// Stats counts what init did.
type Stats struct {
	LogBytesRead    map[string]uint64 // per stream, from the pipes
	LogBytesSent    map[string]uint64 // per stream, accepted by the vsock
	LogBytesDropped map[string]uint64 // per stream, abandoned after a write timeout
	WriteTimeouts   int
	Sessions        int // long-lived sessions opened
	SessionsLeaked  int // sessions whose socket was kept after a reset
}

// New prepares an init.
func New(env Env, opts Options) *Init {
	opts.defaults()
	return &Init{env: env, opts: opts, stats: Stats{
		LogBytesRead: map[string]uint64{}, LogBytesSent: map[string]uint64{}, LogBytesDropped: map[string]uint64{},
	}}
}

// Options returns the options with defaults filled in.
func (in *Init) Options() Options { return in.opts }

// Stats returns a copy of init's counters.
func (in *Init) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.stats
	s.LogBytesRead = cloneMap(s.LogBytesRead)
	s.LogBytesSent = cloneMap(s.LogBytesSent)
	s.LogBytesDropped = cloneMap(s.LogBytesDropped)
	return s
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Run starts the workload and serves until ctx is done. It returns when
// the API server and the log pumps have stopped.
func (in *Init) Run(ctx context.Context, w Workload) error {
	ln, err := in.env.ListenVsock(in.opts.APIPort)
	if err != nil {
		return fmt.Errorf("init: listen on vsock port %d: %w", in.opts.APIPort, err)
	}
	proc, err := in.env.StartWorkload(ctx, w)
	if err != nil {
		ln.Close()
		return fmt.Errorf("init: start workload: %w", err)
	}
	in.mu.Lock()
	in.proc = proc
	in.mu.Unlock()
	in.env.Logf("init: workload started, API on vsock port %d, logs to host port %d", in.opts.APIPort, in.opts.LogPort)

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); in.pump(ctx, "stdout", proc.Stdout()) }()
	go func() { defer wg.Done(); in.pump(ctx, "stderr", proc.Stderr()) }()
	go func() {
		defer wg.Done()
		code, err := proc.Wait()
		in.mu.Lock()
		in.exited, in.exitCode = true, code
		in.mu.Unlock()
		if err != nil {
			in.env.Logf("init: workload wait: %v", err)
		}
		in.env.Logf("init: workload exited with code %d", code)
	}()
	go func() { defer wg.Done(); in.serveAPI(ctx, ln) }()
	wg.Wait()
	return nil
}

// Status is the answer of the status endpoint.
type Status struct {
	Workload string `json:"workload"` // "starting", "running" or "exited"
	ExitCode *int   `json:"exit_code,omitempty"`
}

func (in *Init) status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.proc == nil:
		return Status{Workload: "starting"}
	case in.exited:
		code := in.exitCode
		return Status{Workload: "exited", ExitCode: &code}
	}
	return Status{Workload: "running"}
}

// isReset reports whether err says the transport reset the connection.
func isReset(err error) bool {
	return errors.Is(err, errConnReset) || errors.Is(err, errNotConn)
}
