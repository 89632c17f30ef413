// Package labenv runs guestinit inside the lab: vsock through the
// emulated guest kernel, and deterministic simulated workloads whose
// stdout and stderr are guest pipes of Linux's default 64 KiB.
package labenv

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/guestinit"
	"github.com/vsocklab/vsocklab/internal/pattern"
)

// Env implements guestinit.Env on a lab.
type Env struct {
	L *lab.Lab
	// Comp names the component in the event log (default "init").
	Comp string

	mu    sync.Mutex
	procs []*Process
}

var _ guestinit.Env = (*Env)(nil)

// ListenVsock implements guestinit.Env.
func (e *Env) ListenVsock(port uint32) (net.Listener, error) { return e.L.Guest.Listen(port) }

// DialVsock implements guestinit.Env.
func (e *Env) DialVsock(ctx context.Context, cid uint64, port uint32) (net.Conn, error) {
	return e.L.Guest.DialContext(ctx, cid, port)
}

// Logf implements guestinit.Env: init's lines go to the event log.
func (e *Env) Logf(format string, args ...any) {
	comp := e.Comp
	if comp == "" {
		comp = "init"
	}
	e.L.Logf(comp, format, args...)
}

// Processes returns the workloads started so far.
func (e *Env) Processes() []*Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Process(nil), e.procs...)
}

// StartWorkload implements guestinit.Env with a simulated workload:
//
//	writer total=<bytes> size=<bytes> every=<duration> [stream=stdout|stderr] [exit=<code>]
//	    writes total bytes of the test stream (package internal/pattern,
//	    from offset 0) in writes of size bytes, one write
//	    every duration (0: back to back); then exits with the code if one
//	    is given, or stays alive and quiet
//	writer writes=<size>@<delay>,<size>@<delay>,... [stream=...] [exit=...]
//	    the same with an explicit sequence: each write of size bytes comes
//	    delay after the previous one
//	idle
//	    runs until the lab stops
//	exit [code=<n>]
//	    exits at once
//
// Sizes accept the suffixes KiB and MiB.
func (e *Env) StartWorkload(ctx context.Context, w guestinit.Workload) (guestinit.Process, error) {
	spec, err := ParseWorkload(w.Args)
	if err != nil {
		return nil, err
	}
	outR, outW, err := e.L.Guest.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := e.L.Guest.Pipe()
	if err != nil {
		return nil, err
	}
	p := &Process{spec: spec, stdout: outR, stderr: errR, done: make(chan struct{})}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	go p.run(ctx, outW, errW)
	return p, nil
}

// Workload is a parsed simulated workload.
type Workload struct {
	Kind   string // "writer", "idle", "exit"
	Total  int64
	Size   int
	Every  time.Duration
	Stream string
	Exit   int
	// ExitAfter: a writer exits once it has written everything; without
	// it the writer stays alive and quiet, as a server would.
	ExitAfter bool
	// Writes, when set, replaces Total/Size/Every with an explicit
	// sequence.
	Writes []Write
}

// Write is one write of an explicit sequence.
type Write struct {
	Size  int
	Delay time.Duration // after the previous write
}

// ParseWorkload reads a workload's arguments; errors name the bad word.
func ParseWorkload(args []string) (Workload, error) {
	if len(args) == 0 {
		return Workload{}, fmt.Errorf("workload: empty command (want writer, idle or exit)")
	}
	w := Workload{Kind: args[0], Stream: "stdout", Size: 4096}
	switch w.Kind {
	case "writer", "idle", "exit":
	default:
		return Workload{}, fmt.Errorf("workload: unknown kind %q (want writer, idle or exit)", args[0])
	}
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return Workload{}, fmt.Errorf("workload %s: argument %q is not key=value", w.Kind, a)
		}
		var err error
		switch k {
		case "total":
			w.Total, err = ParseSize(v)
		case "size":
			var n int64
			n, err = ParseSize(v)
			w.Size = int(n)
			if err == nil && n <= 0 {
				err = fmt.Errorf("must be positive")
			}
		case "every":
			w.Every, err = time.ParseDuration(v)
		case "writes":
			w.Writes, err = parseWrites(v)
			for _, x := range w.Writes {
				w.Total += int64(x.Size)
			}
		case "stream":
			if v != "stdout" && v != "stderr" {
				err = fmt.Errorf("want stdout or stderr")
			}
			w.Stream = v
		case "exit", "code":
			w.Exit, err = strconv.Atoi(v)
			w.ExitAfter = true
		default:
			err = fmt.Errorf("unknown key (want total, size, every, writes, stream, exit)")
		}
		if err != nil {
			return Workload{}, fmt.Errorf("workload %s: %s=%s: %v", w.Kind, k, v, err)
		}
	}
	return w, nil
}

// schedule yields the writes of a writer: Writes as given, or Total in
// Size pieces, Every apart, the first at once. It yields them one at a time
// so that a long stream (vsocklab serve's total=10GiB) does not hold a
// schedule as large as the stream's piece count.
func (w Workload) schedule() iter.Seq[Write] {
	return func(yield func(Write) bool) {
		if w.Writes != nil {
			for _, x := range w.Writes {
				if !yield(x) {
					return
				}
			}
			return
		}
		delay := time.Duration(0)
		for left := w.Total; left > 0; left -= int64(w.Size) {
			if !yield(Write{Size: int(min(left, int64(w.Size))), Delay: delay}) {
				return
			}
			delay = w.Every
		}
	}
}

// parseWrites reads "64KiB@10ms,4KiB@0s".
func parseWrites(v string) ([]Write, error) {
	var out []Write
	for _, item := range strings.Split(v, ",") {
		sz, delay, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("%q: want <size>@<delay>", item)
		}
		n, err := ParseSize(sz)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: bad size", item)
		}
		d, err := time.ParseDuration(delay)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q: bad delay", item)
		}
		out = append(out, Write{Size: int(n), Delay: d})
	}
	return out, nil
}

// ParseSize reads "4096", "64KiB", "1MiB".
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "KiB"):
		mult, s = 1024, strings.TrimSuffix(s, "KiB")
	case strings.HasSuffix(s, "MiB"):
		mult, s = 1<<20, strings.TrimSuffix(s, "MiB")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// CheckPattern returns the offset of the first byte of a writer's stream b,
// received from its start, that is not the test stream's byte there, or -1.
func CheckPattern(b []byte) int64 { return pattern.Mismatch(b, 0) }

// Process is a simulated workload.
type Process struct {
	spec   Workload
	stdout *lab.PipeReader
	stderr *lab.PipeReader
	done   chan struct{}

	mu      sync.Mutex
	written int64
	code    int
}

// Stdout implements guestinit.Process.
func (p *Process) Stdout() io.Reader { return p.stdout }

// Stderr implements guestinit.Process.
func (p *Process) Stderr() io.Reader { return p.stderr }

// Wait implements guestinit.Process.
func (p *Process) Wait() (int, error) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, nil
}

// Written returns the bytes the workload has written so far.
func (p *Process) Written() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

// Usage implements guestinit.Process: a deterministic stand-in, CPU time
// proportional to the bytes written and a fixed resident size.
func (p *Process) Usage() guestinit.Usage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return guestinit.Usage{CPU: time.Duration(p.written) * time.Nanosecond, RSS: 64 << 20}
}

func (p *Process) run(ctx context.Context, out, errw *lab.PipeWriter) {
	defer close(p.done)
	defer out.Close()
	defer errw.Close()
	switch p.spec.Kind {
	case "exit":
		p.code = p.spec.Exit
		return
	case "idle":
		<-ctx.Done()
		return
	}
	w := out
	if p.spec.Stream == "stderr" {
		w = errw
	}
	var off int64
	var buf []byte
	for x := range p.spec.schedule() {
		if x.Delay > 0 {
			t := time.NewTimer(x.Delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		// One buffer for every write: a write that returned without
		// error took every byte (io.Writer) and the pipe keeps none of
		// buf; after an error the loop ends.
		if cap(buf) < x.Size {
			buf = make([]byte, x.Size)
		}
		buf = buf[:x.Size]
		pattern.Fill(buf, uint64(off))
		m, err := w.Write(buf)
		p.mu.Lock()
		p.written += int64(m)
		p.mu.Unlock()
		off += int64(m)
		if err != nil || ctx.Err() != nil {
			return
		}
	}
	if p.spec.ExitAfter {
		p.mu.Lock()
		p.code = p.spec.Exit
		p.mu.Unlock()
		return
	}
	<-ctx.Done()
}
