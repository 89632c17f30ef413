package guestinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RealEnv runs init on a real VM: AF_VSOCK sockets, os/exec, real pipes.
type RealEnv struct {
	// Log receives init's own lines (default: standard error).
	Log *log.Logger
}

var _ Env = (*RealEnv)(nil)

// ListenVsock implements Env.
func (e *RealEnv) ListenVsock(port uint32) (net.Listener, error) { return ListenVsock(port) }

// DialVsock implements Env.
func (e *RealEnv) DialVsock(ctx context.Context, cid uint64, port uint32) (net.Conn, error) {
	if cid > 0xffffffff {
		return nil, fmt.Errorf("vsock: CID %d does not fit in 32 bits", cid)
	}
	return DialVsock(ctx, uint32(cid), port)
}

// Logf implements Env.
func (e *RealEnv) Logf(format string, args ...any) {
	l := e.Log
	if l == nil {
		l = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	}
	l.Printf(format, args...)
}

// StartWorkload implements Env with os/exec; stdout and stderr are pipes.
func (e *RealEnv) StartWorkload(ctx context.Context, w Workload) (Process, error) {
	if len(w.Args) == 0 {
		return nil, errors.New("workload: no command given")
	}
	cmd := exec.CommandContext(ctx, w.Args[0], w.Args[1:]...)
	cmd.Env = append(os.Environ(), w.Env...)
	// Pipes of our own rather than cmd.StdoutPipe: Wait closes the read
	// ends of the pipes StdoutPipe made, and init's pumps read
	// concurrently with Wait (Init.Run), so output still in the pipe when
	// the workload exits would be lost ("read |0: file already closed").
	// A pipe whose write end is an *os.File is handed to the child as is;
	// Wait leaves our read end alone, and the pump reads to EOF.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		stdout.Close()
		stdoutW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	err = cmd.Start()
	// The child has its copies; ours would keep the readers from EOF.
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdout.Close()
		stderr.Close()
		return nil, err
	}
	ownMu.Lock()
	ownPids[cmd.Process.Pid] = true
	ownMu.Unlock()
	// A process the workload leaves behind can hold the write ends open
	// after the workload exits; when init stops, closing the read ends
	// wakes the pumps.
	context.AfterFunc(ctx, func() {
		stdout.Close()
		stderr.Close()
	})
	return &realProcess{cmd: cmd, stdout: closeAtEnd{stdout}, stderr: closeAtEnd{stderr}}, nil
}

// closeAtEnd closes its pipe when a read reports the end of the stream
// (or an error), so that the descriptor does not outlive the pump.
type closeAtEnd struct{ f *os.File }

func (c closeAtEnd) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if err != nil {
		c.f.Close()
	}
	return n, err
}

type realProcess struct {
	cmd            *exec.Cmd
	stdout, stderr io.Reader
}

func (p *realProcess) Stdout() io.Reader { return p.stdout }
func (p *realProcess) Stderr() io.Reader { return p.stderr }

func (p *realProcess) Wait() (int, error) {
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// Usage reads utime+stime and rss from /proc/<pid>/stat.
func (p *realProcess) Usage() Usage {
	u, _ := procUsage(p.cmd.Process.Pid)
	return u
}

// clockTicks is USER_HZ, 100 on every Linux architecture that matters here.
const clockTicks = 100

func procUsage(pid int) (Usage, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Usage{}, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// Fields after ')': state is f[0], utime f[11], stime f[12], rss f[21].
	if len(f) < 22 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseUint(f[21], 10, 64)
	return Usage{
		CPU: time.Duration(ut+st) * time.Second / clockTicks,
		RSS: rss * uint64(os.Getpagesize()),
	}, nil
}

// BootAsPID1 prepares a minimal system when init runs as PID 1: it mounts
// /proc, /sys and /dev when they are not mounted yet, and reaps orphaned
// children in the background. It does nothing for any other PID.
func BootAsPID1(logf func(string, ...any)) error {
	if os.Getpid() != 1 {
		return nil
	}
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	}
	for _, m := range mounts {
		if mounted(m.dst) {
			continue
		}
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
		logf("init: mounted %s on %s", m.fstype, m.dst)
	}
	go reapOrphans()
	return nil
}

// mounted reports whether dir is a mount point (its device differs from its
// parent's).
func mounted(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// reapOrphans collects the exit status of orphans re-parented to PID 1, on
// every SIGCHLD. Its own children (the workload, which os/exec waits for)
// are left alone: only zombies whose pid is not one we started are reaped,
// found by scanning /proc for state Z with parent 1.
func reapOrphans() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	for range ch {
		for _, pid := range orphanZombies() {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

func orphanZombies() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || ownChild(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == "1" {
			out = append(out, pid)
		}
	}
	return out
}

var (
	ownMu   sync.Mutex
	ownPids = map[int]bool{}
)

func ownChild(pid int) bool {
	ownMu.Lock()
	defer ownMu.Unlock()
	return ownPids[pid]
}
