package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/internal/testscope"
)

// guestAccept listens on port and hands the first accepted conn to f in a
// goroutine.
func guestAccept(t *testing.T, l *Lab, port uint32, f func(net.Conn)) net.Listener {
	ln, err := l.Guest.Listen(port)
	require.NoError(t, err)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f(c)
	}()
	return ln
}

// The net.Conn behaviours of issue 4, one scenario each; every scenario is
// also replayed 20 times by TestConnScenariosAreDeterministic.
type connScenario struct {
	name string
	run  func(t *testing.T, l *Lab)
}

var connScenarios = []connScenario{
	{"read deadline expires after exactly 1.5s of virtual time", func(t *testing.T, l *Lab) {
		done := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			start := time.Now()
			require.NoError(t, c.SetReadDeadline(start.Add(1500*time.Millisecond)))
			_, err := c.Read(make([]byte, 1))
			require.Equal(t, 1500*time.Millisecond, time.Since(start))
			done <- err
		})
		c, ok := hybridDial(t, l, 5000)
		require.Equal(t, "OK 1073741824", ok)
		err := <-done
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout())
		// The host side too.
		start := time.Now()
		require.NoError(t, c.SetReadDeadline(start.Add(250*time.Millisecond)))
		_, err = c.Read(make([]byte, 1))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Equal(t, 250*time.Millisecond, time.Since(start))
		c.Close()
	}},
	{"a deadline moved to now fails a parked read at once, after another round at the same instant", func(t *testing.T, l *Lab) {
		// The driver skips deadline scans while its clock stands still
		// (expireDeadlines); a deadline moved meanwhile must still count.
		done := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			start := time.Now()
			go func() {
				time.Sleep(time.Second)
				_ = c.SetReadDeadline(time.Now().Add(time.Hour))
				_ = l.Do(func(*emu.World) error { return nil }) // a round at this instant, which scans
				_ = c.SetReadDeadline(time.Now())
			}()
			_, err := c.Read(make([]byte, 1))
			require.Equal(t, time.Second, time.Since(start))
			done <- err
		})
		c, ok := hybridDial(t, l, 5000)
		require.Equal(t, "OK 1073741824", ok)
		require.ErrorIs(t, <-done, os.ErrDeadlineExceeded)
		c.Close()
	}},
	{"SO_RCVLOWAT holds a blocked read until the threshold; the options fail on the host side", func(t *testing.T, l *Lab) {
		// Linux af_vsock.c vsock_set_rcvlowat and vsock_poll (v6.12): a
		// read that blocks wakes only once SO_RCVLOWAT bytes are queued.
		got := make(chan int, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			gc := c.(*Conn)
			require.ErrorIs(t, gc.SetRcvlowat(256*1024+1), syscall.EINVAL)
			require.NoError(t, gc.SetVsockBufferSize(128*1024))
			require.NoError(t, gc.SetRcvlowat(3000))
			n, err := c.Read(make([]byte, 8000))
			require.NoError(t, err)
			got <- n
		})
		c, _ := hybridDial(t, l, 5000)
		hc := c.(*Conn)
		require.ErrorIs(t, hc.SetRcvlowat(1), syscall.ENOPROTOOPT)
		time.Sleep(time.Millisecond)
		_, err := c.Write(make([]byte, 2000))
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
		select {
		case n := <-got:
			t.Fatalf("the read woke with %d bytes, below SO_RCVLOWAT", n)
		default:
		}
		_, err = c.Write(make([]byte, 1000))
		require.NoError(t, err)
		require.Equal(t, 3000, <-got)
		c.Close()
	}},
	{"SO_LINGER is taken on the guest side and fails on the host side; a lingering Close still returns at once", func(t *testing.T, l *Lab) {
		done := make(chan time.Duration, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			gc := c.(*Conn)
			require.NoError(t, gc.SetLinger(time.Second))
			_, err := c.Write([]byte("x"))
			require.NoError(t, err)
			start := time.Now()
			require.NoError(t, c.Close())
			done <- time.Since(start)
		})
		c, _ := hybridDial(t, l, 5000)
		require.ErrorIs(t, c.(*Conn).SetLinger(time.Second), syscall.ENOPROTOOPT)
		b, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "x", string(b))
		require.Zero(t, <-done)
		c.Close()
	}},
	{"peer close gives EOF", func(t *testing.T, l *Lab) {
		got := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			_, err := c.Read(make([]byte, 1))
			got <- err
		})
		c, _ := hybridDial(t, l, 5000)
		require.NoError(t, c.Close())
		require.Equal(t, io.EOF, <-got)
	}},
	{"transport reset gives ECONNRESET then ENOTCONN", func(t *testing.T, l *Lab) {
		// docs/sources.md#linux-transport-reset: a blocked read wakes with ECONNRESET, later
		// reads get ENOTCONN, writes ENOTCONN.
		errs := make(chan error, 3)
		guestAccept(t, l, 5000, func(c net.Conn) {
			_, err := c.Read(make([]byte, 1))
			errs <- err
			_, err = c.Read(make([]byte, 1))
			errs <- err
			_, err = c.Write([]byte("x"))
			errs <- err
		})
		hybridDial(t, l, 5000)
		time.Sleep(time.Second)
		require.NoError(t, l.Suspend())
		time.Sleep(time.Second)
		require.NoError(t, l.Resume())
		require.ErrorIs(t, <-errs, syscall.ECONNRESET)
		require.ErrorIs(t, <-errs, syscall.ENOTCONN)
		require.ErrorIs(t, <-errs, syscall.ENOTCONN)
	}},
	{"write after CloseWrite gives EPIPE", func(t *testing.T, l *Lab) {
		got := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			require.NoError(t, c.(*Conn).CloseWrite())
			_, err := c.Write([]byte("late"))
			got <- err
		})
		hybridDial(t, l, 5000)
		require.ErrorIs(t, <-got, syscall.EPIPE)
	}},
	{"dial to a host port nobody listens on gives ECONNRESET", func(t *testing.T, l *Lab) {
		// The device cannot connect to <uds>_9999 and answers RST
		// (docs/sources.md#fc-peer-request), which connect() reports as ECONNRESET.
		_, err := l.Guest.Dial(2, 9999)
		require.ErrorIs(t, err, syscall.ECONNRESET)
	}},
	{"dial that nobody answers times out after exactly 2s", func(t *testing.T, l *Lab) {
		// Firecracker drops packets for a dst_cid other than 2 without a
		// word; the kernel gives up after VSOCK_DEFAULT_CONNECT_TIMEOUT.
		start := time.Now()
		_, err := l.Guest.Dial(7, 1234)
		require.ErrorIs(t, err, syscall.ETIMEDOUT)
		require.Equal(t, 2*time.Second, time.Since(start))
	}},
	{"guest dials the host", func(t *testing.T, l *Lab) {
		ln, err := l.Host.Listen(l.Host.UDSPath() + "_7000")
		require.NoError(t, err)
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(c)
			got <- string(b)
		}()
		c, err := l.Guest.Dial(2, 7000)
		require.NoError(t, err)
		_, err = c.Write([]byte("from the guest"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		require.Equal(t, "from the guest", <-got)
	}},
	{"net/http one request per connection and keep-alive", func(t *testing.T, l *Lab) {
		ln, err := l.Guest.Listen(8080)
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		var ports []string
		var mu sync.Mutex
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, ok := hybridDial(t, l, 8080)
			mu.Lock()
			ports = append(ports, ok)
			mu.Unlock()
			return c, nil
		}
		for _, keep := range []bool{false, true} {
			client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: !keep}}
			for i := 0; i < 3; i++ {
				resp, err := client.Get(fmt.Sprintf("http://vm/req/%d", i))
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, fmt.Sprintf("GET /req/%d", i), string(b))
			}
			client.CloseIdleConnections()
		}
		// Three connections without keep-alive, one with.
		require.Equal(t, []string{"OK 1073741824", "OK 1073741825", "OK 1073741826", "OK 1073741827"}, ports)
	}},
	{"yamux session with several streams", func(t *testing.T, l *Lab) {
		var msgs [][]byte
		for i := 0; i < 4; i++ {
			msgs = append(msgs, []byte(strings.Repeat(fmt.Sprintf("stream %d;", i), 20000)))
		}
		sess := yamuxEcho(t, l, msgs)
		// Keepalives run on virtual time too.
		time.Sleep(2 * time.Minute)
		require.False(t, sess.IsClosed())
		require.NoError(t, sess.Close())
	}},
}

// Errors that need a world other than the default one.
var configuredScenarios = []struct {
	name string
	cfg  Config
	run  func(t *testing.T, l *Lab)
}{
	{"host dial to a Unix path nobody listens on gives ECONNREFUSED", Config{}, func(t *testing.T, l *Lab) {
		// connect(2) on AF_UNIX: ECONNREFUSED when no socket listens at
		// the path (unix(7)); the device listens only on its own path.
		_, err := l.Host.Dial(l.Host.UDSPath() + "_404")
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		require.Equal(t, "dial", op.Op)
	}},
	{"receive-queue overrun resets with ENOBUFS (linux-7.0-reset)", Config{Config: emu.Config{Kernel: "linux-7.0-reset"}}, func(t *testing.T, l *Lab) {
		// docs/sources.md#linux-rx-limit (Linux 7.0, libkrun #795): the 456th queued
		// packet on a 256 KiB socket overruns the receive queue; the
		// kernel sends RST and sets sk_err = ENOBUFS, which a write
		// blocked on credit returns (vsock_connectible_sendmsg). The
		// guest program writes to a host that does not read, and never
		// reads what the host sends it in 200-byte packets.
		got := make(chan error, 1)
		guestAccept(t, l, 5000, func(c net.Conn) {
			_, err := c.Write(make([]byte, 1<<20))
			got <- err
		})
		c, ok := hybridDial(t, l, 5000)
		require.Equal(t, "OK 1073741824", ok)
		msg := make([]byte, 200)
		for i := 0; i < 456; i++ {
			if _, err := c.Write(msg); err != nil {
				break // the device closed the stream after the RST
			}
			time.Sleep(time.Millisecond) // one packet per write
		}
		err := <-got
		require.ErrorIs(t, err, syscall.ENOBUFS)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		require.Equal(t, "write", op.Op)
		c.Close()
	}},
}

func TestConnScenarios(t *testing.T) {
	for _, sc := range connScenarios {
		t.Run(sc.name, func(t *testing.T) {
			res := Run(t, Config{}, func(l *Lab) { sc.run(t, l) })
			require.Empty(t, res.Leaked)
		})
	}
	for _, sc := range configuredScenarios {
		t.Run(sc.name, func(t *testing.T) {
			res := Run(t, sc.cfg, func(l *Lab) { sc.run(t, l) })
			require.Empty(t, res.Leaked)
		})
	}
}

func TestConnScenariosAreDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("20 runs per scenario")
	}
	runs := testscope.Runs(t, 3, 20)
	for _, sc := range connScenarios {
		t.Run(sc.name, func(t *testing.T) {
			Deterministic(t, runs, Config{}, func(l *Lab) { sc.run(t, l) })
		})
	}
	for _, sc := range configuredScenarios {
		t.Run(sc.name, func(t *testing.T) {
			Deterministic(t, runs, sc.cfg, func(l *Lab) { sc.run(t, l) })
		})
	}
}

// TestManyBubblesWithYamux runs yamux in 60 bubbles in one process (10
// without VSOCKLAB_FULL): the timer-pool hazard
// (docs/sources.md#go-yamux-timer-pool) crashes the second bubble unless
// the lab gives each bubble a pool of its own (freshYamuxTimerPool).
// After the last bubble, a timer from the pool belongs to no bubble: code
// outside bubbles can use it (a bubble's timer would crash the process).
func TestManyBubblesWithYamux(t *testing.T) {
	i := slices.IndexFunc(connScenarios, func(sc connScenario) bool { return strings.HasPrefix(sc.name, "yamux") })
	require.NotEqual(t, -1, i, "no yamux scenario")
	for seed := range uint64(testscope.Runs(t, 10, 60)) {
		Run(t, Config{Config: cfgSeed(seed)}, func(l *Lab) { connScenarios[i].run(t, l) })
	}
	timer := yamuxTimerPool.Get().(*time.Timer)
	timer.Reset(time.Hour)
	require.True(t, timer.Stop())
	yamuxTimerPool.Put(timer)
}

func TestUnknownProfileIsAnError(t *testing.T) {
	_, err := Start(Config{Config: cfgDevice("firecracker-0.1")})
	require.ErrorContains(t, err, "firecracker-0.1")
}

func TestBlockedOperationsAreReported(t *testing.T) {
	res := Run(t, Config{}, func(l *Lab) {
		ln, err := l.Guest.Listen(5000)
		require.NoError(t, err)
		go ln.Accept()
		time.Sleep(3 * time.Second)
	})
	require.Len(t, res.Blocked, 1)
	require.Equal(t, "Accept on vsock listener vm(3):5000 blocked since    0.000000000", res.Blocked[0].String())
}

// A pipe write that waits for room, and one held while the VM is
// suspended, are described as they wait (the write's description is made
// only then: request.describe).
func TestBlockedPipeWritesAreReported(t *testing.T) {
	res := Run(t, Config{}, func(l *Lab) {
		_, w, err := l.Guest.Pipe()
		require.NoError(t, err)
		_, w2, err := l.Guest.Pipe()
		require.NoError(t, err)
		go w.Write(make([]byte, 100<<10)) // over the pipe's 64 KiB: waits for a reader
		time.Sleep(time.Second)
		require.NoError(t, l.Suspend())
		go w2.Write(make([]byte, 10))
		time.Sleep(time.Second)
	})
	require.Len(t, res.Blocked, 2)
	require.Equal(t, "Write of 102400 bytes on pipe 1 blocked since    0.000000000", res.Blocked[0].String())
	require.Equal(t, "Write of 10 bytes on pipe 2 (held: VM suspended) blocked since    0.000000000", res.Blocked[1].String())
}
