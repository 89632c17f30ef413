// Package hybrid is the host's side of Firecracker's hybrid vsock
// protocol: a host program reaches a guest port by connecting to the VM's
// Unix socket and writing "CONNECT <port>\n"; the device answers
// "OK <host port>\n" once the guest accepts (Firecracker
// src/vmm/src/devices/virtio/vsock/unix/muxer.rs, read_local_stream_port,
// and Firecracker's docs/vsock.md, v1.14.0), and the stream is then the guest's.
//
// hostd and the lab's host dial share it. It imports nothing of this
// module, so hostd, which runs on real hosts, stays free of the emulator.
package hybrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Dialer opens a stream to the VM's hybrid vsock Unix socket.
type Dialer func(ctx context.Context) (net.Conn, error)

// Conn is a connection to a guest port through the hybrid vsock protocol.
type Conn struct {
	net.Conn
	// HostPort is the device's local port for this connection, from the
	// "OK <port>" line.
	HostPort uint32
}

// ErrRefused says the device closed the stream without an "OK" line: no
// listener on the guest port, the guest answered RST, or the request timed
// out inside the device.
var ErrRefused = errors.New("hybrid vsock: connection closed before OK (refused by the guest or the device)")

// maxAckLine bounds the "OK <port>\n" line.
const maxAckLine = 32

// Connect opens a connection to guest port: it dials the Unix socket,
// writes "CONNECT <port>\n" in one write (Firecracker parses the line at
// the first readiness), and reads the "OK <port>\n" acknowledgement one byte
// at a time, so that no byte of the stream that follows is swallowed.
func Connect(ctx context.Context, dial Dialer, port uint32) (*Conn, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("hybrid vsock: dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	hostPort, err := handshake(c, port)
	if !stop() {
		c.Close()
		return nil, fmt.Errorf("hybrid vsock: CONNECT %d: %w", port, context.Cause(ctx))
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("hybrid vsock: CONNECT %d: %w", port, err)
	}
	_ = c.SetDeadline(time.Time{})
	return &Conn{Conn: c, HostPort: hostPort}, nil
}

func handshake(c net.Conn, port uint32) (uint32, error) {
	if _, err := io.WriteString(c, "CONNECT "+strconv.FormatUint(uint64(port), 10)+"\n"); err != nil {
		return 0, err
	}
	line := make([]byte, 0, maxAckLine)
	var b [1]byte
	for len(line) < maxAckLine {
		n, err := c.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return parseAck(string(line))
			}
			line = append(line, b[0])
			continue
		}
		if err == io.EOF {
			if len(line) == 0 {
				return 0, ErrRefused
			}
			return 0, fmt.Errorf("acknowledgement %q cut short", line)
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("acknowledgement longer than %d bytes: %q", maxAckLine, line)
}

// parseAck reads "OK <port>".
func parseAck(line string) (uint32, error) {
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "OK" {
		return 0, fmt.Errorf("unexpected acknowledgement %q (want \"OK <port>\")", line)
	}
	p, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("acknowledgement %q: bad port: %v", line, err)
	}
	return uint32(p), nil
}
