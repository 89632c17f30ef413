package realkernel_test

import (
	"bytes"
	"context"
	"fmt"
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
// path and runs the case's host side on the connection it gets.
func hostCases(listen func(path string) (net.Listener, error), uds string, cases []conform.Case) (wait func() []error, err error) {
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	var lns []net.Listener
	for i, c := range cases {
		if !c.Listens() {
			continue
		}
		ln, err := listen(uds + "_" + strconv.Itoa(conformBase+i))
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
			conn, err := ln.Accept()
			if err != nil {
				errs[i] = fmt.Errorf("case %d %s: accept: %w", i, c, err)
				return
			}
			if err := conform.RunHost(c, conn); err != nil {
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

// realCases runs the cases in a real guest through the back-end and
// returns the back-end's output lines.
func realCases(t *testing.T, e *env, series string, cases []conform.Case, pcap string) []string {
	k := e.kernel(t, series)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+len(cases))*time.Second)
	defer cancel()
	dir := shortDir(t)
	uds := filepath.Join(dir, "v.sock")
	wait, err := hostCases(func(p string) (net.Listener, error) { return net.Listen("unix", p) }, uds, cases)
	require.NoError(t, err)
	be := e.startBackend(t, ctx, realkernel.BackendConfig{Socket: filepath.Join(dir, "vhost.sock"), UDS: uds, Device: conformDevice, Log: "packet", Pcap: pcap})
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
func labCases(t *testing.T, kernel string, cases []conform.Case, pcap string) []string {
	var capture bytes.Buffer
	res := lab.Run(t, lab.Config{Config: emu.Config{Device: conformDevice, Kernel: kernel, LogTXShapes: true}, Keep: engine.KindPacket}, func(l *lab.Lab) {
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
		wait, err := hostCases(l.Host.Listen, l.Host.UDSPath(), cases)
		require.NoError(t, err)
		for i, c := range cases {
			err := conform.RunGuest(c, func() (conform.Conn, error) {
				c, err := l.Guest.Dial(2, uint32(conformBase+i))
				if err != nil {
					return nil, err
				}
				return labConn{c.(*lab.Conn)}, nil
			})
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

// TestConformance runs the conformance cases (package internal/conform) in
// each real kernel and on its guest model profile, and requires the
// packets the device saw to agree case by case. With -v it prints the
// table: case, kernel -> model, real, match.
func TestConformance(t *testing.T) {
	e := needEnv(t)
	cases := conform.Suite(200)
	if s := os.Getenv("VSOCKLAB_CONFORM_CASES"); s != "" {
		var err error
		cases, err = conform.Parse(s)
		require.NoError(t, err)
	}
	for _, k := range []struct{ series, profile string }{
		{"6.12", "linux-debian-6.12.117"},
		{"6.1", "linux-debian-6.1.192"},
	} {
		t.Run(k.series, func(t *testing.T) {
			start := time.Now()
			dir := os.Getenv("VSOCKLAB_CONFORM_OUT")
			var pcap, labPcap string
			if dir != "" {
				pcap = filepath.Join(dir, "real-"+k.series+".pcap")
				labPcap = filepath.Join(dir, "lab-"+k.series+".pcap")
			}
			real := conform.ByCase(conform.Packets(realCases(t, e, k.series, cases, pcap)), conformBase, len(cases))
			realWall := time.Since(start)
			model := conform.ByCase(conform.Packets(labCases(t, k.profile, cases, labPcap)), conformBase, len(cases))
			matched := 0
			var bad []string
			var table strings.Builder
			fmt.Fprintf(&table, "| case | kernel | model (%s) | real | match |\n|---|---|---|---|---|\n", k.profile)
			for i, c := range cases {
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
				fmt.Fprintf(&table, "| %d %s | %s | %s | %s | %s |\n", i, c, k.series, ms, rs, match)
			}
			t.Logf("conformance table, kernel %s:\n%s", k.series, table.String())
			if dir != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "table-"+k.series+".md"), []byte(table.String()), 0o644))
			}
			t.Logf("kernel %s, profile %s: %d of %d cases match (real run %s, total %s)", k.series, k.profile, matched, len(cases), realWall.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			for _, b := range bad {
				t.Log(b)
			}
			if len(bad) > 0 {
				for i := range cases {
					t.Logf("case %d %s\n model:\n  %s\n real:\n  %s", i, cases[i], strings.Join(model[i], "\n  "), strings.Join(real[i], "\n  "))
				}
			}
			require.Empty(t, bad)
		})
	}
}

// labConn is a lab guest connection as the cases use it.
type labConn struct{ *lab.Conn }

func (c labConn) SetBufferSize(n uint64) error { return c.SetVsockBufferSize(n) }

func (c labConn) SetWriteTimeout(d time.Duration) error {
	return c.SetWriteDeadline(time.Now().Add(d))
}
