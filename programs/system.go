// Package programs boots this repository's real programs inside the lab: the
// guest init (package guestinit, with simulated workloads) and the host
// daemon (package hostd), wired to the emulated vsock device exactly as
// they would be to AF_VSOCK and Firecracker's Unix socket. Trace replay and
// the system fuzz targets build on it.
package programs

import (
	"fmt"
	"time"

	"context"
	"net"
	"strconv"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
)

// System is init and hostd running in one lab.
type System struct {
	L     *lab.Lab
	Init  *guestinit.Init
	Env   *labenv.Env
	Hostd *hostd.Daemon

	stdoutOrder orderCheck // see Stdout
}

// StartInit starts guestinit with the workload in the guest.
func StartInit(l *lab.Lab, opts guestinit.Options, workload []string) (*guestinit.Init, *labenv.Env) {
	env := &labenv.Env{L: l}
	in := guestinit.New(env, opts)
	l.Go(func(ctx context.Context) {
		if err := in.Run(ctx, guestinit.Workload{Args: workload}); err != nil {
			env.Logf("%v", err)
		}
	})
	return in, env
}

// StartHostd starts the host daemon against the lab's device socket.
func StartHostd(l *lab.Lab, opts hostd.Options) *hostd.Daemon {
	uds := l.Host.UDSPath()
	dial := func(context.Context) (net.Conn, error) { return l.Host.Dial(uds) }
	d := hostd.New(opts, dial, nil, func(format string, args ...any) { l.Logf("hostd", format, args...) })
	logPort := d.Options().LogPort
	d.SetListen(func() (net.Listener, error) {
		return l.Host.Listen(uds + "_" + strconv.FormatUint(uint64(logPort), 10))
	})
	l.Go(func(ctx context.Context) {
		if err := d.Run(ctx); err != nil {
			l.Logf("hostd", "%v", err)
		}
	})
	return d
}

// Start boots both programs: hostd first, so that its log collector
// listens before init's first log connection.
func Start(l *lab.Lab, initOpts guestinit.Options, workload []string, hostdOpts hostd.Options) *System {
	hostdOpts.APIPort = orDefault(hostdOpts.APIPort, initOpts.APIPort)
	hostdOpts.LogPort = orDefault(hostdOpts.LogPort, initOpts.LogPort)
	d := StartHostd(l, hostdOpts)
	in, env := StartInit(l, initOpts, workload)
	return &System{L: l, Init: in, Env: env, Hostd: d}
}

func orDefault(v, fallback uint32) uint32 {
	if v != 0 {
		return v
	}
	return fallback
}

// Workload returns the simulated workload process, once started.
func (s *System) Workload() *labenv.Process {
	if ps := s.Env.Processes(); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// Resume restores the VM and tells hostd, as the VMM's resume hook does.
func (s *System) Resume() error {
	if err := s.L.Resume(); err != nil {
		return err
	}
	s.Hostd.Resumed()
	return nil
}

// WaitCycle waits up to timeout of virtual time for hostd's start sequence
// n (0 is the boot, then one per resume).
func (s *System) WaitCycle(n int, timeout time.Duration) (hostd.Cycle, error) {
	ctx, cancel := context.WithTimeout(s.L.Context(), timeout)
	defer cancel()
	c, err := s.Hostd.WaitCycle(ctx, n)
	if err != nil {
		return c, fmt.Errorf("cycle %d did not finish within %s", n, timeout)
	}
	return c, nil
}

// SuspendResume is one snapshot cycle as a VMM runs it: suspend, stay
// suspended for pause, resume, tell hostd, and wait up to timeout for its
// start sequence n.
func (s *System) SuspendResume(n int, pause, timeout time.Duration) (hostd.Cycle, error) {
	if err := s.L.Suspend(); err != nil {
		return hostd.Cycle{}, err
	}
	time.Sleep(pause)
	if err := s.Resume(); err != nil {
		return hostd.Cycle{}, err
	}
	return s.WaitCycle(n, timeout)
}
