package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/programs"
	"github.com/vsocklab/vsocklab/virtio"
	"github.com/vsocklab/vsocklab/vsockport"
)

const serveHelp = `usage: vsocklab serve --uds PATH [flags]

Runs a world in real time with guestinit inside and serves the device's
host side on the real Unix socket PATH with Firecracker's hybrid vsock
protocol: a client connects to PATH and writes "CONNECT <port>\n" (socat,
hostd --uds PATH). A connection the guest opens to host port P goes to the
real socket PATH_P at connect time; if nothing listens there the device
refuses it at once, as Firecracker answers RST.

Signals:
  SIGUSR1       suspend the VM as a snapshot does: host connections close,
                the guest freezes, new clients wait on PATH for the resume
  SIGUSR2       resume it as a restore does (then send hostd its SIGUSR1)
  SIGINT/TERM   stop; print a summary (connections, bytes, packets, resets)

Standard error gets one line per connection and per state change; --log
adds the event log's records of the kinds given.

Flags:
`

// serveMain runs `vsocklab serve`: see serveHelp.
func serveMain(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveHelp)
		fs.PrintDefaults()
	}
	udsPath := fs.String("uds", "", "real Unix socket to serve the hybrid vsock protocol on (required)")
	dev := fs.String("device", emu.DefaultDevice, "device profile (vsocklab profiles lists them)")
	kernel := fs.String("kernel", emu.DefaultKernel, "guest kernel profile")
	seed := fs.Uint64("seed", 1, "world seed")
	workload := fs.String("workload", "writer total=64KiB size=4KiB every=100ms", "simulated workload of the guest's init")
	forward := fs.String("forward", "", "deprecated and ignored: every guest connect goes to the real <uds>_<port>")
	var opts guestinit.Options
	var apiPort, logPort uint
	fs.UintVar(&apiPort, "api-port", vsockport.API, "init API vsock port")
	fs.UintVar(&logPort, "log-port", vsockport.Log, "host port init sends its logs to")
	fs.BoolVar(&opts.NoVsockWriteTimeout, "no-write-timeout", false, "init without the vsock write timeout (historical)")
	fs.BoolVar(&opts.KeepResetSessions, "keep-reset-sessions", false, "init that never closes reset session sockets (historical)")
	logKinds := fs.String("log", "", "also print event log records of these kinds as they happen (packet,conn,credit,host,program,fault,invariant,world, or all)")
	lineTimeout := fs.Duration("line-timeout", lab.DefaultLineTimeout, "close a client that has sent nothing (no CONNECT line) for this long")
	maxPending := fs.Int("max-pending", lab.DefaultMaxPending, "clients accepted but not yet handed to the device; more wait in the kernel's listen queue")
	maxConns := fs.Int("max-connections", 0, "device connection limit (0: the device's own, 1023 for every modelled device; others model no real device)")
	logLimit := fs.Int("log-limit", 0, "event log records kept in memory (0: the real-time default, lab.LiveLogLimit; negative: all)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var kinds engine.Kind
	if *logKinds != "" {
		k, err := engine.ParseKinds(*logKinds)
		if err != nil {
			if strings.HasPrefix(*logKinds, "-") {
				err = fmt.Errorf("it takes a list of kinds now; the old bare --log is --log all")
			}
			fmt.Fprintf(os.Stderr, "vsocklab serve: --log %s: %v\n", *logKinds, err)
			return 2
		}
		kinds = k
	}
	if *udsPath == "" {
		fmt.Fprintln(os.Stderr, "vsocklab serve: --uds is required")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vsocklab serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if apiPort > 0xffffffff || logPort > 0xffffffff {
		fmt.Fprintln(os.Stderr, "vsocklab serve: ports must fit in 32 bits")
		return 2
	}
	opts.APIPort, opts.LogPort = uint32(apiPort), uint32(logPort)
	if *maxPending <= 0 || *lineTimeout <= 0 {
		fmt.Fprintln(os.Stderr, "vsocklab serve: --max-pending and --line-timeout must be positive")
		return 2
	}
	if *forward != "" {
		fmt.Fprintf(os.Stderr, "vsocklab serve: --forward %s is no longer needed and is ignored: a guest connect to any host port P goes to %s_P, refused when nothing listens there\n", *forward, *udsPath)
	}

	// The world's device socket has the real path, so that the device's
	// <uds>_<port> for guest connects is the real one and every message
	// names real sockets.
	l, err := lab.Start(lab.Config{
		Config:   emu.Config{Device: *dev, Kernel: *kernel, Seed: *seed, MaxConnections: *maxConns, UDSPath: *udsPath},
		LogLimit: *logLimit,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab serve:", err)
		return 2
	}
	defer l.Stop()
	// Signals are caught before the socket exists: a client (or a test)
	// that sees the socket may signal at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	usr := make(chan os.Signal, 4)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(usr)
	ln, err := listenUnix(*udsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab serve:", err)
		return 1
	}
	defer func() {
		ln.Close() // a net.UnixListener unlinks the path it bound
		serveLogf("removed %s", *udsPath)
	}()

	s := newServeSession(l, serveLogf)
	s.srv.LineTimeout, s.srv.MaxPending = *lineTimeout, *maxPending
	if kinds != 0 {
		_ = l.Do(func(w *emu.World) error {
			w.Eng.Log.OnRecord(func(r engine.Record) {
				if r.Kind&kinds != 0 {
					fmt.Fprintln(os.Stderr, r.String())
				}
			})
			return nil
		})
	}
	programs.StartInit(l, opts, strings.Fields(*workload))
	serveLogf("%s/%s on %s (init API on guest port %d; SIGUSR1 suspends, SIGUSR2 resumes)", *dev, *kernel, *udsPath, opts.APIPort)

	go func() {
		for {
			select {
			case sig := <-usr:
				if sig == syscall.SIGUSR1 {
					s.suspend()
				} else {
					s.resume()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	err = s.srv.Serve(ctx, ln)
	s.gate.Close()
	serveLogf("%s", s.summary())
	if err != nil {
		serveLogf("%v; stopped", err)
		return 1
	}
	serveLogf("signalled; stopped")
	return 0
}

func serveLogf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vsocklab serve: "+format+"\n", args...)
}

// serveSession is serve's host side over a running lab: the hybrid
// server, guest connects reaching real sockets, suspend and resume, and
// the concise log — one line per connection and per state change.
type serveSession struct {
	l    *lab.Lab
	srv  *lab.HybridServer
	gate *lab.DeviceGate
	logf func(format string, args ...any)

	mu                          sync.Mutex // orders suspend and resume
	suspended                   bool       // under mu
	guestConnects, guestRefused atomic.Uint64
}

func newServeSession(l *lab.Lab, logf func(format string, args ...any)) *serveSession {
	s := &serveSession{l: l, gate: lab.NewDeviceGate(), logf: logf}
	s.gate.Up()
	uds := l.Host.UDSPath()
	s.srv = &lab.HybridServer{
		Host: l.Host, WaitDevice: s.gate.Wait, Logf: logf,
		OnClient: func(c lab.HybridClient) { logf("host client on %s: %s", uds, c) },
	}
	// A guest connect to host port P dials the real <uds>_P then and
	// there; when that fails the device refuses the guest, as Firecracker
	// does: FC@v1.14.0 src/vmm/src/devices/virtio/vsock/unix/muxer.rs,
	// VsockMuxer::handle_peer_request_pkt, UnixStream::connect(port_path)
	// ... unwrap_or_else(|_| self.enq_rst(..)).
	l.Host.ReachRealSocketsNotify(func(path string, err error) {
		s.guestConnects.Add(1)
		if err != nil {
			s.guestRefused.Add(1)
			logf("guest connect to %s: refused, the device answers RST (%v)", path, unwrapSyscall(err))
			return
		}
		logf("guest connect to %s: connected", path)
	})
	return s
}

// unwrapSyscall shortens a net.OpError to its errno's text.
func unwrapSyscall(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// suspend snapshots the VM, as Firecracker's snapshot does: the device
// posts its transport reset and goes with every host connection; new
// clients wait at the gate until resume.
func (s *serveSession) suspend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate.Down()
	if err := s.l.Suspend(); err != nil {
		if !s.suspended {
			s.gate.Up()
		}
		s.logf("SIGUSR1: %v", err)
		return
	}
	s.suspended = true
	s.logf("suspended (snapshot): host connections closed, guest frozen; new clients wait for the resume")
}

// resume restores the VM from the snapshot and lets waiting clients in.
func (s *serveSession) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.l.Resume(); err != nil {
		s.logf("SIGUSR2: %v", err)
		return
	}
	s.suspended = false
	s.gate.Up()
	var cycles int
	_ = s.l.Do(func(w *emu.World) error { cycles = w.Cycles(); return nil })
	s.logf("resumed (restore, cycle %d): the guest sees the transport reset", cycles)
}

// serveSummary is what serve did, printed on exit.
type serveSummary struct {
	Host                      lab.HybridStats
	GuestConnects, GuestFails uint64
	Packets, Bytes, Resets    [2]uint64 // [device.Dir]
	Cycles                    int
}

func (s *serveSession) summary() serveSummary {
	sum := serveSummary{Host: s.srv.Stats(), GuestConnects: s.guestConnects.Load(), GuestFails: s.guestRefused.Load()}
	_ = s.l.Do(func(w *emu.World) error {
		c := w.Counters()
		for dir := range c.Packets {
			for _, n := range c.Packets[dir] {
				sum.Packets[dir] += n
			}
			sum.Resets[dir] = c.Packets[dir][virtio.OpRST]
		}
		sum.Bytes = c.RWBytes
		sum.Cycles = w.Cycles()
		return nil
	})
	return sum
}

func (m serveSummary) String() string {
	g, h := device.GuestToHost, device.HostToGuest
	return fmt.Sprintf("summary: host clients %d (%d answered, %d closed unanswered by the device, %d dropped before it); "+
		"guest connects %d (%d refused); data bytes %d from the guest, %d to it; packets %d from the guest, %d to it; "+
		"resets %d from the guest, %d to it; suspend/resume cycles %d",
		m.Host.Accepted, m.Host.Answered, m.Host.Refused, m.Host.Dropped,
		m.GuestConnects, m.GuestFails, m.Bytes[g], m.Bytes[h], m.Packets[g], m.Packets[h],
		m.Resets[g], m.Resets[h], m.Cycles)
}

// listenUnix binds path. A socket file already there is removed only when
// nothing answers on it (a previous run that died); a live server's socket
// or a file that is not a socket is an error, never silently replaced.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; not replacing it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server is listening there", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s exists and cannot be probed (%v); not replacing it", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		serveLogf("removed stale socket %s (nothing listened on it)", path)
	}
	return net.Listen("unix", path)
}
