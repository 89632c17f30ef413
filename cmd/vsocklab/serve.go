package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/programs"
	"github.com/vsocklab/vsocklab/vsockport"
)

// serveMain runs a world in real time with guestinit inside, and exposes
// the device's host side on a real Unix socket with Firecracker's hybrid
// vsock protocol: real clients (socat, the hostd binary) connect to --uds
// and write "CONNECT <port>\n". Guest-initiated connections to a port given
// with --forward are passed on to the real socket <uds>_<port>.
func serveMain(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	udsPath := fs.String("uds", "", "real Unix socket to serve the hybrid vsock protocol on (required)")
	dev := fs.String("device", emu.DefaultDevice, "device profile (vsocklab profiles lists them)")
	kernel := fs.String("kernel", emu.DefaultKernel, "guest kernel profile")
	seed := fs.Uint64("seed", 1, "world seed")
	workload := fs.String("workload", "writer total=64KiB size=4KiB every=100ms", "simulated workload of the guest's init")
	forward := fs.String("forward", "", "comma-separated host ports guest-initiated connections are forwarded to (<uds>_<port>; default: the log port)")
	var opts guestinit.Options
	var apiPort, logPort uint
	fs.UintVar(&apiPort, "api-port", vsockport.API, "init API vsock port")
	fs.UintVar(&logPort, "log-port", vsockport.Log, "host port init sends its logs to")
	fs.BoolVar(&opts.NoVsockWriteTimeout, "no-write-timeout", false, "init without the vsock write timeout (historical)")
	fs.BoolVar(&opts.KeepResetSessions, "keep-reset-sessions", false, "init that never closes reset session sockets (historical)")
	showLog := fs.Bool("log", false, "print the event log to standard error as it happens")
	lineTimeout := fs.Duration("line-timeout", defaultLineTimeout, "close a client that has sent nothing (no CONNECT line) for this long")
	maxPending := fs.Int("max-pending", defaultMaxPending, "clients accepted but not yet handed to the device; more wait in the kernel's listen queue")
	maxConns := fs.Int("max-connections", 0, "device connection limit (0: the device's own, 1023 for every modelled device; others model no real device)")
	logLimit := fs.Int("log-limit", 0, "event log records kept in memory (0: the real-time default, lab.LiveLogLimit; negative: all)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *udsPath == "" {
		fmt.Fprintln(os.Stderr, "vsocklab serve: --uds is required")
		return 2
	}
	if apiPort > 0xffffffff || logPort > 0xffffffff {
		fmt.Fprintln(os.Stderr, "vsocklab serve: ports must fit in 32 bits")
		return 2
	}
	opts.APIPort, opts.LogPort = uint32(apiPort), uint32(logPort)
	var ports []uint32
	if *forward == "" {
		*forward = strconv.FormatUint(uint64(logPort), 10)
	}
	for _, f := range strings.Split(*forward, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vsocklab serve: --forward %q: not a port\n", f)
			return 2
		}
		ports = append(ports, uint32(p))
	}

	if *maxPending <= 0 || *lineTimeout <= 0 {
		fmt.Fprintln(os.Stderr, "vsocklab serve: --max-pending and --line-timeout must be positive")
		return 2
	}

	l, err := lab.Start(lab.Config{
		Config:   emu.Config{Device: *dev, Kernel: *kernel, Seed: *seed, MaxConnections: *maxConns},
		LogLimit: *logLimit,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab serve:", err)
		return 2
	}
	defer l.Stop()
	if *showLog {
		_ = l.Do(func(w *emu.World) error {
			w.Eng.Log.OnRecord(func(r engine.Record) { fmt.Fprintln(os.Stderr, r.String()) })
			return nil
		})
	}
	ln, err := listenUnix(*udsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsocklab serve:", err)
		return 1
	}
	defer func() {
		ln.Close() // a net.UnixListener unlinks the path it bound
		fmt.Fprintf(os.Stderr, "vsocklab serve: removed %s\n", *udsPath)
	}()

	for _, p := range ports {
		if err := forwardGuestPort(l, *udsPath, p); err != nil {
			fmt.Fprintln(os.Stderr, "vsocklab serve:", err)
			return 1
		}
	}
	programs.StartInit(l, opts, strings.Fields(*workload))
	fmt.Fprintf(os.Stderr, "vsocklab serve: %s/%s on %s (init API on guest port %d)\n", *dev, *kernel, *udsPath, opts.APIPort)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv := &server{lab: l, lineTimeout: *lineTimeout, maxPending: *maxPending, logf: serveLogf}
	if err := srv.serve(ctx, ln); err != nil {
		fmt.Fprintf(os.Stderr, "vsocklab serve: %v; stopping\n", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "vsocklab serve: signalled; stopping")
	return 0
}

func serveLogf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vsocklab serve: "+format+"\n", args...)
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
		fmt.Fprintf(os.Stderr, "vsocklab serve: removed stale socket %s (nothing listened on it)\n", path)
	}
	return net.Listen("unix", path)
}

// forwardGuestPort listens on the emulated <uds>_<port> and passes each
// connection the guest makes there on to the real <realUDS>_<port>. If
// nothing listens on the real path the emulated connection is closed; the
// guest then sees a connection that ends at once rather than Firecracker's
// RST, because the device had already accepted it.
func forwardGuestPort(l *lab.Lab, realUDS string, port uint32) error {
	suffix := "_" + strconv.FormatUint(uint64(port), 10)
	emuLn, err := l.Host.Listen(l.Host.UDSPath() + suffix)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := emuLn.Accept()
			if err != nil {
				return
			}
			go func() {
				real, err := net.Dial("unix", realUDS+suffix)
				if err != nil {
					c.Close()
					return
				}
				lab.Bridge(real, c)
			}()
		}
	}()
	return nil
}
