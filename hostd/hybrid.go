// Package hostd is the host daemon of a microVM: it collects the guest's
// log streams, confirms after boot and after every resume that the guest's
// init answers its status check (retrying with exponential backoff and
// recording how long it took), and holds a long-lived yamux session to init
// for CPU and memory samples.
//
// It reaches the guest only through Firecracker's hybrid vsock protocol
// (package hybrid) over a net.Conn to the VM's Unix socket, so it runs
// unchanged against real Firecracker, against `vsocklab serve` and inside
// the lab.
package hostd

import (
	"context"

	"github.com/vsocklab/vsocklab/hybrid"
)

// Dialer opens a stream to the VM's hybrid vsock Unix socket.
type Dialer = hybrid.Dialer

// HybridConn is a connection to a guest port through the hybrid vsock
// protocol; HostPort is the port of the device's "OK <port>" line.
type HybridConn = hybrid.Conn

// ErrRefused says the device closed the stream without an "OK" line.
var ErrRefused = hybrid.ErrRefused

// Connect is hybrid.Connect: dial, "CONNECT <port>\n", "OK <port>\n".
func Connect(ctx context.Context, dial Dialer, port uint32) (*HybridConn, error) {
	return hybrid.Connect(ctx, dial, port)
}
