// Command guestinit is the VM's init. As PID 1 it mounts /proc, /sys and
// /dev when missing and reaps orphans; as an ordinary process it just runs
// (useful for testing on a VM with vsock, or with vsock_loopback).
//
//	guestinit [flags] -- command [args...]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/vsockport"
)

func main() {
	var opts guestinit.Options
	var apiPort, logPort uint
	flag.UintVar(&apiPort, "api-port", vsockport.API, "vsock port of the init API")
	flag.UintVar(&logPort, "log-port", vsockport.Log, "host vsock port of the log collector")
	flag.DurationVar(&opts.VsockWriteTimeout, "write-timeout", 2*time.Second, "abandon a log write to the vsock after this long, with a warning")
	flag.BoolVar(&opts.NoVsockWriteTimeout, "no-write-timeout", false, "historical: let log writes block for as long as the vsock does")
	flag.BoolVar(&opts.KeepResetSessions, "keep-reset-sessions", false, "historical: never close a session's socket after a transport reset")
	flag.DurationVar(&opts.MetricsInterval, "metrics-interval", time.Second, "period of samples on the metrics session")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] -- command [args...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if apiPort > 0xffffffff || logPort > 0xffffffff {
		fmt.Fprintln(os.Stderr, "guestinit: ports must fit in 32 bits")
		os.Exit(2)
	}
	opts.APIPort, opts.LogPort = uint32(apiPort), uint32(logPort)

	env := &guestinit.RealEnv{}
	if err := guestinit.BootAsPID1(env.Logf); err != nil {
		env.Logf("init: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	in := guestinit.New(env, opts)
	if err := in.Run(ctx, guestinit.Workload{Args: flag.Args()}); err != nil {
		env.Logf("%v", err)
		os.Exit(1)
	}
}
