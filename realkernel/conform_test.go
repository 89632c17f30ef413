package realkernel_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/lab"
	"github.com/vsocklab/vsocklab/internal/conform"
	"github.com/vsocklab/vsocklab/realkernel"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

// conformBase is the host port of case 0.
const conformBase = 7000

// conformPause is how long the guest waits after each case, in both runs,
// so that a case's last packets (the close) come before the next case's.
const conformPause = 20 * time.Millisecond

// conformDevice is the device both runs use: Firecracker 1.14 parses any
// chain shape, so every layout a kernel sends is logged as it is.
const conformDevice = "firecracker-1.14"

// hostCases listens for every listening case on its port's hybrid socket
// path and runs the case's host side there; dialHybrid connects to the
// device's own hybrid socket for the host's CONNECTs.
func hostCases(listen func(path string) (net.Listener, error), dialHybrid func() (net.Conn, error), uds string, cases []conform.Case) (wait func() []error, err error) {
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	var lns []net.Listener
	for i, c := range cases {
		if !c.Listens() {
			continue
		}
		port := uint32(conformBase + i)
		ln, err := listen(uds + "_" + strconv.Itoa(int(port)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ln.Close()
			if err := conform.RunHost(c, port, caseHost{ln, dialHybrid, listen, uds}); err != nil {
				errs[i] = fmt.Errorf("case %d %s: %w", i, c, err)
			}
		}()
	}
	return func() []error {
		for _, l := range lns {
			l.Close()
		}
		wg.Wait()
		return errs
	}, nil
}

// caseHost is a case's host side: its port's listener and the device's
// hybrid socket.
type caseHost struct {
	ln         net.Listener
	dialHybrid func() (net.Conn, error)
	listen     func(path string) (net.Listener, error)
	uds        string
}

func (h caseHost) Accept() (io.ReadWriteCloser, error)     { return h.ln.Accept() }
func (h caseHost) DialHybrid() (io.ReadWriteCloser, error) { return h.dialHybrid() }

func (h caseHost) Listen(port uint32) (conform.HostListener, error) {
	ln, err := h.listen(h.uds + "_" + strconv.FormatUint(uint64(port), 10))
	if err != nil {
		return nil, err
	}
	return hostListener{ln}, nil
}

type hostListener struct{ net.Listener }

func (l hostListener) Accept() (io.ReadWriteCloser, error) { return l.Listener.Accept() }

// realCases runs the cases in a real guest through the back-end and
// returns the back-end's output lines.
func realCases(t *testing.T, e *env, series string, s conformSuite, pcap string) []string {
	cases := s.cases
	k := e.kernel(t, series)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(90+len(cases))*time.Second)
	defer cancel()
	dir := shortDir(t)
	uds := filepath.Join(dir, "v.sock")
	wait, err := hostCases(func(p string) (net.Listener, error) { return net.Listen("unix", p) },
		func() (net.Conn, error) { return net.Dial("unix", uds) }, uds, cases)
	require.NoError(t, err)
	be := e.startBackend(t, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: conformDevice, BufAlloc: s.bufAlloc, Log: "packet", Pcap: pcap})
	initrd := e.initramfs(t, k, true, "/bin/kinit", "cases", "--base", strconv.Itoa(conformBase),
		"--cases", conform.Format(cases), "--pause", conformPause.String())
	vm := boot(t, ctx, realkernel.VMConfig{Kernel: k, Initramfs: initrd, VhostSocket: filepath.Join(dir, "vhost.sock")})
	if _, err = vm.Expect(ctx, "kinit: cases: done"); err != nil {
		for _, l := range vm.Lines() {
			if strings.Contains(l.Text, "kinit: ") {
				t.Log(l.Text)
			}
		}
		require.NoError(t, err)
	}
	for i, c := range cases {
		require.Positivef(t, vm.Count(fmt.Sprintf("kinit: case %d %s: ok", i, c)), "real guest: case %d %s did not end ok", i, c)
	}
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, vm.Send("poweroff"))
	_ = vm.Wait(ctx)
	vm.Close()
	require.NoError(t, be.Close())
	for _, err := range wait() {
		require.NoError(t, err)
	}
	var lines []string
	for _, l := range be.Lines() {
		lines = append(lines, l.Text)
	}
	return lines
}

// labCases runs the same cases on the guest model, in a bubble, and
// returns its event log.
func labCases(t *testing.T, kernel string, s conformSuite, pcap string) []string {
	cases := s.cases
	var capture bytes.Buffer
	// QEMU 7.2's vhost-user-vsock rings have 128 entries (SET_VRING_NUM
	// 128), so the real driver posts 128 receive buffers: the lab's too.
	cfg := emu.Config{Device: conformDevice, Kernel: kernel, QueueSize: 128, LogTXShapes: true, LogRXBuffers: true, DeviceBufAlloc: s.bufAlloc}
	res := lab.Run(t, lab.Config{Config: cfg, Keep: engine.KindPacket}, func(l *lab.Lab) {
		if pcap != "" {
			pw, err := replay.NewPcapWriter(&capture)
			require.NoError(t, err)
			require.NoError(t, l.Do(func(w *emu.World) error {
				w.AddTap(func(at time.Duration, _ device.Dir, h *virtio.Header, payload []byte) {
					_ = pw.Write(replay.Packet{At: at, Hdr: *h, Payload: payload})
				})
				return nil
			}))
		}
		wait, err := hostCases(l.Host.Listen, func() (net.Conn, error) { return l.Host.Dial(l.Host.UDSPath()) }, l.Host.UDSPath(), cases)
		require.NoError(t, err)
		for i, c := range cases {
			err := conform.RunGuest(c, uint32(conformBase+i), labGuest{l})
			require.NoErrorf(t, err, "lab: case %d %s", i, c)
			time.Sleep(conformPause)
		}
		for _, err := range wait() {
			require.NoError(t, err)
		}
	})
	if pcap != "" {
		require.NoError(t, os.WriteFile(pcap, capture.Bytes(), 0o644))
	}
	return strings.Split(res.Log, "\n")
}

// conformSuite is a list of cases run in one boot of a kernel, and the
// device setting they need.
type conformSuite struct {
	name     string // the suffix of its tables and captures; "" for the main one
	bufAlloc uint32 // the device's buffer (0: the profile's)
	cases    []conform.Case
}

// conformSuites are the main suite (internal/conform Suite) with the
// device's own 64 KiB buffer, and AdvertisedSuite with a device that
// advertises 1 MiB. VSOCKLAB_CONFORM_CASES replaces them with one list,
// run with the device buffer VSOCKLAB_CONFORM_BUF_ALLOC (default the
// profile's).
func conformSuites(t *testing.T) []conformSuite {
	if s := os.Getenv("VSOCKLAB_CONFORM_CASES"); s != "" {
		cases, err := conform.Parse(s)
		require.NoError(t, err)
		var buf uint64
		if b := os.Getenv("VSOCKLAB_CONFORM_BUF_ALLOC"); b != "" {
			buf, err = strconv.ParseUint(b, 10, 32)
			require.NoError(t, err, "VSOCKLAB_CONFORM_BUF_ALLOC")
		}
		return []conformSuite{{name: "", bufAlloc: uint32(buf), cases: cases}}
	}
	return []conformSuite{
		{name: "", cases: conform.Suite(200)},
		{name: "buf1M", bufAlloc: conform.AdvertisedBuffer, cases: conform.AdvertisedSuite()},
	}
}

// TestConformance runs the conformance cases (package internal/conform) in
// each real kernel and on its guest model profile, and requires the
// packets the device saw to agree case by case. With -v it prints the
// table: case, kernel -> model, real, match.
func TestConformance(t *testing.T) {
	e := needEnv(t)
	suites := conformSuites(t)
	for _, k := range []struct{ series, profile string }{
		{"6.12", "linux-debian-6.12.117"},
		{"6.1", "linux-debian-6.1.192"},
	} {
		t.Run(k.series, func(t *testing.T) {
			for _, s := range suites {
				runSuite(t, e, k.series, k.profile, s)
			}
		})
	}
}

// runSuite runs one suite in a boot of the kernel and in the lab and
// compares them.
func runSuite(t *testing.T, e *env, series, profile string, s conformSuite) {
	cases := s.cases
	start := time.Now()
	label := series
	if s.name != "" {
		label += "-" + s.name
	}
	dir := os.Getenv("VSOCKLAB_CONFORM_OUT")
	var pcap, labPcap string
	if dir != "" {
		pcap = filepath.Join(dir, "real-"+label+".pcap")
		labPcap = filepath.Join(dir, "lab-"+label+".pcap")
	}
	realStart, real := conform.ByCase(conform.Packets(realCases(t, e, series, s, pcap)), conformBase, len(cases))
	realWall := time.Since(start)
	modelStart, model := conform.ByCase(conform.Packets(labCases(t, profile, s, labPcap)), conformBase, len(cases))
	matched := 0
	var bad []string
	var table strings.Builder
	device := conformDevice
	if s.bufAlloc != 0 {
		device += fmt.Sprintf(", device buf_alloc %d", s.bufAlloc)
	}
	fmt.Fprintf(&table, "| case | kernel | model (%s; %s) | real | match |\n|---|---|---|---|---|\n", profile, device)
	// The receive buffers the driver posts at boot, before any case.
	startMatch := "yes"
	if d := conform.Diff(modelStart, realStart); d != "" {
		startMatch = "NO"
		bad = append(bad, "start: "+d)
	}
	ms, rs := strings.Join(modelStart, "; "), strings.Join(realStart, "; ")
	if rs == ms {
		rs = "same"
	}
	fmt.Fprintf(&table, "| start | %s | %s | %s | %s |\n", series, ms, rs, startMatch)
	for i, c := range cases {
		if !c.FreshRing() {
			// Where a refill that earlier cases made due shows depends
			// on when the device next looks at the ring.
			model[i], real[i] = conform.WithoutPosted(model[i]), conform.WithoutPosted(real[i])
		}
		if c.TimedWrites() {
			model[i], real[i] = conform.MergeRX(model[i]), conform.MergeRX(real[i])
		}
		d := conform.Diff(model[i], real[i])
		ms, rs, match := conform.Summary(c, model[i]), conform.Summary(c, real[i]), "yes"
		if rs == ms {
			rs = "same"
		}
		if d != "" {
			match = "NO"
			bad = append(bad, fmt.Sprintf("case %d %s: %s", i, c, d))
		} else {
			matched++
		}
		fmt.Fprintf(&table, "| %d %s | %s | %s | %s | %s |\n", i, c, series, ms, rs, match)
	}
	t.Logf("conformance table, kernel %s:\n%s", label, table.String())
	if dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "table-"+label+".md"), []byte(table.String()), 0o644))
	}
	t.Logf("kernel %s, profile %s: %d of %d cases match (real run %s, total %s)", label, profile, matched, len(cases), realWall.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, b := range bad {
		t.Log(b)
	}
	if len(bad) > 0 {
		for i := range cases {
			t.Logf("case %d %s\n model:\n  %s\n real:\n  %s", i, cases[i], strings.Join(model[i], "\n  "), strings.Join(real[i], "\n  "))
		}
	}
	require.Empty(t, bad)
}

// labConn is a lab guest connection as the cases use it.
type labConn struct{ *lab.Conn }

func (c labConn) SetLinger(sec int) error { return c.Conn.SetLinger(time.Duration(sec) * time.Second) }

// labGuest is the lab's guest as the cases use it.
type labGuest struct{ l *lab.Lab }

func (g labGuest) Dial(cid, port uint32, bufSize uint64) (conform.Conn, error) {
	if bufSize == 0 {
		c, err := g.l.Guest.Dial(uint64(cid), port)
		if err != nil {
			return nil, err
		}
		return labConn{c.(*lab.Conn)}, nil
	}
	return g.dialBound(virtio.PortAny, cid, port, bufSize)
}

func (g labGuest) DialFrom(local, cid, port uint32) (conform.Conn, error) {
	return g.dialBound(local, cid, port, 0)
}

// dialBound binds a socket to local, sets its buffer size unless bufSize
// is 0, and connects it.
func (g labGuest) dialBound(local, cid, port uint32, bufSize uint64) (conform.Conn, error) {
	s, err := g.l.Guest.Bind(local)
	if err != nil {
		return nil, err
	}
	if bufSize != 0 {
		if err := s.SetVsockBufferSize(bufSize); err != nil {
			s.Close()
			return nil, err
		}
	}
	c, err := s.Dial(g.l.Context(), uint64(cid), port)
	if err != nil {
		s.Close()
		return nil, err
	}
	return labConn{c}, nil
}

func (g labGuest) Listen(port uint32) (conform.Listener, error) {
	ln, err := g.l.Guest.Listen(port)
	if err != nil {
		return nil, err
	}
	return labListener{ln}, nil
}

func (g labGuest) Bind(port uint32) (io.Closer, error) { return g.l.Guest.Bind(port) }

func (g labGuest) ResetDevice() error {
	return g.l.Do(func(w *emu.World) error { return w.RestartDriver() })
}

type labListener struct{ net.Listener }

func (l labListener) Accept() (conform.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return labConn{c.(*lab.Conn)}, nil
}

func (c labConn) SetBufferSize(n uint64) error { return c.SetVsockBufferSize(n) }

func (c labConn) SetWriteTimeout(d time.Duration) error {
	return c.SetWriteDeadline(time.Now().Add(d))
}
