package realkernel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/realkernel"
)

// The conformance probe: one guest-initiated connection to host port
// probePort; one write of each size (a pause after each, so that each is
// its own packets), then the host sends probeBack bytes and the guest reads
// them in 4 KiB reads, then the guest closes. Run by kinit in a real guest
// and by a lab program on the guest model, against the same device
// profile, so that the two packet logs can be set side by side.
const probePort = 5001

// probeSizes fill whole 64 KiB credit windows of the devices' buf_alloc,
// so that no write is split by credit and each is one packet: the chain
// shape of each size shows as it is.
var probeSizes = []int{
	1, 100, 3732, 3733, 4096, 16384, 32404, 5086, // 65,536
	32405, 33131, // 65,536
	40000, 25536, // 65,536
	50000, 15536, // 65,536
	60768, 4768, // 65,536
	65536,
}

const (
	probeBack     = 256 << 10
	probeReadSize = 4096
	probePause    = 300 * time.Millisecond
	// probeReadDelay lets the host's probeBack bytes (exactly the guest's
	// buf_alloc) all arrive before the guest reads, so that the guest's
	// credit updates follow from its reads alone and not from how fast
	// the bytes trickle in (an empty queue after a read sends one).
	probeReadDelay = 1500 * time.Millisecond
)

func probeTotal() int {
	n := 0
	for _, s := range probeSizes {
		n += s
	}
	return n
}

// probeHost is the host side: read everything the guest writes, send
// probeBack bytes in 64 KiB writes, wait for the guest to close.
func probeHost(c net.Conn) error {
	defer c.Close()
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(c, make([]byte, probeTotal())); err != nil {
		return fmt.Errorf("probe host: read: %w", err)
	}
	for off := 0; off < probeBack; off += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("probe host: write: %w", err)
		}
	}
	_, _ = io.Copy(io.Discard, c)
	return nil
}

var ephemeral = regexp.MustCompile(`3:(\d{5,})`)

// normalise keeps the packet lines of a device log, without their times,
// and names the guest's ephemeral port G.
func normalise(lines []string) []string {
	var out []string
	for _, l := range lines {
		i := strings.Index(l, "device  ")
		if i < 0 {
			continue
		}
		l = l[i+len("device  "):]
		if !strings.HasPrefix(l, "tx ") && !strings.HasPrefix(l, "rx ") {
			continue
		}
		out = append(out, ephemeral.ReplaceAllString(l, "3:G"))
	}
	return out
}

func sizesArg() string {
	var s []string
	for _, n := range probeSizes {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}

// realProbe runs the probe in a real guest and returns the backend's
// packet lines.
func realProbe(t *testing.T, e *env, series, device string) []string {
	k := e.kernel(t, series)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := shortDir(t)
	uds := filepath.Join(dir, "v.sock")
	ln, err := net.Listen("unix", uds+"_"+strconv.Itoa(probePort))
	require.NoError(t, err)
	defer ln.Close()
	hostErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			hostErr <- err
			return
		}
		hostErr <- probeHost(c)
	}()
	be := e.startBackend(t, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: device, Log: "packet,credit,fault"})
	initrd := e.initramfs(t, k, true, "/bin/kinit", "probe", "--port", strconv.Itoa(probePort), "--sizes", sizesArg(),
		"--read", strconv.Itoa(probeBack), "--read-size", strconv.Itoa(probeReadSize), "--pause", probePause.String(),
		"--read-delay", probeReadDelay.String())
	vm := boot(t, ctx, realkernel.VMConfig{Kernel: k, Initramfs: initrd, VhostSocket: filepath.Join(dir, "vhost.sock")})
	_, err = vm.Expect(ctx, "kinit: probe: done")
	require.NoError(t, err)
	select {
	case err := <-hostErr:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("probe host did not finish")
	}
	time.Sleep(500 * time.Millisecond) // the last packets of the close
	require.NoError(t, vm.Send("poweroff"))
	_ = vm.Wait(ctx)
	vm.Close()
	require.NoError(t, be.Close())
	var lines []string
	for _, l := range be.Lines() {
		lines = append(lines, l.Text)
	}
	return normalise(lines)
}

// labProbe runs the same probe on the guest model in the lab, on the
// real-time driver, and returns the device's packet lines.
func labProbe(t *testing.T, kernel, device string) []string {
	l, err := lab.Start(lab.Config{Config: emu.Config{Device: device, Kernel: kernel}, Keep: engine.KindPacket | engine.KindCredit | engine.KindFault})
	require.NoError(t, err)
	var lines []string
	done := make(chan struct{})
	rec := make(chan string, 4096)
	go func() {
		defer close(done)
		for s := range rec {
			lines = append(lines, s)
		}
	}()
	require.NoError(t, l.Do(func(w *emu.World) error {
		w.Eng.Log.OnRecord(func(r engine.Record) {
			if r.Kind&(engine.KindPacket|engine.KindCredit|engine.KindFault) != 0 {
				rec <- r.String()
			}
		})
		return nil
	}))
	ln, err := l.Host.Listen(l.Host.UDSPath() + "_" + strconv.Itoa(probePort))
	require.NoError(t, err)
	hostErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			hostErr <- err
			return
		}
		hostErr <- probeHost(c)
	}()
	c, err := l.Guest.Dial(2, probePort)
	require.NoError(t, err)
	var off uint64
	for _, n := range probeSizes {
		b := make([]byte, n)
		pattern.Fill(b, off)
		_, err := c.Write(b)
		require.NoError(t, err)
		off += uint64(n)
		time.Sleep(probePause)
	}
	time.Sleep(probeReadDelay)
	buf := make([]byte, probeReadSize)
	for got := 0; got < probeBack; {
		n, err := c.Read(buf[:min(len(buf), probeBack-got)])
		got += n
		require.NoError(t, err)
		time.Sleep(probePause / 10)
	}
	require.NoError(t, c.Close())
	require.NoError(t, <-hostErr)
	time.Sleep(time.Second) // the last packets of the close, as in the real run
	l.Stop()
	close(rec)
	<-done
	return normalise(lines)
}

// TestProbeConformance sets the packets a real kernel sent and received for
// the probe beside those of the nearest guest model profile, against
// firecracker-1.14 (which parses any chain shape), and asserts what the two
// must agree on: the RW payload lengths toward the host (how writes are
// split by credit), the guest's credit updates (when they are sent and
// their fwd_cnt), the guest's buf_alloc, the largest RX payload (the RX
// buffer size less the header) and the RX total. How the host's bytes are
// cut into RX packets is left out: it follows how the real Unix socket
// hands the host's writes to the device, in real time. The TX chain shapes
// come only from the real run (the lab's device does not log them) and are
// checked against what the real kernels did when this test was written.
func TestProbeConformance(t *testing.T) {
	e := needEnv(t)
	const device = "firecracker-1.14"
	for _, tc := range []struct {
		series, model string
		shapes        map[string]string // RW payload length -> chain shape
	}{
		// Above SKB_WITH_OVERHEAD(PAGE_SIZE << 3) the skb is nonlinear and
		// alloc_skb_with_frags fills it with the largest page order that
		// the remaining pages need, from order 3 down (Linux
		// include/linux/virtio_vsock.h, virtio_vsock_alloc_skb, and
		// net/core/skbuff.c, alloc_skb_with_frags, 6.12.117). A payload up
		// to 32,768 bytes shows one data descriptor either way.
		{"6.12", "linux-6.12.68", map[string]string{
			"32404": "r44 r32404", "32405": "r44 r32405", "33131": "r44 r32768 r363", "40000": "r44 r32768 r7232",
			"50000": "r44 r32768 r16384 r848", "60768": "r44 r32768 r16384 r8192 r3424", "65536": "r44 r32768 r32768",
		}},
		// Linear skbs only (6.1.192).
		{"6.1", "linux-6.12.67", map[string]string{
			"32404": "r44 r32404", "32405": "r44 r32405", "33131": "r44 r33131", "40000": "r44 r40000",
			"50000": "r44 r50000", "60768": "r44 r60768", "65536": "r44 r65536",
		}},
	} {
		t.Run(tc.series, func(t *testing.T) {
			real := realProbe(t, e, tc.series, device)
			model := labProbe(t, tc.model, device)
			t.Logf("real %s, %d packet lines:\n%s", tc.series, len(real), strings.Join(real, "\n"))
			t.Logf("model %s, %d packet lines:\n%s", tc.model, len(model), strings.Join(model, "\n"))
			require.Equal(t, rwLens(model, "tx"), rwLens(real, "tx"), "RW payload lengths toward the host")
			require.Equal(t, matching(model, "tx CREDIT_UPDATE"), withoutChains(matching(real, "tx CREDIT_UPDATE")), "the guest's credit updates")
			require.Equal(t, fieldSet(model, "tx ", "buf_alloc"), fieldSet(real, "tx ", "buf_alloc"), "the guest's buf_alloc")
			mLens, rLens := rwLens(model, "rx"), rwLens(real, "rx")
			require.Equal(t, sum(mLens), sum(rLens), "RX payload bytes")
			require.Equal(t, maxOf(mLens), maxOf(rLens), "largest RX payload (RX buffer less the header)")
			for _, l := range real {
				m := lenField.FindStringSubmatch(l)
				if !strings.HasPrefix(l, "tx RW ") || m == nil {
					continue
				}
				if want, ok := tc.shapes[m[1]]; ok {
					require.True(t, strings.HasSuffix(l, " chain "+want), "real chain of a %s-byte payload: %s (want %s)", m[1], l, want)
				}
			}
		})
	}
}

var (
	lenField   = regexp.MustCompile(` len=(\d+)`)
	chainField = regexp.MustCompile(` chain .*$`)
)

// rwLens lists the payload lengths of the RW packets in one direction.
func rwLens(lines []string, dir string) []int {
	var out []int
	for _, l := range lines {
		if strings.HasPrefix(l, dir+" RW ") {
			if m := lenField.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[1])
				out = append(out, n)
			}
		}
	}
	return out
}

func matching(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func withoutChains(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = chainField.ReplaceAllString(l, "")
	}
	return out
}

// fieldSet lists the distinct values of a header field in lines that
// start with prefix.
func fieldSet(lines []string, prefix, field string) []string {
	re := regexp.MustCompile(" " + field + `=(\d+)`)
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil && strings.HasPrefix(l, prefix) && !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}

func maxOf(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
