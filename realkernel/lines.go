package realkernel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Line is one line of a process's output with the wall time since the
// process started.
type Line struct {
	At   time.Duration
	Text string
}

func (l Line) String() string { return fmt.Sprintf("%8.3fs %s", l.At.Seconds(), l.Text) }

// lineLog collects the lines of one or more output streams and lets
// callers wait for a line, in order.
type lineLog struct {
	start time.Time
	echo  io.Writer // every line as it arrives, or nil

	mu     sync.Mutex
	lines  []Line
	closed bool
	cursor int // where Expect continues
	notify chan struct{}
}

func newLineLog(start time.Time, echo io.Writer) *lineLog {
	return &lineLog{start: start, echo: echo, notify: make(chan struct{})}
}

// feed reads r until it ends. Carriage returns (the serial console's line
// endings) are dropped.
func (l *lineLog) feed(r io.Reader, prefix string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		text := strings.TrimRight(sc.Text(), "\r")
		text = strings.TrimLeft(text, "\r")
		ln := Line{At: time.Since(l.start), Text: text}
		l.mu.Lock()
		l.lines = append(l.lines, ln)
		close(l.notify)
		l.notify = make(chan struct{})
		echo := l.echo
		l.mu.Unlock()
		if echo != nil {
			fmt.Fprintf(echo, "%s%s\n", prefix, ln)
		}
	}
}

// close marks the end: no more lines will come.
func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.notify)
	}
}

// Lines returns every line so far.
func (l *lineLog) Lines() []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Line(nil), l.lines...)
}

// Expect waits for the next line (after the previous match) that contains
// substr, and returns it. It fails when ctx ends or the output ends first.
func (l *lineLog) Expect(ctx context.Context, substr string) (Line, error) {
	return l.ExpectFunc(ctx, substr, func(s string) bool { return strings.Contains(s, substr) })
}

// ExpectFunc is Expect with a predicate; what names it in errors.
func (l *lineLog) ExpectFunc(ctx context.Context, what string, match func(string) bool) (Line, error) {
	for {
		l.mu.Lock()
		for i := l.cursor; i < len(l.lines); i++ {
			if match(l.lines[i].Text) {
				l.cursor = i + 1
				ln := l.lines[i]
				l.mu.Unlock()
				return ln, nil
			}
		}
		l.cursor = len(l.lines)
		closed, notify := l.closed, l.notify
		l.mu.Unlock()
		if closed {
			return Line{}, fmt.Errorf("output ended before a line with %q", what)
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("no line with %q: %w", what, context.Cause(ctx))
		}
	}
}

// Count counts the lines so far that contain substr.
func (l *lineLog) Count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ln := range l.lines {
		if strings.Contains(ln.Text, substr) {
			n++
		}
	}
	return n
}

// child is a started process whose standard output and error are
// collected line by line; the VM and the back-end are both one.
type child struct {
	*lineLog
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its output is read
	err  error         // the process's exit, valid after done
}

// startChild starts cmd, whose merged output is out, and collects its
// lines under prefix.
func startChild(cmd *exec.Cmd, out io.Reader, prefix string, echo io.Writer) (*child, error) {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{lineLog: newLineLog(start, echo), cmd: cmd, done: make(chan struct{})}
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		c.feed(out, prefix)
	}()
	go func() {
		<-fed
		c.err = cmd.Wait()
		c.lineLog.close()
		close(c.done)
	}()
	return c, nil
}

// stopOn calls stop if ctx ends before the process exits.
func (c *child) stopOn(ctx context.Context, stop func()) {
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-c.done:
		}
	}()
}
