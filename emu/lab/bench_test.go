package lab

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const streamChunk = 64 * 1024

// streamThroughLab sends total bytes in 64 KiB writes from the host to a
// guest reader over the emulated device, inside a bubble when bubble is set.
func streamThroughLab(l *Lab, total int) error {
	ln, err := l.Guest.Listen(7000)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		buf := make([]byte, streamChunk)
		n := 0
		for n < total {
			m, err := c.Read(buf)
			n += m
			if err != nil {
				done <- err
				return
			}
		}
		c.Close()
		done <- nil
	}()
	c, err := l.Host.Dial(l.Host.UDSPath())
	if err != nil {
		return err
	}
	fmt.Fprintf(c, "CONNECT 7000\n")
	ack := make([]byte, len("OK 1073741824\n"))
	if _, err := io.ReadFull(c, ack); err != nil {
		return err
	}
	buf := make([]byte, streamChunk)
	for sent := 0; sent < total; sent += streamChunk {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	err = <-done
	c.Close()
	return err
}

// BenchmarkAdapterStream64K streams 64 KiB writes host -> guest through the
// adapter driven by the real-time driver (the same request path programs use
// in a bubble, without synctest, which benchmarks cannot enter).
func BenchmarkAdapterStream64K(b *testing.B) {
	l, err := Start(Config{Keep: 1 << 15})
	require.NoError(b, err)
	defer l.Stop()
	b.SetBytes(streamChunk)
	b.ResetTimer()
	require.NoError(b, streamThroughLab(l, b.N*streamChunk))
}

// BenchmarkNetPipe64K and BenchmarkSocketpair64K are the baselines, in the
// same run.
func BenchmarkNetPipe64K(b *testing.B) {
	a, c := net.Pipe()
	benchStream(b, a, c)
}

func BenchmarkSocketpair64K(b *testing.B) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(b, err)
	fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	a, err := net.FileConn(fa)
	require.NoError(b, err)
	c, err := net.FileConn(fb)
	require.NoError(b, err)
	fa.Close()
	fb.Close()
	benchStream(b, a, c)
}

func benchStream(b *testing.B, w, r net.Conn) {
	total := b.N * streamChunk
	done := make(chan struct{})
	go func() {
		io.CopyN(io.Discard, r, int64(total))
		close(done)
	}()
	buf := make([]byte, streamChunk)
	b.SetBytes(streamChunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Write(buf)
	}
	<-done
	w.Close()
	r.Close()
}

// TestBubbleStreamThroughput measures the same stream inside a synctest
// bubble (wall clock around lab.Run) next to the baselines, and logs MB/s.
// Run with -run TestBubbleStreamThroughput -v; recorded in BENCHMARKS.md.
// It asserts nothing about speed: machines are shared and noisy.
func TestBubbleStreamThroughput(t *testing.T) {
	if testing.Short() || os.Getenv("VSOCKLAB_BENCH") == "" {
		t.Skip("set VSOCKLAB_BENCH=1 to measure")
	}
	const total = 256 << 20
	start := time.Now()
	Run(t, Config{Keep: 1 << 15}, func(l *Lab) { require.NoError(t, streamThroughLab(l, total)) })
	bubble := time.Since(start)
	mbps := func(d time.Duration) float64 { return float64(total) / d.Seconds() / 1e6 }
	pipe := testing.Benchmark(BenchmarkNetPipe64K)
	sp := testing.Benchmark(BenchmarkSocketpair64K)
	perOp := func(r testing.BenchmarkResult) float64 {
		return float64(streamChunk) / (float64(r.T.Nanoseconds()) / float64(r.N)) * 1e9 / 1e6
	}
	t.Logf("bubble adapter: %.0f MB/s; net.Pipe: %.0f MB/s; socketpair: %.0f MB/s; bubble/socketpair = %.2f",
		mbps(bubble), perOp(pipe), perOp(sp), mbps(bubble)/perOp(sp))
}
