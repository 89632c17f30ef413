package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/lab"
)

// halfCloser is what the agent below uses of a connection, which
// *vsock.Conn and *lab.Conn both have.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// pingAgent is a guest agent written for github.com/mdlayher/vsock: it
// reports to the host by dialing its port reportPort ("up <listen addr>"),
// and answers each "PING" line on port with
// "PONG <local addr> <remote addr>". It is generic over the package that
// provides vsock, so the constructors are all that changes between a VM
// (onAVM) and the lab.
func pingAgent[L net.Listener, C halfCloser, Cfg any](ctx context.Context,
	listen func(port uint32, cfg *Cfg) (L, error),
	dial func(contextID, port uint32, cfg *Cfg) (C, error),
	port, reportPort uint32,
) error {
	ln, err := listen(port, nil)
	if err != nil {
		return err
	}
	defer ln.Close()
	context.AfterFunc(ctx, func() { ln.Close() })
	report, err := dial(vsock.Host, reportPort, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(report, "up %s\n", ln.Addr())
	defer report.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			r := bufio.NewScanner(c)
			for r.Scan() {
				if r.Text() == "PING" {
					fmt.Fprintf(c, "PONG %s %s\n", c.LocalAddr(), c.RemoteAddr())
				}
			}
		}()
	}
}

// onAVM starts the agent on a real VM. It is never called here (there is
// no AF_VSOCK); that it compiles is the check that the lab's constructors
// in TestAgentWrittenForMdlayherVsock take exactly the place of the real
// package's.
func onAVM(ctx context.Context) error {
	return pingAgent(ctx, vsock.Listen, vsock.Dial, 1024, 9000)
}

var _ = onAVM

// The method sets an agent may use, minus SyscallConn and FileListener
// (the lab's sockets have no file descriptors): both packages have them.
type mdlayherConn interface {
	halfCloser
	CloseRead() error
}

type mdlayherListener interface {
	net.Listener
	SetDeadline(time.Time) error
}

var (
	_ mdlayherConn     = (*vsock.Conn)(nil)
	_ mdlayherConn     = (*lab.Conn)(nil)
	_ mdlayherListener = (*vsock.Listener)(nil)
	_ mdlayherListener = (*lab.Listener)(nil)
	_ net.Addr         = (*vsock.Addr)(nil)
	_                  = lab.Addr(vsock.Addr{}) // the same fields
)

// The agent runs in the guest with the lab's constructors; the host side
// uses the same API on the host (Host.Vsock): a listener for the report on
// UDSPath_9000, a dial to the guest through the hybrid protocol.
func TestAgentWrittenForMdlayherVsock(t *testing.T) {
	res := lab.Deterministic(t, 5, lab.Config{}, func(l *lab.Lab) {
		t := l.T()
		host := l.Host.Vsock()
		reports, err := host.Listen(9000, nil)
		require.NoError(t, err)

		vs := l.Guest.Vsock()
		l.Go(func(ctx context.Context) {
			if err := pingAgent(ctx, vs.Listen, vs.Dial, 1024, 9000); err != nil {
				t.Errorf("agent: %v", err)
			}
		})

		rc, err := reports.Accept()
		require.NoError(t, err)
		up, err := bufio.NewReader(rc).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "up vm(3):1024\n", up)
		require.Equal(t, "vm(3):4294967295", rc.RemoteAddr().String(), "Firecracker does not tell the host the guest's port")
		require.Equal(t, "host(2):9000", rc.LocalAddr().String())

		guestCID, err := vs.ContextID()
		require.NoError(t, err)
		c, err := host.Dial(guestCID, 1024, nil)
		require.NoError(t, err)
		fmt.Fprintf(c, "PING\n")
		pong, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "PONG vm(3):1024 host(2):1073741824\n", pong)
		require.Equal(t, &lab.Addr{ContextID: 2, Port: 1 << 30}, c.LocalAddr())
		require.Equal(t, &lab.Addr{ContextID: 3, Port: 1024}, c.RemoteAddr())
		require.NoError(t, c.Close())
	})
	require.Contains(t, res.Log, "tx REQUEST 3:")
	require.True(t, strings.Contains(res.Log, "->2:9000"), "the agent's report connection is not in the log")
}
