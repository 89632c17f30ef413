// Command hostd is the host daemon of one microVM: it collects the guest's
// log streams on <uds>_<log-port>, confirms with init's status check after
// boot and after every resume (send SIGUSR1 after resuming the VM), and
// holds a metrics session. Each finished cycle is printed as one JSON line.
//
//	hostd --uds /path/to/v.sock
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/vsockport"
)

func main() {
	var opts hostd.Options
	var apiPort, logPort uint
	uds := flag.String("uds", "", "the VM's hybrid vsock Unix socket (Firecracker's uds_path)")
	logDir := flag.String("log-dir", "", "write each collected stream to <dir>/<stream>.log (default: standard error)")
	flag.UintVar(&apiPort, "api-port", vsockport.API, "vsock port of the guest's init API")
	flag.UintVar(&logPort, "log-port", vsockport.Log, "vsock port the guest sends its logs to")
	flag.BoolVar(&opts.SessionFirst, "session-first", false, "open the metrics session before the status check (seed 003's unlucky order)")
	flag.BoolVar(&opts.StatusOnly, "status-only", false, "run the status check alone, without the metrics session")
	flag.DurationVar(&opts.Backoff.Initial, "backoff-initial", 50*time.Millisecond, "first retry wait")
	flag.DurationVar(&opts.Backoff.Max, "backoff-max", 5*time.Second, "longest retry wait")
	flag.DurationVar(&opts.Backoff.GiveUp, "give-up", 60*time.Second, "the status check gives up after this long")
	cycles := flag.Int("cycles", 0, "exit after this many finished cycles (0: run until signalled)")
	flag.Parse()
	if *uds == "" {
		fmt.Fprintln(os.Stderr, "hostd: --uds is required")
		os.Exit(2)
	}
	if opts.SessionFirst && opts.StatusOnly {
		fmt.Fprintln(os.Stderr, "hostd: --session-first and --status-only contradict each other")
		os.Exit(2)
	}
	if apiPort > 0xffffffff || logPort > 0xffffffff {
		fmt.Fprintln(os.Stderr, "hostd: ports must fit in 32 bits")
		os.Exit(2)
	}
	opts.APIPort, opts.LogPort = uint32(apiPort), uint32(logPort)

	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", *uds)
	}
	logPath := *uds + "_" + strconv.FormatUint(uint64(logPort), 10)
	listen := func() (net.Listener, error) {
		_ = os.Remove(logPath)
		return net.Listen("unix", logPath)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format(time.RFC3339Nano)+" "+format+"\n", args...)
	}
	d := hostd.New(opts, dial, listen, logf)
	d.Collector.Keep = 0
	d.Collector.Sink = sink(*logDir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			d.Resumed()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		enc := json.NewEncoder(os.Stdout)
		for n := 0; *cycles == 0 || n < *cycles; n++ {
			c, err := d.WaitCycle(ctx, n)
			if err != nil {
				return
			}
			_ = enc.Encode(report(c))
		}
		cancel()
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Remove(logPath)
}

type cycleReport struct {
	Cycle           int      `json:"cycle"`
	Started         bool     `json:"started"`
	TimeToStartedMS float64  `json:"time_to_started_ms"`
	FailedAttempts  []string `json:"failed_attempts,omitempty"`
	Error           string   `json:"error,omitempty"`
}

func report(c hostd.Cycle) cycleReport {
	r := cycleReport{Cycle: c.N, Started: c.Started, TimeToStartedMS: float64(c.TimeToStarted) / float64(time.Millisecond), Error: c.Err}
	for _, a := range c.Attempts {
		if a.Err != "" {
			r.FailedAttempts = append(r.FailedAttempts, fmt.Sprintf("%s port=%d at=%s: %s", a.Step, a.HostPort, a.At, a.Err))
		}
	}
	return r
}

// sink writes collected bytes to per-stream files, or to standard error.
func sink(dir string) func(string, []byte) {
	var mu sync.Mutex
	files := map[string]*os.File{}
	return func(stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if dir == "" {
			os.Stderr.Write(p)
			return
		}
		f, ok := files[stream]
		if !ok {
			var err error
			f, err = os.OpenFile(filepath.Join(dir, filepath.Base(stream)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				fmt.Fprintf(os.Stderr, "hostd: %v\n", err)
				return
			}
			files[stream] = f
		}
		f.Write(p)
	}
}
