package vhostuser

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

const wait = 10 * time.Second

// guestConnect connects guest port src to a real host listener on
// <uds>_<dst>, offering bufAlloc bytes of credit, and returns the host's end
// and the device's RESPONSE.
func guestConnect(t testing.TB, h *harness, src, dst, bufAlloc uint32) (net.Conn, virtio.Header) {
	t.Helper()
	ln, err := net.Listen("unix", h.uds+"_"+strconv.FormatUint(uint64(dst), 10))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	h.sendPkt(hdr(src, dst, virtio.OpRequest, bufAlloc, 0), nil)
	host, err := acceptWithin(ln, wait)
	require.NoError(t, err)
	t.Cleanup(func() { host.Close() })
	resp, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpResponse, resp.Op, pktString(resp))
	return host, resp
}

func TestGuestConnectReachesHostListenerAndDataFlowsBothWays(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()

	host, resp := guestConnect(t, h, 49152, 5000, 65536)
	require.Equal(t, uint32(5000), resp.SrcPort)
	require.Equal(t, uint32(49152), resp.DstPort)
	require.Equal(t, uint64(3), resp.DstCID)

	h.sendPkt(hdr(49152, 5000, virtio.OpRW, 65536, 0), []byte("hello"))
	got := make([]byte, 5)
	require.NoError(t, host.SetReadDeadline(time.Now().Add(wait)))
	_, err := io.ReadFull(host, got)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))

	_, err = host.Write([]byte("world"))
	require.NoError(t, err)
	rw, data := h.recvPkt(wait)
	require.Equal(t, virtio.OpRW, rw.Op, pktString(rw))
	require.Equal(t, "world", string(data))
	require.Equal(t, uint32(5), rw.FwdCnt, "the device forwarded the guest's 5 bytes and says so")

	require.Eventually(t, func() bool {
		return h.logged("device", "tx RW 3:49152->2:5000 len=5", "chain r44 r5")
	}, wait, 10*time.Millisecond, "each TX packet's line shows its chain shape:\n%s", h.logText())
	require.True(t, h.logged("tx REQUEST 3:49152->2:5000", "chain r44"))
}

func TestGuestConnectWithoutListenerGetsRST(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()

	h.sendPkt(hdr(49153, 6000, virtio.OpRequest, 65536, 0), nil)
	rst, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRST, rst.Op, pktString(rst))
	require.Equal(t, uint32(49153), rst.DstPort)
}

func TestDeviceHonoursGuestCredit(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	// The guest gives the device 8 bytes of credit.
	host, _ := guestConnect(t, h, 49154, 5001, 8)
	_, err := host.Write([]byte("0123456789abcdefghij"))
	require.NoError(t, err)
	var got []byte
	for len(got) < 8 {
		p, data := h.recvPkt(wait)
		require.Equal(t, virtio.OpRW, p.Op, pktString(p))
		got = append(got, data...)
	}
	require.Equal(t, "01234567", string(got), "no more than the credit")
	h.expectNoPkt(200 * time.Millisecond)

	// Consuming the bytes returns the credit: the rest follows.
	h.sendPkt(hdr(49154, 5001, virtio.OpCreditUpdate, 8, 8), nil)
	for len(got) < 16 {
		p, data := h.recvPkt(wait)
		require.Equal(t, virtio.OpRW, p.Op, pktString(p))
		got = append(got, data...)
	}
	require.Equal(t, "0123456789abcdef", string(got))
}

// hostConnect is a host program's CONNECT through the hybrid socket, with
// the guest accepting: it returns the host connection and the device's
// local port from "OK <port>".
func hostConnect(t *testing.T, h *harness, guestPort uint32) (net.Conn, uint32) {
	c, err := net.Dial("unix", h.uds)
	require.NoError(t, err)
	_, err = c.Write([]byte("CONNECT " + strconv.Itoa(int(guestPort)) + "\n"))
	require.NoError(t, err)
	req, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRequest, req.Op, pktString(req))
	require.Equal(t, guestPort, req.DstPort)
	require.Equal(t, virtio.CIDHost, req.SrcCID)
	resp := hdr(guestPort, req.SrcPort, virtio.OpResponse, 65536, 0)
	h.sendPkt(resp, nil)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "OK "+strconv.FormatUint(uint64(req.SrcPort), 10)+"\n", line)
	return c, req.SrcPort
}

func TestHostConnectReachesGuestPort(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	c, port := hostConnect(t, h, 7000)
	defer c.Close()
	require.Equal(t, uint32(1<<30), port, "Firecracker's first local port")

	_, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	p, data := h.recvPkt(wait)
	require.Equal(t, virtio.OpRW, p.Op, pktString(p))
	require.Equal(t, "ping", string(data))
	h.sendPkt(hdr(7000, port, virtio.OpRW, 65536, 4), []byte("pong"))
	got := make([]byte, 4)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "pong", string(got))
}

// TestRingRestartRebuildsPortsPerProfile stops and starts the rings as the
// guest driver's remove and probe make QEMU do. The device is rebuilt as a
// snapshot restore rebuilds it: host connections are gone, and the next
// host-initiated connection's port starts again at 2^30 with a fixed-start
// profile (Firecracker before v1.15) and goes on with a persisted one.
func TestRingRestartRebuildsPortsPerProfile(t *testing.T) {
	for _, tc := range []struct {
		device string
		second uint32
	}{
		{"firecracker-1.14", 1 << 30},
		{"firecracker-1.15", 1<<30 + 1},
	} {
		t.Run(tc.device, func(t *testing.T) {
			h := newHarness(t, tc.device)
			h.handshake()
			h.start()
			c, first := hostConnect(t, h, 7000)
			defer c.Close()
			require.Equal(t, uint32(1<<30), first)

			bases := h.stop()
			require.Equal(t, uint32(h.txNext), bases[virtio.QueueTX], "TX base: every chain the guest queued was taken")
			require.Equal(t, uint32(h.rxGot), bases[virtio.QueueRX], "RX base: one buffer per packet the guest got")
			require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
			_, err := c.Read(make([]byte, 1))
			require.Error(t, err, "the host connection dies with the device")

			h.start()
			c2, second := hostConnect(t, h, 7000)
			defer c2.Close()
			require.Equal(t, tc.second, second)
			require.True(t, h.logged("rings stopped (cycle 1)"), h.logText())
			require.True(t, h.logged("rings started again (cycle 1)"), h.logText())
			require.True(t, h.logged("device restored ("+tc.device+")"), h.logText())
		})
	}
}

func acceptWithin(ln net.Listener, d time.Duration) (net.Conn, error) {
	if ul, ok := ln.(*net.UnixListener); ok {
		_ = ul.SetDeadline(time.Now().Add(d))
	}
	return ln.Accept()
}

// lockedBuffer is a capture sink written by the world's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// Every packet through the back-end lands in the LINKTYPE_VSOCK capture:
// an af_vsockmon header, the virtio header, the payload.
func TestCaptureRecordsEveryPacket(t *testing.T) {
	var capture lockedBuffer
	h := newHarnessWith(t, func(c *Config) { c.Pcap = &capture })
	h.handshake()
	h.start()
	h.sendPkt(hdr(49155, 6001, virtio.OpRequest, 65536, 0), nil) // nobody listens: RST
	rst, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRST, rst.Op)

	le := binary.LittleEndian
	var got []virtio.Header
	require.Eventually(t, func() bool {
		b := capture.Bytes()
		if len(b) < 24 {
			return false
		}
		require.Equal(t, uint32(0xa1b23c4d), le.Uint32(b), "nanosecond pcap")
		require.Equal(t, uint32(replay.LinkTypeVsock), le.Uint32(b[20:]))
		got = got[:0]
		for b = b[24:]; len(b) >= 16; {
			n := int(le.Uint32(b[8:]))
			rec := b[16 : 16+n]
			h, err := virtio.DecodeHeader(rec[32:])
			require.NoError(t, err)
			got = append(got, h)
			b = b[16+n:]
		}
		return len(got) == 2
	}, wait, 10*time.Millisecond)
	require.Equal(t, virtio.OpRequest, got[0].Op)
	require.Equal(t, uint32(6001), got[0].DstPort)
	require.Equal(t, virtio.OpRST, got[1].Op)
}

// The seed-000 mechanism through the back-end: Cloud Hypervisor before v51
// reads only the first data descriptor, so a packet whose payload spans two
// is dropped, and the log shows the chain's shape.
func TestCloudHypervisor50DropsAChainSpanningTwoDataDescriptors(t *testing.T) {
	h := newHarnessWith(t, func(c *Config) { c.Device = "cloud-hypervisor-50" })
	h.handshake()
	h.start()
	host, _ := guestConnect(t, h, 49156, 5002, 65536)

	h.sendShaped(hdr(49156, 5002, virtio.OpRW, 65536, 0), []byte("0123456789abcdef"), 8, 8)
	require.Eventually(t, func() bool { return h.logged("dropped TX chain r44 r8 r8") }, wait, 10*time.Millisecond, h.logText())
	var bad uint64
	require.NoError(t, h.b.Lab().Do(func(w *emu.World) error { bad = w.Dev.Stats().BadTXChains; return nil }))
	require.Equal(t, uint64(1), bad)

	h.sendShaped(hdr(49156, 5002, virtio.OpRW, 65536, 0), []byte("linear"), 6)
	got := make([]byte, 6)
	require.NoError(t, host.SetReadDeadline(time.Now().Add(wait)))
	_, err := io.ReadFull(host, got)
	require.NoError(t, err)
	require.Equal(t, "linear", string(got), "a one-descriptor payload passes")
}

// Before the guest starts the rings there is no device: a host client on
// the hybrid socket waits, as in a listen backlog (and is not looped back to
// the socket it came in on), and is served once the rings start.
func TestHostConnectBeforeTheRingsStartWaitsForTheDevice(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	c, err := net.Dial("unix", h.uds)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("CONNECT 7000\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = c.Read(make([]byte, 16))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the client waits")

	h.start()
	req, _ := h.recvPkt(wait)
	require.Equal(t, virtio.OpRequest, req.Op, pktString(req))
	require.Equal(t, uint32(7000), req.DstPort)
	h.sendPkt(hdr(7000, req.SrcPort, virtio.OpResponse, 65536, 0), nil)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "OK 1073741824\n", line)
}

// A client that connected while the rings ran is closed when they stop,
// and one that connects while they are stopped is served after the
// restart by the rebuilt device.
func TestHostClientsAcrossARingRestart(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	h.handshake()
	h.start()
	c1, _ := hostConnect(t, h, 7000)
	defer c1.Close()
	h.stop()
	require.NoError(t, c1.SetReadDeadline(time.Now().Add(wait)))
	_, err := c1.Read(make([]byte, 1))
	require.Error(t, err)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "closed with the device")

	c2, err := net.Dial("unix", h.uds)
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.Write([]byte("CONNECT 7001\n"))
	require.NoError(t, err)
	h.start()
	req, _ := h.recvPkt(wait)
	require.Equal(t, uint32(7001), req.DstPort, pktString(req))
	require.Equal(t, uint32(1<<30), req.SrcPort, "fixed-start ports begin again")
}
