package emu_test

// Whole-world tests: the guest kernel model, the device model and the host's
// Unix sockets driven together, without programs or goroutines. Guest
// sockets are driven through w.Guest (the Kernel API), host programs through
// w.Host (uds.Namespace), and time through w.Settle and w.RunFor. Each test
// names the fact it pins as docs/sources.md#<anchor>, where the upstream
// file, function and commit of each are written down.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// firstLocalPort is the first host-side port a Firecracker muxer hands out:
// local_port_last starts at 2^30 - 1 (docs/sources.md#fc-port-allocation).
const firstLocalPort = 1 << 30

// --- helpers -----------------------------------------------------------------

func newWorld(t testing.TB, cfg emu.Config) *emu.World {
	t.Helper()
	w, err := emu.New(cfg)
	require.NoError(t, err)
	w.Settle()
	return w
}

// guestListen binds and listens on port, as init does.
func guestListen(t testing.TB, w *emu.World, port uint32) *guest.Socket {
	t.Helper()
	l := w.Guest.Socket()
	require.NoError(t, w.Guest.Bind(l, virtio.CIDAny, port, true))
	require.NoError(t, w.Guest.Listen(l, 128))
	return l
}

// hostDial is a host program connecting to a guest port through the device's
// socket: connect to uds_path, write "CONNECT <port>\n", let the world run
// and read the reply line. It returns the stream and the port named by
// "OK <port>\n", or refused when the device closed the stream without a
// reply (docs/sources.md#fc-ok-ack: guest RST or no listener -> closed with no reply).
func hostDial(t testing.TB, w *emu.World, port uint32) (c *uds.Conn, okPort uint32, refused bool) {
	t.Helper()
	c, err := w.Host.Connect(w.Config().UDSPath)
	require.NoError(t, err)
	_, err = c.Write([]byte("CONNECT " + strconv.FormatUint(uint64(port), 10) + "\n"))
	require.NoError(t, err)
	w.Settle()
	line, err := readLine(c)
	if errors.Is(err, io.EOF) && line == "" {
		c.Close()
		return nil, 0, true
	}
	require.NoError(t, err, "no reply to CONNECT %d (got %q)", port, line)
	_, err = fmt.Sscanf(line, "OK %d\n", &okPort)
	require.NoError(t, err, "reply %q", line)
	return c, okPort, false
}

// readLine reads one byte at a time up to '\n', so that stream data after
// the OK line stays in the socket.
func readLine(c *uds.Conn) (string, error) {
	var line []byte
	var one [1]byte
	for {
		n, err := c.Read(one[:])
		if err != nil {
			return string(line), err
		}
		if n == 1 {
			line = append(line, one[0])
			if one[0] == '\n' {
				return string(line), nil
			}
		}
	}
}

// hostDrain reads everything buffered at c and reports whether the stream
// ended (EOF) or failed.
func hostDrain(c *uds.Conn) (data []byte, eof bool, err error) {
	buf := make([]byte, 64*1024)
	for {
		n, rerr := c.Read(buf)
		data = append(data, buf[:n]...)
		switch {
		case rerr == nil:
			continue
		case errors.Is(rerr, io.EOF):
			return data, true, nil
		case errors.Is(rerr, syscall.EAGAIN):
			return data, false, nil
		default:
			return data, false, rerr
		}
	}
}

// accept takes the child the listener queued.
func accept(t testing.TB, w *emu.World, l *guest.Socket) *guest.Socket {
	t.Helper()
	c, err := w.Guest.Accept(l)
	require.NoError(t, err)
	require.Equal(t, guest.StateEstablished, c.State())
	return c
}

// hostInitiated makes an established host->guest connection to a guest
// listener on port.
func hostInitiated(t testing.TB, w *emu.World, l *guest.Socket) (*uds.Conn, *guest.Socket, uint32) {
	t.Helper()
	c, port, refused := hostDial(t, w, l.Local().Port)
	require.False(t, refused, "connect to guest port %d refused", l.Local().Port)
	return c, accept(t, w, l), port
}

// guestInitiated makes an established guest->host connection to host port
// (the device connects to uds_path_<port>, docs/sources.md#fc-peer-request).
func guestInitiated(t testing.TB, w *emu.World, port uint32) (*guest.Socket, *uds.Conn) {
	t.Helper()
	path := w.Config().UDSPath + "_" + strconv.FormatUint(uint64(port), 10)
	hl, err := w.Host.Listen(path, 128)
	require.NoError(t, err)
	s := w.Guest.Socket()
	require.ErrorIs(t, w.Guest.Connect(s, virtio.CIDHost, port), syscall.EINPROGRESS)
	w.Settle()
	done, err := w.Guest.ConnectResult(s)
	require.True(t, done)
	require.NoError(t, err)
	hc, err := hl.Accept()
	require.NoError(t, err)
	hl.Close()
	return s, hc
}

// guestDrain reads everything queued on s.
func guestDrain(t testing.TB, w *emu.World, s *guest.Socket) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 64*1024)
	for {
		n, err := w.Guest.Recv(s, buf, false)
		out = append(out, buf[:n]...)
		if errors.Is(err, syscall.EAGAIN) || n == 0 {
			return out
		}
		require.NoError(t, err)
	}
}

// opTap counts packets of op in direction dir and remembers their headers.
type opTap struct {
	dir  device.Dir
	op   virtio.Op
	hdrs []virtio.Header
}

func tapOp(w *emu.World, dir device.Dir, op virtio.Op) *opTap {
	ot := &opTap{dir: dir, op: op}
	w.AddTap(func(_ time.Duration, d device.Dir, h *virtio.Header, _ []byte) {
		if d == ot.dir && h.Op == ot.op {
			ot.hdrs = append(ot.hdrs, *h)
		}
	})
	return ot
}

func logged(w *emu.World, text string) bool {
	for _, r := range w.Eng.Log.Records() {
		if r.Text == text {
			return true
		}
	}
	return false
}

// pattern is n bytes that tell their own offset.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// --- a. socket semantics through the whole world ---------------------------

// docs/sources.md#linux-dispatch: no listener -> the guest answers the REQUEST with RST; docs/sources.md#fc-ok-ack:
// the device then closes the host stream with no reply text.
func TestWorldConnectToPortWithoutListener(t *testing.T) {
	w := newWorld(t, emu.Config{})
	c, _, refused := hostDial(t, w, 5555)
	require.True(t, refused, "host stream must close without an OK line")
	require.Nil(t, c)
	require.EqualValues(t, 1, w.Guest.Stats().RSTSent)
	require.Empty(t, w.Dev.Conns())
	require.Zero(t, w.Dev.Stats().Violations)
}

// The connection limit (docs/sources.md#fc-muxer: Firecracker's MAX_CONNECTIONS, 1,023) can
// be raised for scale experiments only on request, the log says so, and a
// negative limit is refused with the value named.
func TestWorldConnectionLimitOverride(t *testing.T) {
	w := newWorld(t, emu.Config{})
	require.NotContains(t, w.Eng.Log.String(), "connection limit")

	w = newWorld(t, emu.Config{MaxConnections: 1100})
	require.Contains(t, w.Eng.Log.String(), "device connection limit set to 1100 (not a real device's)")
	l := guestListen(t, w, 10000)
	for range 1100 {
		hostInitiated(t, w, l)
	}
	require.Len(t, w.Dev.Conns(), 1100)
	require.Zero(t, w.Dev.Stats().HostAcceptsDropped)

	_, err := emu.New(emu.Config{MaxConnections: -1})
	require.EqualError(t, err, "connection limit -1: must be positive, or 0 for the device's own")
}

// docs/sources.md#fc-peer-request: a guest-initiated connect whose uds_path_<port> has no listener
// gets RST from the device; docs/sources.md#linux-dispatch: RST in SYN_SENT -> ECONNRESET.
func TestWorldGuestConnectToHostPortNobodyListensOn(t *testing.T) {
	w := newWorld(t, emu.Config{})
	s := w.Guest.Socket()
	require.ErrorIs(t, w.Guest.Connect(s, virtio.CIDHost, 7777), syscall.EINPROGRESS)
	done, _ := w.Guest.ConnectResult(s)
	require.False(t, done, "nothing happens before the world runs")
	w.Settle()
	done, err := w.Guest.ConnectResult(s)
	require.True(t, done)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.Equal(t, guest.StateClose, s.State())
	require.EqualValues(t, 1, w.Dev.Stats().HostConnectsRefused)
	require.EqualValues(t, 1, w.Guest.Stats().RSTReceived)
	// Nothing lingers: no timeout fires later.
	w.RunFor(5 * time.Second)
	_, err = w.Guest.ConnectResult(s)
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

func TestWorldPeerClose(t *testing.T) {
	// docs/sources.md#fc-host-eof: host EOF -> SHUTDOWN(RCV|SEND) to the guest. docs/sources.md#linux-shutdown: the
	// guest reads what was queued, then end of stream; writes fail with EPIPE
	// once the peer shut down its receive side.
	t.Run("host closes", func(t *testing.T) {
		w := newWorld(t, emu.Config{})
		l := guestListen(t, w, 1234)
		hc, child, _ := hostInitiated(t, w, l)
		_, err := hc.Write([]byte("hello"))
		require.NoError(t, err)
		hc.Close()
		w.Settle()
		require.Equal(t, []byte("hello"), guestDrain(t, w, child))
		n, err := w.Guest.Recv(child, make([]byte, 16), false)
		require.NoError(t, err, "end of stream is 0, nil")
		require.Zero(t, n)
		_, err = w.Guest.Send(child, []byte("x"), false)
		require.ErrorIs(t, err, syscall.EPIPE)
		// docs/sources.md#linux-shutdown (3a5cc90a4d17): SHUTDOWN with both flags removes the socket
		// from the connected table; close() then answers with RST at once.
		require.Zero(t, w.Guest.ConnectedCount())
		w.Guest.Close(child)
		w.Settle()
		require.Empty(t, w.Dev.Conns(), "the guest's RST removes the LocalClosed connection")
		require.NotContains(t, w.Guest.Sockets(), child)
	})
	// docs/sources.md#linux-shutdown close(): SHUTDOWN(RCV|SEND), linger until the peer's RST;
	// docs/sources.md#fc-send-pkt: SHUTDOWN with both flags and an empty TX buffer -> RST, the
	// connection is removed and the host stream closed: the host reads the
	// data, then EOF.
	t.Run("guest closes", func(t *testing.T) {
		w := newWorld(t, emu.Config{})
		l := guestListen(t, w, 1234)
		hc, child, _ := hostInitiated(t, w, l)
		n, err := w.Guest.Send(child, []byte("bye"), false)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		w.Guest.Close(child)
		w.Settle()
		data, eof, err := hostDrain(hc)
		require.NoError(t, err)
		require.True(t, eof)
		require.Equal(t, []byte("bye"), data)
		require.Empty(t, w.Dev.Conns())
		require.Zero(t, w.Guest.ConnectedCount())
		require.NotContains(t, w.Guest.Sockets(), child, "the RST ended the linger at once")
		require.EqualValues(t, 1, w.Guest.Stats().RSTReceived)
	})
}

// docs/sources.md#linux-shutdown: shutdown flags are ORed and permanent; docs/sources.md#fc-send-pkt: the
// device ORs the flags of each SHUTDOWN in, and with both set and nothing
// buffered answers RST. FC test_peer_close: with SEND off the host's data
// still reaches the guest.
func TestWorldShutdownFlags(t *testing.T) {
	w := newWorld(t, emu.Config{})
	l := guestListen(t, w, 1234)
	hc, child, _ := hostInitiated(t, w, l)
	shutdowns := tapOp(w, device.GuestToHost, virtio.OpShutdown)

	require.NoError(t, w.Guest.Shutdown(child, guest.ShutSend))
	w.Settle()
	require.Len(t, shutdowns.hdrs, 1)
	require.EqualValues(t, virtio.ShutdownSend, shutdowns.hdrs[0].Flags)
	conns := w.Dev.Conns()
	require.Len(t, conns, 1)
	require.Equal(t, "PeerClosed(false,true)", conns[0].State)
	_, err := w.Guest.Send(child, []byte("x"), false)
	require.ErrorIs(t, err, syscall.EPIPE)
	_, err = hc.Write([]byte("still flows"))
	require.NoError(t, err)
	w.Settle()
	require.Equal(t, []byte("still flows"), guestDrain(t, w, child))
	data, eof, err := hostDrain(hc)
	require.NoError(t, err)
	require.False(t, eof, "SEND off alone does not close the host stream")
	require.Empty(t, data)

	// The second SHUTDOWN carries only RCV; the device keeps SEND.
	require.NoError(t, w.Guest.Shutdown(child, guest.ShutRcv))
	require.Len(t, shutdowns.hdrs, 1, "nothing leaves before the world runs")
	w.Settle()
	require.Len(t, shutdowns.hdrs, 2)
	require.EqualValues(t, virtio.ShutdownRcv, shutdowns.hdrs[1].Flags)
	require.Empty(t, w.Dev.Conns(), "both flags: RST and removal")
	_, eof, err = hostDrain(hc)
	require.NoError(t, err)
	require.True(t, eof)
	n, err := w.Guest.Recv(child, make([]byte, 8), false)
	require.NoError(t, err)
	require.Zero(t, n)
	require.EqualValues(t, 1, w.Guest.Stats().RSTReceived)
}

// docs/sources.md#linux-reset-leak, #fc-port-allocation: after a restore with fixed-start ports
// the first host connection reuses 1073741824; the transport reset left the
// accepted socket in TCP_CLOSE in the connected table, the REQUEST finds it
// and is answered with RST, so the host stream closes without OK. Once the
// guest closes the socket, the same source port connects again.
func TestWorldResetThenReconnectOnSameSourcePort(t *testing.T) {
	w := newWorld(t, emu.Config{Device: "firecracker-1.14"})
	l := guestListen(t, w, 10000)
	hc, child, port := hostInitiated(t, w, l)
	require.EqualValues(t, firstLocalPort, port)
	require.Zero(t, w.Guest.Leaked())

	require.NoError(t, w.Suspend())
	require.NoError(t, w.Resume())
	w.Settle()
	_, eof, err := hostDrain(hc)
	require.NoError(t, err)
	require.True(t, eof, "the device process exited with its host sockets")
	hc.Close()
	// docs/sources.md#linux-transport-reset: TCP_CLOSE, sk_err ECONNRESET, still in the table.
	require.Equal(t, guest.StateClose, child.State())
	require.Equal(t, syscall.ECONNRESET, child.Err())
	require.Equal(t, 1, w.Guest.ConnectedCount())
	require.Equal(t, 1, w.Guest.Leaked())
	_, err = w.Guest.Recv(child, make([]byte, 8), true) // a blocked reader wakes with the error
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = w.Guest.Send(child, []byte("x"), false)
	require.ErrorIs(t, err, syscall.ENOTCONN)

	rstBefore := w.Guest.Stats().RSTSent
	c, _, refused := hostDial(t, w, 10000)
	require.True(t, refused, "REQUEST from port %d hits the reset socket", firstLocalPort)
	require.Nil(t, c)
	require.EqualValues(t, 1, w.Guest.Stats().RequestsOnResetSockets)
	require.Equal(t, rstBefore+1, w.Guest.Stats().RSTSent)

	w.Guest.Close(child)
	require.Zero(t, w.Guest.Leaked())
	require.Zero(t, w.Guest.ConnectedCount())
	// Restore again so that the allocator restarts at 2^30: the same source
	// port now reaches the listener.
	require.NoError(t, w.Suspend())
	require.NoError(t, w.Resume())
	w.Settle()
	hc, child2, port := hostInitiated(t, w, l)
	require.EqualValues(t, firstLocalPort, port)
	require.Equal(t, firstLocalPort, int(child2.Remote().Port))
	_, err = hc.Write([]byte("ping"))
	require.NoError(t, err)
	w.Settle()
	require.Equal(t, []byte("ping"), guestDrain(t, w, child2))
}

func TestWorldCreditUpdates(t *testing.T) {
	// docs/sources.md#fc-credit-update: the device sends CREDIT_UPDATE when more than 61,440
	// bytes were forwarded since its last report (exactly 61,440 does not
	// trigger); fwd_cnt moves only as bytes reach the host stream (docs/sources.md#fc-notify-txbuf).
	t.Run("device, direct writes", func(t *testing.T) {
		w := newWorld(t, emu.Config{})
		s, hc := guestInitiated(t, w, 9000)
		cu := tapOp(w, device.HostToGuest, virtio.OpCreditUpdate)
		require.EqualValues(t, 64*1024, w.Guest.Credit(s), "docs/sources.md#fc-credit-counters: device buf_alloc 64 KiB")
		n, err := w.Guest.Send(s, make([]byte, 61440), false)
		require.NoError(t, err)
		require.Equal(t, 61440, n)
		w.Settle()
		require.Empty(t, cu.hdrs)
		require.EqualValues(t, 64*1024-61440, w.Guest.Credit(s))
		_, err = w.Guest.Send(s, []byte{1}, false)
		require.NoError(t, err)
		w.Settle()
		require.Len(t, cu.hdrs, 1)
		require.EqualValues(t, 61441, cu.hdrs[0].FwdCnt)
		require.EqualValues(t, 64*1024, cu.hdrs[0].BufAlloc)
		require.EqualValues(t, 64*1024, w.Guest.Credit(s))
		data, _, err := hostDrain(hc)
		require.NoError(t, err)
		require.Len(t, data, 61441)
	})
	// With a small host socket buffer the rest waits in the device's TX
	// buffer and is flushed as the host reads (docs/sources.md#fc-notify-txbuf), so the host's
	// reads are what brings the guest its credit back.
	t.Run("host reads", func(t *testing.T) {
		w := newWorld(t, emu.Config{})
		w.Host.SetBufferSize(16384)
		s, hc := guestInitiated(t, w, 9000)
		cu := tapOp(w, device.HostToGuest, virtio.OpCreditUpdate)
		data := pattern(64 * 1024)
		n, err := w.Guest.Send(s, data, false)
		require.NoError(t, err)
		require.Equal(t, len(data), n)
		w.Settle()
		require.Zero(t, w.Guest.Credit(s))
		conns := w.Dev.Conns()
		require.Len(t, conns, 1)
		// Linux unix_stream_sendmsg with sk_sndbuf 16,384: skbs of 8,128
		// bytes (half the buffer less 64), truesize 8,960, admitted while
		// sk_wmem_alloc < sk_sndbuf: two.
		require.EqualValues(t, 2*8128, conns[0].FwdCnt)
		require.Equal(t, 64*1024-2*8128, conns[0].TxBuffered)
		var got []byte
		buf := make([]byte, 4096)
		for len(got) < len(data) {
			k, err := hc.Read(buf)
			require.NoError(t, err)
			got = append(got, buf[:k]...)
			w.Settle()
			fwd := len(got) + hc.Buffered() // read, or waiting in the host socket
			require.EqualValues(t, fwd, w.Dev.Conns()[0].FwdCnt)
			if fwd > 61440 {
				require.Len(t, cu.hdrs, 1, "after the host read %d bytes", len(got))
			} else {
				require.Empty(t, cu.hdrs, "after the host read %d bytes (fwd_cnt %d)", len(got), fwd)
				require.Zero(t, w.Guest.Credit(s))
			}
		}
		require.Equal(t, data, got)
		// The update goes out at the flush that first takes fwd_cnt past
		// 61,440; the guest's credit is what that update told it.
		require.Greater(t, cu.hdrs[0].FwdCnt, uint32(61440))
		require.EqualValues(t, cu.hdrs[0].FwdCnt, w.Guest.Credit(s))
	})
	// docs/sources.md#linux-fwd-cnt: fwd_cnt advances by a whole skb only when it is fully read;
	// a read that empties the queue sends CREDIT_UPDATE (93b808876682; the
	// 64 KiB clause does not fire with a 256 KiB buffer).
	t.Run("guest drains", func(t *testing.T) {
		w := newWorld(t, emu.Config{Kernel: "linux-6.12.68"})
		l := guestListen(t, w, 1234)
		hc, child, _ := hostInitiated(t, w, l)
		cu := tapOp(w, device.GuestToHost, virtio.OpCreditUpdate)
		data := pattern(10000)
		_, err := hc.Write(data)
		require.NoError(t, err)
		w.Settle()
		require.Equal(t, 10000, child.Buffered())
		buf := make([]byte, 5000)
		n, err := w.Guest.Recv(child, buf, false)
		require.NoError(t, err)
		require.Equal(t, 5000, n)
		w.Settle()
		// 3,776-byte RX buffers hold 3,732 payload bytes (docs/sources.md#linux-rx-buffers): one skb
		// fully read, the second only partly.
		require.EqualValues(t, 3732, w.Guest.Info(child).FwdCnt)
		require.Empty(t, cu.hdrs)
		rest := guestDrain(t, w, child)
		require.Equal(t, data, append(buf, rest...))
		w.Settle()
		require.Len(t, cu.hdrs, 1)
		require.EqualValues(t, 10000, cu.hdrs[0].FwdCnt)
		require.EqualValues(t, 10000, w.Dev.Conns()[0].PeerFwdCnt)
	})
}

// --- b. the seed mechanisms -------------------------------------------------

// seed000Result is what a 128 KiB write over a guest->host stream came to.
type seed000Result struct {
	sent      int // bytes Send accepted
	delivered int // bytes the host received
	// expected is what the host should have got given the packets the guest
	// made: everything but packets above the linear threshold that the
	// device drops (docs/sources.md#linux-tx-layout, #ch-tx-parse).
	expected  int
	dropped   int
	credit    uint32
	blocked   bool // Send still EAGAIN after a minute
	intact    bool
	badChains uint64
}

// runSeed000 is init writing a workload's output to the host log collector:
// an optional short line, then one 128 KiB write that blocks like write(2)
// (Send, then retries while EAGAIN), with the host reading as bytes arrive.
func runSeed000(t *testing.T, kernel, dev string, lead int) (seed000Result, *emu.World) {
	t.Helper()
	w := newWorld(t, emu.Config{Kernel: kernel, Device: dev})
	s, hc := guestInitiated(t, w, 9999)
	data := pattern(lead + 128*1024)
	var got []byte
	var r seed000Result
	read := func() {
		b, eof, err := hostDrain(hc)
		require.NoError(t, err)
		require.False(t, eof)
		got = append(got, b...)
	}
	// account is the guest's packetisation: a send is cut into packets of at
	// most 64 KiB; a 6.12.68 kernel lays out payloads above 32,404 bytes
	// nonlinearly, and Cloud Hypervisor before v51 drops those with more
	// than one fragment (above 32 KiB; up to that one order-3 page holds
	// the whole payload and the chain is header + one data descriptor).
	nonlinear := w.Guest.Profile().TX == guest.TXNonlinear
	dropsNonlinear := dev == "cloud-hypervisor-50"
	account := func(n int) {
		for n > 0 {
			p := min(n, virtio.MaxPktBufSize)
			if nonlinear && dropsNonlinear && p > 32768 {
				r.dropped += p
			} else {
				r.expected += p
			}
			n -= p
		}
	}
	writeAll := func(p []byte) {
		cont := false
		deadline := w.Eng.Now() + time.Minute
		for len(p) > 0 {
			n, err := w.Guest.Send(s, p, cont)
			if errors.Is(err, syscall.EAGAIN) {
				require.Zero(t, n)
				if w.Eng.Now() >= deadline {
					r.blocked = true
					return
				}
				w.RunFor(time.Second) // blocked in write(2); the host keeps reading
				read()
				cont = true
				continue
			}
			require.NoError(t, err)
			account(n)
			r.sent += n
			p = p[n:]
			w.Settle()
			read()
			cont = true
		}
	}
	if lead > 0 {
		writeAll(data[:lead])
	}
	writeAll(data[lead:])
	w.RunFor(time.Second)
	read()
	r.delivered = len(got)
	r.intact = bytes.Equal(got, data)
	r.credit = w.Guest.Credit(s)
	r.badChains = w.Dev.Stats().BadTXChains
	if r.blocked {
		// Blocked for good: still no credit, still EAGAIN, a minute on.
		w.RunFor(time.Minute)
		read()
		_, err := w.Guest.Send(s, data[r.sent:], true)
		require.ErrorIs(t, err, syscall.EAGAIN)
		require.Len(t, got, r.delivered)
		// What arrived is the prefix before the first dropped packet.
		require.True(t, bytes.Equal(data[:len(got)], got))
	}
	return r, w
}

// Seed 000 (docs/sources.md#incident-stdout-wedge): a new kernel's nonlinear TX (header + 32 KiB + 32 KiB,
// docs/sources.md#linux-tx-layout) against Cloud Hypervisor before v51, which takes exactly one
// data descriptor and drops the packet with BufDescTooSmall (docs/sources.md#ch-tx-parse): the
// guest counted the bytes in tx_cnt, the device never forwards them, the
// credit is gone for good and the write blocks forever.
func TestSeed000LargeWriteWedge(t *testing.T) {
	const wedgeLog = "vsock: error reading TX packet: BufDescTooSmall"
	t.Run("linux-6.12.67 linear TX, cloud-hypervisor-50: intact", func(t *testing.T) {
		r, w := runSeed000(t, "linux-6.12.67", "cloud-hypervisor-50", 0)
		require.False(t, r.blocked)
		require.Equal(t, 131072, r.sent)
		require.Equal(t, 131072, r.delivered)
		require.True(t, r.intact)
		require.Zero(t, r.badChains)
		require.False(t, logged(w, wedgeLog))
	})
	t.Run("linux-6.12.68 nonlinear TX, cloud-hypervisor-50: wedged", func(t *testing.T) {
		r, w := runSeed000(t, "linux-6.12.68", "cloud-hypervisor-50", 0)
		require.True(t, r.blocked, "the write must block for good")
		require.Zero(t, r.credit)
		require.Equal(t, 65536, r.sent, "the first packet took the whole 64 KiB credit")
		require.Equal(t, 65536, r.dropped)
		require.Equal(t, r.expected, r.delivered)
		require.Zero(t, r.delivered)
		require.EqualValues(t, 1, r.badChains)
		require.True(t, logged(w, wedgeLog))
		require.Zero(t, w.Dev.Stats().RSTsSent, "a dropped chain gets no RST")
		require.Zero(t, w.Dev.Stats().Violations)
	})
	t.Run("linux-6.12.68 nonlinear TX, cloud-hypervisor-50, after a short line: wedged", func(t *testing.T) {
		// A short line first leaves 64,536 bytes of credit: the next packet
		// is 64,536 bytes (32,768 + 31,768), dropped; the host has the line.
		r, w := runSeed000(t, "linux-6.12.68", "cloud-hypervisor-50", 1000)
		require.True(t, r.blocked)
		require.Zero(t, r.credit)
		require.Equal(t, 65536, r.sent)
		require.Equal(t, 64536, r.dropped)
		require.Equal(t, 1000, r.expected)
		require.Equal(t, 1000, r.delivered, "the host is short by exactly the dropped bytes")
		require.Equal(t, r.sent-r.dropped, r.delivered)
		require.True(t, logged(w, wedgeLog))
	})
	t.Run("linux-6.12.68 nonlinear TX, cloud-hypervisor-51: intact", func(t *testing.T) {
		r, w := runSeed000(t, "linux-6.12.68", "cloud-hypervisor-51", 0)
		require.False(t, r.blocked)
		require.Equal(t, 131072, r.delivered)
		require.True(t, r.intact)
		require.Zero(t, r.badChains)
		require.False(t, logged(w, wedgeLog))
	})
}

// seed003Cycle is one resumed machine's connections as the host supervisor
// makes them: the long-lived metrics connection, retried at once on every
// refusal, first; then a status check that init answers and closes.
type seed003Cycle struct {
	refusals int
	longPort uint32 // the host port of the long-lived connection
}

// runSeed003 runs boot plus cycles suspend/resume cycles with an init that
// never closes the long-lived connection (seed 003, docs/sources.md#incident-slow-resume). extra, if set,
// runs after each cycle's connections, for the determinism test.
func runSeed003(t testing.TB, cfg emu.Config, cycles int, extra func(w *emu.World)) ([]seed003Cycle, *emu.World) {
	t.Helper()
	w := newWorld(t, cfg)
	l := guestListen(t, w, 10000)
	var out []seed003Cycle
	for k := 0; k <= cycles; k++ {
		var cy seed003Cycle
		var hc *uds.Conn
		for {
			c, port, refused := hostDial(t, w, 10000)
			if !refused {
				hc, cy.longPort = c, port
				break
			}
			cy.refusals++
			require.LessOrEqual(t, cy.refusals, cycles+1)
		}
		long := accept(t, w, l)
		require.Equal(t, cy.longPort, long.Remote().Port)
		out = append(out, cy)

		// The status check: request, answer, init closes it properly.
		sc, _, refused := hostDial(t, w, 10000)
		require.False(t, refused)
		status := accept(t, w, l)
		_, err := sc.Write([]byte("status?\n"))
		require.NoError(t, err)
		w.Settle()
		require.Equal(t, []byte("status?\n"), guestDrain(t, w, status))
		_, err = w.Guest.Send(status, []byte("ok\n"), false)
		require.NoError(t, err)
		w.Guest.Close(status)
		w.Settle()
		reply, eof, err := hostDrain(sc)
		require.NoError(t, err)
		require.True(t, eof)
		require.Equal(t, []byte("ok\n"), reply)
		sc.Close()
		if extra != nil {
			extra(w)
		}
		require.Equal(t, k, w.Guest.Leaked())
		if k == cycles {
			break
		}
		require.NoError(t, w.Suspend())
		require.NoError(t, w.Resume())
		w.Settle()
		_, eof, err = hostDrain(hc)
		require.NoError(t, err)
		require.True(t, eof)
		hc.Close()
		require.Equal(t, guest.StateClose, long.State())
		require.Equal(t, k+1, w.Guest.Leaked(), "docs/sources.md#linux-reset-leak: the reset socket stays in the connected table")
	}
	return out, w
}

// Seed 003 (docs/sources.md#incident-slow-resume): with
// Firecracker before v1.15 the ports restart at 2^30 after every restore
// (docs/sources.md#fc-port-allocation), the long-lived connection always gets the first port that
// works, and the leaked sockets form a contiguous run from 2^30: after the
// k-th restore the first k attempts hit leaked sockets and are refused
// (docs/sources.md#linux-reset-leak: TCP_CLOSE answers RST). Persisted ports (v1.15.0,
// PR #5688) and Fly's random start (PR #7) never come back to them.
func TestSeed003SlowResume(t *testing.T) {
	const cycles = 10
	for _, tc := range []struct {
		device string
		fixed  bool
	}{
		{"firecracker-1.14", true},
		{"firecracker-1.15", false},
		{"firecracker-fly", false},
	} {
		t.Run(tc.device, func(t *testing.T) {
			got, w := runSeed003(t, emu.Config{Device: tc.device, Seed: 3}, cycles, nil)
			require.Len(t, got, cycles+1)
			require.Zero(t, got[0].refusals, "boot")
			for k := 1; k <= cycles; k++ {
				if tc.fixed {
					require.Equal(t, k, got[k].refusals, "after restore %d", k)
					require.EqualValues(t, firstLocalPort+k, got[k].longPort)
				} else {
					require.Zero(t, got[k].refusals, "after restore %d", k)
				}
			}
			require.Equal(t, cycles, w.Guest.Leaked(), "the kernel leak is the same whatever the device")
			require.EqualValues(t, 0, w.Dev.Stats().Violations)
			if tc.fixed {
				// The leaked sockets hold the contiguous run [2^30, 2^30+10).
				var leaked []uint32
				for _, s := range w.Guest.Sockets() {
					if info := w.Guest.Info(s); info.Connected && info.State == guest.StateClose && !info.Released {
						leaked = append(leaked, info.Remote.Port)
					}
				}
				want := make([]uint32, cycles)
				for i := range want {
					want[i] = firstLocalPort + uint32(i)
				}
				require.Equal(t, want, leaked)
				total := 0
				for _, c := range got {
					total += c.refusals
				}
				require.EqualValues(t, total, w.Guest.Stats().RequestsOnResetSockets)
			}
		})
	}
}

// --- c. determinism ---------------------------------------------------------

// docs/sources.md#linux-ephemeral-port and the engine's contract: the same seed and the same calls give
// the same event log, byte for byte; the seed is the only randomness (the
// guest's ephemeral port counter, Fly's random start).
func TestWorldDeterminism(t *testing.T) {
	scenario := func(seed uint64, dev string) (string, []uint32) {
		bulk := pattern(100_000)
		extra := func(w *emu.World) {
			// Some data both ways on a guest-initiated connection.
			s, hc := guestInitiated(t, w, 7000+uint32(w.Cycles()))
			sent := 0
			for sent < len(bulk) {
				n, err := w.Guest.Send(s, bulk[sent:], sent > 0)
				if !errors.Is(err, syscall.EAGAIN) {
					require.NoError(t, err)
				}
				sent += n
				w.Settle()
				_, _, err = hostDrain(hc)
				require.NoError(t, err)
				w.RunFor(time.Millisecond)
			}
			_, err := hc.Write(bulk[:20_000])
			require.NoError(t, err)
			w.RunFor(time.Millisecond)
			require.Len(t, guestDrain(t, w, s), 20_000)
			w.Guest.Close(s)
			w.RunFor(10 * time.Millisecond)
			hc.Close()
		}
		cycles, w := runSeed003(t, emu.Config{Seed: seed, Device: dev}, 5, extra)
		w.RunFor(10 * time.Second) // let every linger and timer run out
		var ports []uint32
		for _, c := range cycles {
			ports = append(ports, c.longPort)
		}
		require.Zero(t, w.Dev.Stats().Violations)
		return w.Eng.Log.Hash(), ports
	}
	for _, dev := range []string{"firecracker-1.14", "firecracker-fly"} {
		t.Run(dev, func(t *testing.T) {
			want, wantPorts := scenario(42, dev)
			for i := 0; i < 20; i++ {
				got, ports := scenario(42, dev)
				require.Equal(t, want, got, "run %d", i)
				require.Equal(t, wantPorts, ports)
			}
		})
	}
	t.Run("seed changes the random start", func(t *testing.T) {
		h1, p1 := scenario(1, "firecracker-fly")
		h2, p2 := scenario(2, "firecracker-fly")
		require.NotEqual(t, p1, p2)
		require.NotEqual(t, h1, h2)
		for _, p := range append(p1, p2...) {
			require.GreaterOrEqual(t, p, uint32(firstLocalPort))
			require.Less(t, p, uint32(1<<31))
		}
		// With fixed-start ports only the guest's own ephemeral ports move
		// (docs/sources.md#linux-ephemeral-port: the counter is seeded once with a random value).
		g1, f1 := scenario(1, "firecracker-1.14")
		g2, f2 := scenario(2, "firecracker-1.14")
		require.Equal(t, f1, f2)
		require.NotEqual(t, g1, g2)
	})
}

// The log must be worth hashing: it records the seed incidents' telltales.
func TestWorldLogNamesTheLeak(t *testing.T) {
	_, w := runSeed003(t, emu.Config{Device: "firecracker-1.14"}, 1, nil)
	var found bool
	for _, r := range w.Eng.Log.Records() {
		if r.Kind == engine.KindConn && bytes.Contains([]byte(r.Text), []byte("hit sock")) {
			found = true
		}
	}
	require.True(t, found, "the guest logs the REQUEST that hit the reset socket")
}

// Firecracker before v1.6 needs two-descriptor RX buffers and rejects every
// single-descriptor buffer of a 6.1.63+ guest with used length 0 (see
// docs/sources.md#fc-rx-parse-legacy, Firecracker issue #4284): vsock does not work at all, but the world
// must still move on in time rather than spin at one instant.
func TestWorldFirecracker15RejectsModernRXBuffers(t *testing.T) {
	w, err := emu.New(emu.Config{Device: "firecracker-1.5", Kernel: "linux-6.12.68"})
	require.NoError(t, err)
	c, err := w.Host.Connect(w.Config().UDSPath)
	require.NoError(t, err)
	_, err = c.Write([]byte("CONNECT 10000\n")) // a REQUEST for the guest: the device needs an RX buffer
	require.NoError(t, err)
	require.NoError(t, w.Eng.RunUntilBounded(time.Second, 1<<16), "the world spins at one instant")
	require.Equal(t, time.Second, w.Eng.Now())
	require.Positive(t, w.Guest.Stats().RXDropped)
	require.Contains(t, w.Eng.Log.String(), "used length 0 outside [44, 3776]")
}

// A device reset from the guest (virtio_vsock_remove, Device.Reset,
// virtio_vsock_probe; FC main c4fdd7c90): the guest's connected sockets
// are reset as by a TRANSPORT_RESET and stay in the table until closed,
// the device's connections are gone, the rings start again from index 0
// and new connections count from local port 2^30 again.
func TestWorldDeviceReset(t *testing.T) {
	w := newWorld(t, emu.Config{Device: "firecracker-main", Kernel: "linux-6.12.68"})
	l := guestListen(t, w, 1234)
	_, child, port := hostInitiated(t, w, l)
	require.EqualValues(t, 1<<30, port)
	require.NoError(t, w.ResetDevice())
	w.Settle()
	require.Equal(t, guest.StateClose, child.State())
	require.Equal(t, syscall.ECONNRESET, child.Err())
	require.Empty(t, w.Dev.Conns())
	require.Equal(t, 1, w.Guest.Leaked())

	// local_port_last went back to 2^30 - 1: the next connection comes from
	// 2^30, which the leaked socket still names, and is refused.
	_, _, refused := hostDial(t, w, 1234)
	require.True(t, refused)
	w.Guest.Close(child)
	w.Settle()
	hc, child2, port := hostInitiated(t, w, l)
	require.EqualValues(t, 1<<30+1, port)
	_, err := hc.Write([]byte("ping"))
	require.NoError(t, err)
	w.Settle()
	require.Equal(t, []byte("ping"), guestDrain(t, w, child2))

	w2 := newWorld(t, emu.Config{Device: "firecracker-1.16"})
	require.ErrorIs(t, w2.ResetDevice(), device.ErrResetUnsupported)
}

func TestRXCompatibilityFollowsTheDeviceParser(t *testing.T) {
	for _, d := range device.Profiles() {
		for _, k := range guest.Profiles() {
			// Only FC v1.5 and CH before v35 want a header descriptor and
			// exactly one data descriptor (FC issue #4284, CH issue #5691):
			// the pkt-era 44+4096 buffers.
			legacy := d.RX == device.RXFirecrackerLegacy || d.RX == device.RXCloudHypervisorLegacy
			want := !legacy || k.RX == guest.RXTwoDesc
			require.Equal(t, want, emu.RXCompatible(d, k), "%s with %s", d.Name, k.Name)
		}
		kernel, ok := emu.KernelFor(d)
		require.True(t, ok, d.Name)
		if d.RX == device.RXFirecrackerLegacy || d.RX == device.RXCloudHypervisorLegacy {
			require.Equal(t, "linux-5.15", kernel, d.Name)
		} else {
			require.Equal(t, emu.DefaultKernel, kernel, d.Name)
		}
	}
}

func TestWorldRestartDriverUnderAVMMThatStopsTheRings(t *testing.T) {
	// As realkernel's TestConformance saw with Debian's 6.1.192 and
	// 6.12.117 under QEMU and the vhost-user back-end (cases tc, tl, ts,
	// tr): the driver's remove resets the connected socket, leaves the
	// listener and a connecting socket alone, the device restarts with its
	// ports from 2^30 (firecracker-1.14), and the host's REQUEST from
	// 2^30 then hits the socket the reset left in TCP_CLOSE: RST.
	w := newWorld(t, emu.Config{Device: "firecracker-1.14", Kernel: "linux-debian-6.12.117"})
	l := guestListen(t, w, 1234)
	hc, child, port := hostInitiated(t, w, l)
	require.EqualValues(t, firstLocalPort, port)
	connecting := w.Guest.Socket()
	require.ErrorIs(t, w.Guest.Connect(connecting, 4, 1), syscall.EINPROGRESS)
	w.Settle()
	resetsBefore := w.Dev.Stats().ResetEvents

	require.NoError(t, w.RestartDriver())
	w.Settle()
	_, eof, err := hostDrain(hc)
	require.NoError(t, err)
	require.True(t, eof, "the stopped device closed its host streams")
	require.Equal(t, guest.StateClose, child.State())
	require.Equal(t, syscall.ECONNRESET, child.Err())
	require.Equal(t, 1, w.Guest.Leaked())
	require.Equal(t, guest.StateListen, l.State())
	require.Equal(t, guest.StateSynSent, connecting.State())
	require.Zero(t, w.Dev.Stats().ResetEvents-resetsBefore, "no TRANSPORT_RESET: the event queue is the VMM's")

	_, _, refused := hostDial(t, w, 1234)
	require.True(t, refused, "the REQUEST from %d hits the leaked socket", firstLocalPort)
	w.Guest.Close(child)
	w.Settle()
	_, child2, port := hostInitiated(t, w, l)
	require.EqualValues(t, firstLocalPort+1, port)
	require.Equal(t, guest.StateEstablished, child2.State())

	w.RunFor(2 * time.Second)
	require.Equal(t, syscall.ETIMEDOUT, connecting.Err(), "the connect still times out")
}

// TestNewZeroesGivenMemory: a world built on memory an earlier user
// wrote (Config.Memory) sees it zeroed, and memory of another size is
// refused.
func TestNewZeroesGivenMemory(t *testing.T) {
	const size = 4 << 20
	mem := virtio.NewFlatMemory(0, size)
	require.NoError(t, mem.WriteAt([]byte("stale"), size-5))
	_, err := emu.New(emu.Config{MemSize: size, Memory: mem})
	require.NoError(t, err)
	got := make([]byte, 5)
	require.NoError(t, mem.ReadAt(got, size-5))
	require.Equal(t, make([]byte, 5), got)

	_, err = emu.New(emu.Config{MemSize: 2 * size, Memory: mem})
	require.ErrorContains(t, err, "Config.Memory does not span exactly [0, 8388608)")
}

// QEMU's vhost-user-vsock is unmigratable (device.Profile.NoSnapshot): a
// world with vhost-device-vsock refuses to suspend and keeps running, its
// connections untouched.
func TestWorldSuspendRefusedWithoutSnapshots(t *testing.T) {
	w := newWorld(t, emu.Config{Device: "vhost-device-vsock", Kernel: "linux-6.12.67"})
	l := guestListen(t, w, 10000)
	hc, child, _ := hostInitiated(t, w, l)
	err := w.Suspend()
	require.ErrorIs(t, err, device.ErrSnapshotUnsupported)
	require.ErrorContains(t, err, "vhost-device-vsock")
	require.False(t, w.Suspended())
	require.ErrorContains(t, w.Resume(), "not suspended")

	_, err = hc.Write([]byte("ping"))
	require.NoError(t, err)
	w.Settle()
	buf := make([]byte, 8)
	n, err := w.Guest.Recv(child, buf, false)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
}
