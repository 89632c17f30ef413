package guestinit

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

var (
	errConnReset = syscall.ECONNRESET
	errNotConn   = syscall.ENOTCONN
)

// pump moves one output stream of the workload from its pipe to a vsock
// stream to the host's log collector. The stream starts with one line
// naming it ("stdout\n"); every byte after that is the workload's.
func (in *Init) pump(ctx context.Context, name string, r io.Reader) {
	buf := make([]byte, in.opts.ReadChunk)
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			in.add(&in.stats.LogBytesRead, name, n)
			conn = in.deliver(ctx, name, conn, buf[:n])
		}
		if err != nil {
			if err != io.EOF && ctx.Err() == nil {
				in.env.Logf("init: reading %s: %v", name, err)
			}
			return
		}
	}
}

func (in *Init) add(m *map[string]uint64, name string, n int) {
	in.mu.Lock()
	(*m)[name] += uint64(n)
	in.mu.Unlock()
}

// deliver writes b to the log stream, reconnecting after a reset. With a
// write timeout, a write that does not finish in time is abandoned: the
// rest of b is dropped with one warning and the stream is kept, so the pipe
// keeps draining even while the vsock is wedged. It returns the connection
// to use next time (nil to reconnect).
func (in *Init) deliver(ctx context.Context, name string, conn net.Conn, b []byte) net.Conn {
	start := time.Now()
	deadline := time.Time{}
	if !in.opts.NoVsockWriteTimeout {
		deadline = start.Add(in.opts.VsockWriteTimeout)
	}
	backoff := 100 * time.Millisecond
	for len(b) > 0 {
		if ctx.Err() != nil {
			return conn
		}
		if conn == nil {
			c, err := in.dialLog(ctx, name)
			if err != nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					in.drop(name, len(b), "the log collector is unreachable: "+err.Error())
					return nil
				}
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			conn = c
		}
		if !deadline.IsZero() {
			_ = conn.SetWriteDeadline(deadline)
		}
		n, err := conn.Write(b)
		in.add(&in.stats.LogBytesSent, name, n)
		b = b[n:]
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			in.mu.Lock()
			in.stats.WriteTimeouts++
			in.mu.Unlock()
			in.drop(name, len(b), "vsock write did not finish within "+in.opts.VsockWriteTimeout.String())
			return conn
		default:
			if ctx.Err() == nil {
				in.env.Logf("init: %s stream to the host: %v; reconnecting", name, err)
			}
			conn.Close()
			conn = nil
		}
	}
	return conn
}

func (in *Init) drop(name string, n int, why string) {
	in.add(&in.stats.LogBytesDropped, name, n)
	in.env.Logf("init: WARNING: %s; dropped %d bytes of %s", why, n, name)
}

func (in *Init) dialLog(ctx context.Context, name string) (net.Conn, error) {
	c, err := in.env.DialVsock(ctx, HostCID, in.opts.LogPort)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte(name + "\n")); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

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
