package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/hostd"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/trace"
)

// A host connection a trace opens by hand: connect name=C keeps it open,
// send, recv and close act on it by name, so a trace can speak to a guest
// program (init's API, a stream's reader) byte by byte.

// Defaults of the connection directives.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultSendTimeout    = 10 * time.Second
	defaultRecvTimeout    = time.Second
	defaultRecvMax        = 64 << 10
	recvShownLines        = 40 // recv prints at most this many lines of what it got
	recvLineBytes         = 96 // and cuts longer lines into pieces of this size
)

func (sr *scenarioRun) cmdConnect(d *trace.Directive) (string, error) {
	port, err := port32(d, "port")
	if err != nil {
		return "", err
	}
	name := ""
	if a, ok := d.Arg("name"); ok {
		name = argVal(a)
		if sr.conns[name] != nil {
			return "", fmt.Errorf("connection %s is already open", name)
		}
	}
	ctx, cancel := context.WithTimeout(sr.l.Context(), durArg(d, "timeout", defaultConnectTimeout))
	defer cancel()
	c, err := hostd.Connect(ctx, func(context.Context) (net.Conn, error) { return sr.l.Host.Dial(sr.l.Host.UDSPath()) }, port)
	if err != nil {
		line := fmt.Sprintf("connect %d: %v", port, err)
		sr.refused = append(sr.refused, line)
		return line + "\n", nil
	}
	if name == "" {
		c.Close()
		return fmt.Sprintf("connect %d: OK from host port %d\n", port, c.HostPort), nil
	}
	if sr.conns == nil {
		sr.conns = map[string]*hostd.HybridConn{}
	}
	sr.conns[name] = c
	return fmt.Sprintf("connect %d: OK from host port %d, open as %s\n", port, c.HostPort, name), nil
}

// conn is the open connection the directive names.
func (sr *scenarioRun) conn(d *trace.Directive) (string, *hostd.HybridConn, error) {
	name := argVal(mustArg(d, "name"))
	c := sr.conns[name]
	if c == nil {
		return name, nil, fmt.Errorf("connection %s is not open (its connect failed)", name)
	}
	return name, c, nil
}

func mustArg(d *trace.Directive, key string) trace.Arg {
	a, _ := d.Arg(key) // required, checked by checkArgs
	return a
}

// cmdSend writes the input lines or size bytes of the writer workload's
// pattern (see sendBytes), within a timeout of virtual time: a peer that
// grants no credit makes the write wait.
func (sr *scenarioRun) cmdSend(d *trace.Directive) (string, error) {
	name, c, err := sr.conn(d)
	if err != nil {
		return "", err
	}
	var data []byte
	if _, ok := d.Arg("size"); ok {
		data = make([]byte, sizeArg(d, "size", 0))
		pattern.Fill(data, 0)
	} else {
		data, _ = sendBytes(d.Input, hasFlag(d, "crlf")) // checked by checkSend
	}
	timeout, cut := sr.waitTimeout(0, durArg(d, "timeout", defaultSendTimeout))
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	n, err := c.Write(data)
	_ = c.SetWriteDeadline(time.Time{})
	out := fmt.Sprintf("send %s at %s: %d of %d bytes\n", name, sr.now(), n, len(data))
	if err != nil && cut && errors.Is(err, os.ErrDeadlineExceeded) {
		return out, sr.virtualLimit()
	}
	return out, err
}

// sendBytes is what send writes for its input lines: each line followed by
// "\n" ("\r\n" with crlf), except a line in double quotes, a Go string
// literal sent exactly as it reads (escapes such as \r\n, no line end
// added), for bytes a trace line cannot hold: blank lines, binary.
func sendBytes(lines []string, crlf bool) ([]byte, error) {
	end := "\n"
	if crlf {
		end = "\r\n"
	}
	var b []byte
	for i, l := range lines {
		if strings.HasPrefix(l, `"`) {
			s, err := strconv.Unquote(l)
			if err != nil {
				return nil, fmt.Errorf("input line %d: %s is not a Go string literal: %v", i+1, l, err)
			}
			b = append(b, s...)
			continue
		}
		b = append(b, l+end...)
	}
	return b, nil
}

// cmdRecv reads what arrives within timeout of virtual time, at most max
// bytes, and stops early at the end of the stream.
func (sr *scenarioRun) cmdRecv(d *trace.Directive) (string, error) {
	name, c, err := sr.conn(d)
	if err != nil {
		return "", err
	}
	max := sizeArg(d, "max", defaultRecvMax)
	timeout, cut := sr.waitTimeout(0, durArg(d, "timeout", defaultRecvTimeout))
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, 0, min(max, defaultRecvMax))
	buf := make([]byte, 4096)
	var rerr error
	for int64(len(got)) < max {
		n, err := c.Read(buf[:min(int64(len(buf)), max-int64(len(got)))])
		got = append(got, buf[:n]...)
		if err != nil {
			rerr = err
			break
		}
	}
	var end string
	switch {
	case rerr == nil:
		end = fmt.Sprintf("max %d reached", max)
	case errors.Is(rerr, io.EOF):
		end = "then end of stream"
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		end = "then nothing more within " + timeout.String()
	default:
		end = "then " + rerr.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "recv %s at %s: %d bytes, %s\n", name, sr.now(), len(got), end)
	b.WriteString(quoteLines(got))
	if cut && errors.Is(rerr, os.ErrDeadlineExceeded) {
		return b.String(), sr.virtualLimit()
	}
	return b.String(), nil
}

// quoteLines shows data a line at a time, each as a Go string literal so
// that carriage returns, blank lines and binary bytes read unambiguously.
func quoteLines(data []byte) string {
	var b strings.Builder
	for shown := 0; len(data) > 0; shown++ {
		if shown == recvShownLines {
			fmt.Fprintf(&b, "  ... %d more bytes\n", len(data))
			break
		}
		n := len(data)
		if i := strings.IndexByte(string(data), '\n'); i >= 0 {
			n = i + 1
		}
		n = min(n, recvLineBytes)
		b.WriteString("  " + strconv.Quote(string(data[:n])) + "\n")
		data = data[n:]
	}
	return b.String()
}

// cmdClose closes the connection, or with write only its sending half
// (shutdown SHUT_WR: the guest reads the end of the stream, and recv still
// reads its answer).
func (sr *scenarioRun) cmdClose(d *trace.Directive) (string, error) {
	name, c, err := sr.conn(d)
	if err != nil {
		return "", err
	}
	if hasFlag(d, "write") {
		cw, ok := c.Conn.(interface{ CloseWrite() error })
		if !ok {
			return "", fmt.Errorf("connection %s cannot close its sending half alone", name)
		}
		if err := cw.CloseWrite(); err != nil {
			return "", err
		}
		return fmt.Sprintf("close %s (sending half) at %s\n", name, sr.now()), nil
	}
	delete(sr.conns, name)
	if err := c.Close(); err != nil {
		return "", err
	}
	return fmt.Sprintf("close %s at %s\n", name, sr.now()), nil
}

// closeConns closes what the trace left open, at the end of the scenario.
func (sr *scenarioRun) closeConns() {
	for name, c := range sr.conns {
		c.Close()
		delete(sr.conns, name)
	}
}

// checkConnName wants a name that reads back as one word.
func checkConnName(d *trace.Directive) error {
	if a, ok := d.Arg("name"); ok && !validName(argVal(a)) {
		return d.Errorf("%s: name=%s: expected a name of letters, digits, '-', '_'", d.Cmd, argVal(a))
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// checkSend: input lines or size, one of them.
func checkSend(d *trace.Directive) error {
	if err := checkConnName(d); err != nil {
		return err
	}
	a, sized := d.Arg("size")
	switch {
	case sized && hasFlag(d, "crlf"):
		return d.Errorf("send: crlf ends input lines, and size=... sends none")
	case sized && len(d.Input) > 0:
		return d.Errorf("send: input lines and size=... contradict each other (send one or the other)")
	case !sized && len(d.Input) == 0:
		return d.Errorf("send: expected input lines to send, or size=SIZE")
	case !sized:
		if _, err := sendBytes(d.Input, false); err != nil {
			return d.Errorf("send: %v", err)
		}
	default:
		if n, err := labenv.ParseSize(argVal(a)); err != nil || n <= 0 || n > maxSendSize {
			return d.Errorf("send: size=%s: expected a size from 1 byte to 16MiB, such as 4096 or 64KiB", argVal(a))
		}
	}
	return nil
}

const maxSendSize = 16 << 20

func checkRecv(d *trace.Directive) error {
	if err := checkConnName(d); err != nil {
		return err
	}
	if a, ok := d.Arg("max"); ok {
		if n, err := labenv.ParseSize(argVal(a)); err != nil || n <= 0 || n > maxSendSize {
			return d.Errorf("recv: max=%s: expected a size from 1 byte to 16MiB, such as 4096 or 64KiB", argVal(a))
		}
	}
	return nil
}

// checkConns follows the names of a scenario's connections: send, recv and
// close need one that a connect opened and no close closed, and a connect
// may not reuse the name of one still open. ds starts with the world
// directive.
func checkConns(ds []*trace.Directive) []error {
	var errs []error
	open := map[string]int{} // name: line of its connect
	for _, d := range ds {
		a, ok := d.Arg("name")
		if !ok {
			continue
		}
		name := argVal(a)
		switch d.Cmd {
		case "connect":
			if line, ok := open[name]; ok {
				errs = append(errs, d.Errorf("connect: name=%s is still open from line %d (close it first)", name, line))
			}
			open[name] = d.Line
		case "send", "recv", "close":
			if _, ok := open[name]; !ok {
				errs = append(errs, d.Errorf("%s: no connection named %s is open here (open one with connect port=N name=%s)", d.Cmd, name, name))
				continue
			}
			if d.Cmd == "close" && !hasFlag(d, "write") {
				delete(open, name)
			}
		}
	}
	return errs
}
