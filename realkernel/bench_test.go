package realkernel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/realkernel"
)

// BenchmarkBootToPID1 boots each kernel under TCG with no vsock device and
// reports the median wall time from starting QEMU to kinit's first line
// as PID 1, and to QEMU's exit after the modules loaded and kinit powered
// off. Run with -benchtime=Nx: every iteration is one boot.
func BenchmarkBootToPID1(b *testing.B) {
	e := needEnv(b)
	for _, series := range []string{"6.12", "6.1"} {
		b.Run(series, func(b *testing.B) {
			k := e.kernel(b, series)
			initrd := e.initramfs(b, k, false)
			var pid1, exit []time.Duration
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				vm, err := realkernel.Boot(ctx, realkernel.VMConfig{Kernel: k, Initramfs: initrd})
				require.NoError(b, err)
				start := time.Now()
				ln, err := vm.Expect(ctx, "kinit: pid1 up")
				require.NoError(b, err)
				require.NoError(b, vm.Wait(ctx))
				pid1 = append(pid1, ln.At)
				exit = append(exit, time.Since(start))
				vm.Close()
				cancel()
			}
			b.ReportMetric(median(pid1).Seconds(), "s-to-pid1")
			b.ReportMetric(median(exit).Seconds(), "s-to-exit")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// streamPort is the host port the stream probes send to.
const streamPort = 5000

// receive accepts one connection on ln and reads total bytes, checking the
// stream pattern; it reports the bytes and the time from the first byte to
// the last. It does not wait for the end of the stream: how a device
// passes a guest's shutdown on to the host socket is not the measure.
func receive(ln net.Listener, total uint64) (uint64, time.Duration, error) {
	c, err := ln.Accept()
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	var n uint64
	var first time.Time
	for {
		m, err := c.Read(buf)
		if m > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			if err := pattern.Check(buf[:m], n); err != nil {
				return n, 0, err
			}
			n += uint64(m)
		}
		if n >= total {
			return n, time.Since(first), nil
		}
		if err == io.EOF {
			return n, 0, fmt.Errorf("stream ended after %d of %d bytes", n, total)
		}
		if err != nil {
			return n, 0, err
		}
	}
}

// BenchmarkGuestStream64K sends b.N writes of 64 KiB from a program in the
// guest to a host listener on <uds>_5000, once from kinit's stream probe in
// a real 6.12 guest under TCG through the vhost-user backend, once from a
// lab guest (linux-6.12.68) through the pure lab on the real-time driver,
// both against firecracker-1.14, in the same run. The clock runs from the
// first byte the host reads to the end of the stream. Run with
// -benchtime=Nx (512x is 32 MiB).
func BenchmarkGuestStream64K(b *testing.B) {
	const device = "firecracker-1.14"
	b.Run("real-6.12/"+device, func(b *testing.B) {
		e := needEnv(b)
		k := e.kernel(b, "6.12")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		dir := shortDir(b)
		uds := filepath.Join(dir, "v.sock")
		ln, err := net.Listen("unix", uds+"_"+strconv.Itoa(streamPort))
		require.NoError(b, err)
		defer ln.Close()
		be := e.startBackend(b, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: device})
		total := uint64(b.N) * 64 << 10
		initrd := e.initramfs(b, k, true, "/bin/kinit", "stream", "--port", strconv.Itoa(streamPort), "--total", strconv.FormatUint(total, 10), "--size", "65536")
		b.StopTimer()
		vm := boot(b, ctx, realkernel.VMConfig{Kernel: k, Initramfs: initrd, VhostSocket: filepath.Join(dir, "vhost.sock")})
		n, el, err := receive(ln, total)
		require.NoError(b, err)
		require.Equal(b, total, n)
		rate, err := vm.Expect(ctx, "kinit: stream: done")
		require.NoError(b, err)
		b.Logf("guest says: %s", rate.Text)
		require.NoError(b, vm.Send("poweroff"))
		_ = vm.Wait(ctx)
		_ = be.Close()
		b.ReportMetric(float64(n)/el.Seconds()/1e6, "MB/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("lab-linux-6.12.68/"+device, func(b *testing.B) {
		l, err := lab.Start(lab.Config{Config: emu.Config{Device: device, Kernel: "linux-6.12.68"}, Keep: 1 << 15})
		require.NoError(b, err)
		defer l.Stop()
		ln, err := l.Host.Listen(l.Host.UDSPath() + "_" + strconv.Itoa(streamPort))
		require.NoError(b, err)
		total := uint64(b.N) * 64 << 10
		type result struct {
			n   uint64
			el  time.Duration
			err error
		}
		got := make(chan result, 1)
		go func() {
			n, el, err := receive(ln, total)
			got <- result{n, el, err}
		}()
		c, err := l.Guest.Dial(2, streamPort)
		require.NoError(b, err)
		buf := make([]byte, 64<<10)
		for off := uint64(0); off < total; off += uint64(len(buf)) {
			pattern.Fill(buf, off)
			_, err := c.Write(buf)
			require.NoError(b, err)
		}
		require.NoError(b, c.Close())
		r := <-got
		require.NoError(b, r.err)
		require.Equal(b, total, r.n)
		b.ReportMetric(float64(r.n)/r.el.Seconds()/1e6, "MB/s")
		b.ReportMetric(0, "ns/op")
	})
}
