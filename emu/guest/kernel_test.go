package guest

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/virtio"
)

func mustProfile(t *testing.T, name string) Profile {
	p, err := LookupProfile(name)
	require.NoError(t, err)
	return p
}

func TestLookupProfileListsKnownNames(t *testing.T) {
	_, err := LookupProfile("linux-9.9")
	require.ErrorContains(t, err, `unknown guest kernel profile "linux-9.9"`)
	require.ErrorContains(t, err, "linux-6.12.68")
}

func TestPostsReceiveAndEventBuffers(t *testing.T) {
	// docs/sources.md#linux-rx-buffers: receive buffers until the ring is full, in the
	// era's layout; eight 4-byte event buffers.
	for _, tc := range []struct {
		profile string
		shape   string
		count   int
	}{
		{"linux-5.15", "w44 w4096", 128},
		{"linux-6.6", "w4140", 256},
		{"linux-6.12.68", "w3776", 256},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			n, err := r.dev[virtio.QueueRX].Pending()
			require.NoError(t, err)
			require.Equal(t, tc.count, n)
			c, _, err := r.dev[virtio.QueueRX].Pop()
			require.NoError(t, err)
			require.Equal(t, tc.shape, c.Shape())
			n, err = r.dev[virtio.QueueEvent].Pending()
			require.NoError(t, err)
			require.Equal(t, 8, n)
		})
	}
}

func TestConnectHandshake(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.k.Socket()
	require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	sent := r.take()
	require.Len(t, sent, 1)
	// docs/sources.md#linux-dispatch, #linux-credit: REQUEST carries the socket's buf_alloc (256 KiB
	// default) and fwd_cnt 0; the port is ephemeral, above 1023.
	h := sent[0].hdr
	require.Equal(t, virtio.OpRequest, h.Op)
	require.Equal(t, uint32(256*1024), h.BufAlloc)
	require.Greater(t, h.SrcPort, uint32(1023))
	require.Equal(t, uint64(2), h.DstCID)
	done, _ := r.k.ConnectResult(s)
	require.False(t, done)

	r.deliver(fromHost(9000, h.SrcPort, virtio.OpResponse))
	done, err := r.k.ConnectResult(s)
	require.True(t, done)
	require.NoError(t, err)
	require.Equal(t, StateEstablished, s.State())
	require.Equal(t, 1, r.k.ConnectedCount())
}

func TestConnectRefusedByRST(t *testing.T) {
	// docs/sources.md#linux-dispatch: connect, RST -> ECONNRESET.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.k.Socket()
	require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	r.take()
	r.deliver(fromHost(9000, s.Local().Port, virtio.OpRST))
	done, err := r.k.ConnectResult(s)
	require.True(t, done)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.Zero(t, r.k.ConnectedCount())
	// The failed socket keeps its port until close (docs/sources.md#linux-dispatch).
	require.True(t, s.bound)
	r.k.Close(s)
	require.False(t, s.bound)
}

func TestConnectTimesOutAfterTwoSeconds(t *testing.T) {
	// docs/sources.md#linux-dispatch: VSOCK_DEFAULT_CONNECT_TIMEOUT = 2 s -> ETIMEDOUT, and
	// a late RESPONSE is answered with RST.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.k.Socket()
	start := r.eng.Now()
	require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	r.take()
	r.eng.RunUntil(start + 2*time.Second - 1)
	done, _ := r.k.ConnectResult(s)
	require.False(t, done)
	r.eng.RunUntil(start + 2*time.Second)
	done, err := r.k.ConnectResult(s)
	require.True(t, done)
	require.ErrorIs(t, err, syscall.ETIMEDOUT)

	r.deliver(fromHost(9000, s.Local().Port, virtio.OpResponse))
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()))
}

func TestListenerAcceptsAndUnboundPortResets(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	l, c := r.listening(10000, 1<<30)
	require.Equal(t, StateEstablished, c.State())
	require.Equal(t, Addr{CID: 2, Port: 1 << 30}, c.Remote())
	_, err := r.k.Accept(l)
	require.ErrorIs(t, err, syscall.EAGAIN)

	// No socket on the port: RST with buf_alloc and fwd_cnt zero, addresses
	// swapped (virtio_transport_reset_no_sock).
	r.deliver(fromHost(1<<30+1, 10001, virtio.OpRequest))
	sent := r.take()
	require.Len(t, sent, 1)
	require.Equal(t, virtio.Header{SrcCID: guestCID, DstCID: 2, SrcPort: 10001, DstPort: 1<<30 + 1, Type: virtio.TypeStream, Op: virtio.OpRST}, sent[0].hdr)
}

func TestBacklogAdmitsOneMore(t *testing.T) {
	// docs/sources.md#linux-dispatch: sk_acceptq_is_full is strictly greater, so
	// listen(fd, N) admits N+1 unaccepted children.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	l := r.k.Socket()
	require.NoError(t, r.k.Bind(l, virtio.CIDAny, 5000, true))
	require.NoError(t, r.k.Listen(l, 2))
	for i := uint32(0); i < 4; i++ {
		r.deliver(fromHost(1<<30+i, 5000, virtio.OpRequest))
	}
	require.Equal(t, []virtio.Op{virtio.OpResponse, virtio.OpResponse, virtio.OpResponse, virtio.OpRST}, r.ops(r.take()))
}

func TestTXLayoutByKernel(t *testing.T) {
	// docs/sources.md#linux-tx-layout, #linux-rx-buffers: how one packet of each size
	// is laid out over TX descriptors.
	tests := []struct {
		profile string
		size    int
		shapes  []string
	}{
		{"linux-5.15", 65536, []string{"r44 r65536"}},
		{"linux-6.6", 65536, []string{"r44 r65536"}},
		{"linux-6.12.67", 65536, []string{"r44 r65536"}},
		// Linux include/linux/virtio_vsock.h, virtio_vsock_alloc_skb and
		// net/core/skbuff.c, alloc_skb_with_frags (v6.17): linear up to
		// 32,404 payload bytes, then page fragments that shrink with the
		// remainder.
		{"linux-6.12.68", 1, []string{"r44 r1"}},
		{"linux-6.12.68", 4096, []string{"r44 r4096"}},
		{"linux-6.12.68", 4097, []string{"r44 r4097"}},
		{"linux-6.12.68", 32403, []string{"r44 r32403"}},
		{"linux-6.12.68", 32404, []string{"r44 r32404"}},
		{"linux-6.12.68", 32405, []string{"r44 r32405"}},
		{"linux-6.12.68", 32768, []string{"r44 r32768"}},
		{"linux-6.12.68", 32769, []string{"r44 r32768 r1"}},
		{"linux-6.12.68", 40000, []string{"r44 r32768 r7232"}},
		{"linux-6.12.68", 50000, []string{"r44 r32768 r16384 r848"}},
		{"linux-6.12.68", 60000, []string{"r44 r32768 r16384 r8192 r2656"}},
		{"linux-6.12.68", 61440, []string{"r44 r32768 r16384 r8192 r4096"}},
		{"linux-6.12.68", 65536, []string{"r44 r32768 r32768"}},
		{"linux-6.12.68", 200000, []string{"r44 r32768 r32768"}}, // cut at the 64 KiB credit
		{"linux-6.17", 1, []string{"r44 r1"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d", tc.profile, tc.size), func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			s := r.established()
			data := bytes.Repeat([]byte{0xa5}, tc.size)
			n, err := r.k.Send(s, data, false)
			require.NoError(t, err)
			require.Equal(t, min(tc.size, 64*1024), n)
			r.run()
			var shapes []string
			for _, p := range r.take() {
				shapes = append(shapes, p.shape)
				require.Equal(t, data[:p.hdr.Len], p.payload[:p.hdr.Len])
			}
			require.Equal(t, tc.shapes, shapes)
		})
	}
}

func TestSendCutAtSixtyFourKiBAndCredit(t *testing.T) {
	// docs/sources.md#linux-credit: a send is cut into packets of at most 64 KiB and at
	// most the free credit; the writer then waits (EAGAIN here).
	r := newRig(t, mustProfile(t, "linux-6.12.67"))
	s := r.established()
	r.deliver(fromHost(9000, s.Local().Port, virtio.OpCreditUpdate)) // buf_alloc 64 KiB
	r.take()
	// The host enlarges its buffer: the guest may now send up to its own
	// 256 KiB (CreditS64 ignores its own buffer; min() would too here).
	up := fromHost(9000, s.Local().Port, virtio.OpCreditUpdate)
	up.BufAlloc = 200000
	r.deliver(up)
	n, err := r.k.Send(s, make([]byte, 300000), false)
	require.NoError(t, err)
	require.Equal(t, 200000, n)
	r.run()
	var lens []uint32
	for _, p := range r.take() {
		lens = append(lens, p.hdr.Len)
	}
	require.Equal(t, []uint32{65536, 65536, 65536, 3392}, lens)
	_, err = r.k.Send(s, []byte{1}, true)
	require.ErrorIs(t, err, syscall.EAGAIN)
	require.False(t, r.k.Writable(s))
	// The host consumed 100000 bytes.
	up.FwdCnt = 100000
	r.deliver(up)
	require.True(t, r.k.Writable(s))
	require.Equal(t, uint32(100000), r.k.Credit(s))
}

func TestCreditFormulas(t *testing.T) {
	// docs/sources.md#linux-credit: when the peer shrinks buf_alloc below what is in
	// flight, the u32 formula wraps to ~4 GiB of credit, s64 and min clamp
	// at zero; min also caps the window at the sender's own buffer.
	for _, tc := range []struct {
		profile string
		free    uint32
	}{
		{"linux-5.15", 1<<32 - 65536 + 4096}, // 4096 - 65536 in u32
		{"linux-6.6", 0},
		{"linux-6.12.68", 0},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			s := r.established()
			n, err := r.k.Send(s, make([]byte, 65536), false)
			require.NoError(t, err)
			require.Equal(t, 65536, n)
			r.run()
			shrink := fromHost(9000, s.Local().Port, virtio.OpCreditUpdate)
			shrink.BufAlloc = 4096
			r.deliver(shrink)
			require.Equal(t, tc.free, r.k.Credit(s))
		})
	}
}

func TestReadAdvancesFwdCntPerPacketAndSendsCreditUpdate(t *testing.T) {
	// docs/sources.md#linux-fwd-cnt: fwd_cnt moves by a whole packet once it is fully
	// read; with 93b808876682 a read that empties the queue sends
	// CREDIT_UPDATE.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	r.deliver(fromHost(1<<30, 10000, virtio.OpRW), bytes.Repeat([]byte{'a'}, 1000)...)
	r.deliver(fromHost(1<<30, 10000, virtio.OpRW), bytes.Repeat([]byte{'b'}, 1000)...)
	require.Equal(t, 2000, c.Buffered())
	buf := make([]byte, 1500)
	n, err := r.k.Recv(c, buf, false)
	require.NoError(t, err)
	require.Equal(t, 1500, n)
	require.Equal(t, uint32(1000), c.fwdCnt, "the half-read second packet does not count")
	r.run()
	require.Empty(t, r.take(), "queue not empty, plenty of room: no update yet")
	n, err = r.k.Recv(c, buf, false)
	require.NoError(t, err)
	require.Equal(t, 500, n)
	r.run()
	sent := r.take()
	require.Len(t, sent, 1)
	require.Equal(t, virtio.OpCreditUpdate, sent[0].hdr.Op)
	require.Equal(t, uint32(2000), sent[0].hdr.FwdCnt)
	_, err = r.k.Recv(c, buf, false)
	require.ErrorIs(t, err, syscall.EAGAIN)
}

func TestCreditRequestIsAnswered(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	r.deliver(fromHost(1<<30, 10000, virtio.OpCreditRequest))
	sent := r.take()
	require.Len(t, sent, 1)
	require.Equal(t, virtio.OpCreditUpdate, sent[0].hdr.Op)
	require.Equal(t, c.Remote().Port, sent[0].hdr.DstPort)
}

func TestTransportResetLeavesSocketsInTheTable(t *testing.T) {
	// docs/sources.md#linux-transport-reset: TRANSPORT_RESET puts connected sockets in TCP_CLOSE
	// with ECONNRESET, sends nothing, removes nothing; a REQUEST from the
	// same host port then hits the reset socket and gets RST; once closed,
	// the same REQUEST reaches the listener.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	l, c := r.listening(10000, 1<<30)
	r.transportReset()
	require.Empty(t, r.take(), "a reset sends nothing")
	require.Equal(t, StateClose, c.State())
	require.Equal(t, syscall.ECONNRESET, c.Err())
	require.Equal(t, StateListen, l.State(), "listeners are untouched")
	require.Equal(t, 1, r.k.Leaked())

	// A reader blocked at the time sees ECONNRESET; a new call ENOTCONN.
	_, err := r.k.Recv(c, make([]byte, 1), true)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = r.k.Recv(c, make([]byte, 1), false)
	require.ErrorIs(t, err, syscall.ENOTCONN)
	_, err = r.k.Send(c, []byte{1}, false)
	require.ErrorIs(t, err, syscall.ENOTCONN)

	r.deliver(fromHost(1<<30, 10000, virtio.OpRequest))
	sent := r.take()
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(sent))
	require.Equal(t, uint64(1), r.k.Stats().RequestsOnResetSockets)

	r.k.Close(c)
	r.run()
	require.Empty(t, r.take(), "closing a TCP_CLOSE socket sends nothing")
	require.Zero(t, r.k.Leaked())
	r.deliver(fromHost(1<<30, 10000, virtio.OpRequest))
	require.Equal(t, []virtio.Op{virtio.OpResponse}, r.ops(r.take()))
}

func TestPeerShutdownBothRemovesAndResets(t *testing.T) {
	// docs/sources.md#linux-shutdown: peer SHUTDOWN(both) with nothing unread -> RST
	// and do_close; 3a5cc90a4d17 removes the socket from the connected table.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	sh := fromHost(1<<30, 10000, virtio.OpShutdown)
	sh.Flags = virtio.ShutdownRcv | virtio.ShutdownSend
	r.deliver(sh)
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()))
	require.Zero(t, r.k.ConnectedCount())
	n, err := r.k.Recv(c, make([]byte, 10), false)
	require.NoError(t, err)
	require.Zero(t, n, "EOF")
	_, err = r.k.Send(c, []byte{1}, false)
	require.ErrorIs(t, err, syscall.EPIPE)
	r.k.Close(c)
	r.run()
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()), "close after the peer's shutdown answers RST")
}

func TestShutdownFlagsAreSticky(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	for _, f := range []uint32{virtio.ShutdownSend, virtio.ShutdownRcv} {
		sh := fromHost(1<<30, 10000, virtio.OpShutdown)
		sh.Flags = f
		r.deliver(sh)
	}
	require.Equal(t, uint8(ShutBoth), c.peerShut)
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()))
}

func TestCloseLingersEightSeconds(t *testing.T) {
	// docs/sources.md#linux-shutdown: close() on an established socket sends
	// SHUTDOWN(RCV|SEND) and lingers up to 8 s, then RST.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.established()
	r.k.Close(s)
	r.run()
	sent := r.take()
	require.Equal(t, []virtio.Op{virtio.OpShutdown}, r.ops(sent))
	require.Equal(t, virtio.ShutdownRcv|virtio.ShutdownSend, sent[0].hdr.Flags)
	require.Equal(t, 1, r.k.ConnectedCount(), "lingering")
	r.eng.RunUntil(r.eng.Now() + 8*time.Second)
	require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()))
	require.Zero(t, r.k.ConnectedCount())
	require.Empty(t, r.k.Sockets())
}

func TestCloseEndsLingerOnPeerRST(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.established()
	r.k.Close(s)
	r.run()
	r.take()
	r.deliver(fromHost(9000, s.Local().Port, virtio.OpRST))
	require.Zero(t, r.k.ConnectedCount())
	r.eng.RunUntil(r.eng.Now() + 9*time.Second)
	require.Empty(t, r.take(), "no RST after the peer's")
}

func TestReceiveQueueLimit(t *testing.T) {
	// docs/sources.md#linux-rx-limit: with skbs counted, a 256 KiB buffer refuses the
	// packet that arrives when 455 are queued (SKB_TRUESIZE(0) = 576); 200
	// bytes is too big to be merged (GOOD_COPY_LEN 128). The byte-only check
	// takes them all.
	for _, tc := range []struct {
		profile string
		stats   func(Stats) uint64
		err     syscall.Errno
	}{
		{"linux-6.12.68", nil, 0},
		// Seen in Debian's 6.12.117 and 6.1.192 under QEMU (realkernel
		// TestConformance, case f100x129: 100 packets of 129 bytes, 101
		// skbs, into a 16,384-byte buffer, all queued, no RST).
		{"linux-debian-6.12.117", nil, 0},
		{"linux-debian-6.1.192", nil, 0},
		{"linux-split-drop", func(s Stats) uint64 { return s.RWDropped }, 0},
		{"linux-7.0-reset", func(s Stats) uint64 { return s.OverflowResets }, syscall.ENOBUFS},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			_, c := r.listening(10000, 1<<30)
			for i := 0; i < 456; i++ {
				r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 200)...)
			}
			if tc.stats == nil {
				require.Equal(t, 456*200, c.Buffered())
				return
			}
			require.Equal(t, uint64(1), tc.stats(r.k.Stats()))
			require.Equal(t, 455*200, c.Buffered())
			require.Equal(t, tc.err, c.Err())
			if tc.err != 0 {
				require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(r.take()))
				require.Zero(t, r.k.ConnectedCount())
			}
		})
	}
}

func TestCombinedReceiveLimitLeaksThePeersCredit(t *testing.T) {
	// Linux 059b7dbd20a6 alone (virtio_transport_inc_rx_pkt): (qlen+1) *
	// SKB_TRUESIZE(0) + buf_used + len > buf_alloc drops silently. With
	// 200-byte packets the 338th overruns (338 * 776 > 262,144) although the
	// peer still has 262,144 - 337 * 200 bytes of credit; the dropped bytes
	// never reach fwd_cnt, so after everything is read the peer still counts
	// them as in flight. c6087c5aaad6's split check takes all 400.
	for _, tc := range []struct {
		profile  string
		accepted int
	}{
		{"linux-7.1-rc3", 337},
		{"linux-7.0-reset", 400},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			_, c := r.listening(10000, 1<<30)
			for range 400 {
				r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 200)...)
			}
			require.Equal(t, tc.accepted*200, c.Buffered())
			require.EqualValues(t, 400-tc.accepted, r.k.Stats().RWDropped)
			require.Zero(t, c.Err())
			r.take()
			for c.Buffered() > 0 {
				_, err := r.k.Recv(c, make([]byte, 64*1024), false)
				require.NoError(t, err)
			}
			r.run()
			sent := r.take()
			require.NotEmpty(t, sent)
			last := sent[len(sent)-1].hdr
			require.Equal(t, virtio.OpCreditUpdate, last.Op)
			require.Equal(t, uint32(tc.accepted*200), last.FwdCnt, "the peer sent 80,000 bytes; these are all it will ever see consumed")
		})
	}
}

func TestCreditCapByRelease(t *testing.T) {
	// CVE-2026-23086 (8ee784fdf006, v6.19; c0e42fb0e054 in 6.12.68) caps
	// the credit at the sender's own buf_alloc; 6.17.y ended before it and
	// 6.12.67 predates it: a 64 KiB sender facing a 256 KiB peer may still
	// have 256 KiB in flight there.
	for _, tc := range []struct {
		profile string
		credit  uint32
	}{
		{"linux-6.12.67", 256 * 1024},
		{"linux-6.17", 256 * 1024},
		{"linux-6.12.68", 64 * 1024},
		{"linux-7.1-rc3", 64 * 1024},
		// Seen in Debian's 6.1.192 and 6.12.117 under QEMU (realkernel
		// TestConformance, cases c128 to c65535): a guest whose buffer is
		// 4,096 bytes sends 4,096 of a 65,536-byte write against a device
		// that advertises 65,536, then waits for credit.
		{"linux-debian-6.1.192", 64 * 1024},
		{"linux-debian-6.12.117", 64 * 1024},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			s := r.established()
			r.k.SetBufferSize(s, 64*1024)
			up := fromHost(9000, s.Local().Port, virtio.OpCreditUpdate)
			up.BufAlloc = 256 * 1024
			r.deliver(up)
			require.Equal(t, tc.credit, r.k.Credit(s))
		})
	}
}

func TestProfilesNameTheirReleases(t *testing.T) {
	for _, p := range Profiles() {
		require.NotEmpty(t, p.Releases, p.Name)
		require.NotEmpty(t, p.Source, p.Name)
	}
}

func TestReceiveCheckAfterPartialRead(t *testing.T) {
	// docs/sources.md#linux-rx-limit: before 45ca7e9f0730 (6.12) the receive check
	// counts unread bytes (rx_bytes); since, bytes held by skbs not yet
	// fully read (buf_used). After 100 bytes of a full 6,000-byte buffer are
	// read, a 100-byte packet fits the first and overruns the second.
	for _, tc := range []struct {
		profile string
		fits    bool
	}{
		{"linux-5.15", true},
		{"linux-6.6", true},
		{"linux-6.12.67", false},
		{"linux-6.17", false},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			_, c := r.listening(10000, 1<<30)
			r.k.SetBufferSize(c, 6000)
			for range 2 {
				r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 3000)...)
			}
			n, err := r.k.Recv(c, make([]byte, 100), false)
			require.NoError(t, err)
			require.Equal(t, 100, n)
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 100)...)
			if tc.fits {
				require.Equal(t, 6000, c.Buffered())
				require.Zero(t, r.k.Stats().RWDropped)
			} else {
				require.Equal(t, 5900, c.Buffered())
				require.EqualValues(t, 1, r.k.Stats().RWDropped)
			}
		})
	}
}

func TestSmallPacketsMerge(t *testing.T) {
	// docs/sources.md#linux-fwd-cnt: payloads of at most 128 bytes are appended to
	// the tail skb; fwd_cnt then moves by the merged skb once it is read.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	for i := 0; i < 3; i++ {
		r.deliver(fromHost(1<<30, 10000, virtio.OpRW), bytes.Repeat([]byte{byte('a' + i)}, 100)...)
	}
	require.Len(t, c.rxq, 1)
	buf := make([]byte, 300)
	n, err := r.k.Recv(c, buf, false)
	require.NoError(t, err)
	require.Equal(t, 300, n)
	require.Equal(t, "aaa", string(buf[0:3]))
	require.Equal(t, "ccc", string(buf[297:300]))
	require.Equal(t, uint32(300), c.fwdCnt)
}

func TestRXBufferChecks(t *testing.T) {
	// docs/sources.md#linux-rx-checks: a used length under 44 is dropped; with
	// 0dab92484474 so is a hdr.len larger than what the device wrote.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	h := fromHost(1<<30, 10000, virtio.OpRW)
	h.Len = 10
	r.deliverRaw(h, make([]byte, 10), 43)
	h.Len = 100
	r.deliverRaw(h, make([]byte, 100), 44+50)
	require.Equal(t, uint64(2), r.k.Stats().RXDropped)
	require.Zero(t, c.Buffered())
}

func TestEphemeralPortsAreSeededAndSequential(t *testing.T) {
	// docs/sources.md#linux-ephemeral-port: a counter seeded once above 1023, +1 per connect.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	a, b := r.k.Socket(), r.k.Socket()
	require.ErrorIs(t, r.k.Connect(a, 2, 1), syscall.EINPROGRESS)
	require.ErrorIs(t, r.k.Connect(b, 2, 1), syscall.EINPROGRESS)
	require.Greater(t, a.Local().Port, uint32(1023))
	require.Equal(t, a.Local().Port+1, b.Local().Port)
	// The same seed gives the same first port.
	r2 := newRig(t, mustProfile(t, "linux-6.12.68"))
	c := r2.k.Socket()
	require.ErrorIs(t, r2.k.Connect(c, 2, 1), syscall.EINPROGRESS)
	require.Equal(t, a.Local().Port, c.Local().Port)
}

func TestEphemeralPortsGiveUpAfterTwentyFourTries(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	r.k.portCounter = 5000
	for p := uint32(5000); p < 5024; p++ {
		s := r.k.Socket()
		require.NoError(t, r.k.Bind(s, virtio.CIDAny, p, true))
	}
	s := r.k.Socket()
	require.ErrorIs(t, r.k.Bind(s, virtio.CIDAny, virtio.PortAny, true), syscall.EADDRNOTAVAIL)
	require.ErrorIs(t, r.k.Bind(s, virtio.CIDAny, 80, false), syscall.EACCES)
	require.ErrorIs(t, r.k.Bind(s, virtio.CIDAny, 5000, true), syscall.EADDRINUSE)
}

func TestSendQueueWhenRingFull(t *testing.T) {
	// docs/sources.md#linux-rx-checks: a full TX ring keeps packets queued in order;
	// nothing is dropped.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	_, c := r.listening(10000, 1<<30)
	grant := fromHost(1<<30, 10000, virtio.OpCreditUpdate)
	grant.BufAlloc = 1 << 30
	r.deliver(grant)
	// 300 one-byte packets, two descriptors each: 128 fit in 256 entries.
	for i := 0; i < 300; i++ {
		n, err := r.k.Send(c, []byte{byte(i)}, false)
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.Equal(t, 300-128, len(r.k.sendQ))
	r.run()
	sent := r.take()
	require.Len(t, sent, 300)
	for i, p := range sent {
		require.Equal(t, []byte{byte(i)}, p.payload)
	}
}

func TestFreezeHoldsTimers(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.k.Socket()
	require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	r.take()
	r.eng.RunUntil(r.eng.Now() + time.Second)
	r.k.Freeze()
	r.eng.RunUntil(r.eng.Now() + 10*time.Second)
	done, _ := r.k.ConnectResult(s)
	require.False(t, done, "guest time stands still while frozen")
	r.k.Thaw()
	r.eng.RunUntil(r.eng.Now() + time.Second - 1)
	done, _ = r.k.ConnectResult(s)
	require.False(t, done)
	r.eng.RunUntil(r.eng.Now() + 1)
	_, err := r.k.ConnectResult(s)
	require.ErrorIs(t, err, syscall.ETIMEDOUT)
}

func TestFreezeHoldsInterrupts(t *testing.T) {
	// A suspended guest runs nothing: the RESPONSE the device wrote while
	// it was frozen is seen only once it thaws.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	s := r.k.Socket()
	require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	r.take()
	r.k.Freeze()
	r.deliver(fromHost(9000, s.Local().Port, virtio.OpResponse))
	done, _ := r.k.ConnectResult(s)
	require.False(t, done, "the interrupt is held while frozen")
	r.k.Thaw()
	r.run()
	done, err := r.k.ConnectResult(s)
	require.True(t, done)
	require.NoError(t, err)
}

func TestTimersDoNotAccumulate(t *testing.T) {
	// Every connect arms the 2 s timeout; a refused one stops it. A
	// thousand refused connects leave no timer list a thousand long.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	for range 1000 {
		s := r.k.Socket()
		require.ErrorIs(t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
		r.run()
		r.take()
		r.deliver(fromHost(9000, s.Local().Port, virtio.OpRST))
		_, err := r.k.ConnectResult(s)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		r.k.Close(s)
		r.run()
		r.take()
	}
	require.Empty(t, r.k.Sockets())
	require.Less(t, len(r.k.timers), 16)
}

func TestBufferSizeIsClampedAndAnnounced(t *testing.T) {
	// af_vsock.c vsock_update_buffer_size: SO_VM_SOCKETS_BUFFER_SIZE is
	// clamped to [min, max], and setting min or max re-clamps the current
	// size; virtio_transport_notify_buffer_size makes the new size the
	// buf_alloc and sends CREDIT_UPDATE. An accepted socket starts with its
	// listener's size and limits (__vsock_create copies them from the
	// parent).
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	l := r.k.Socket()
	require.NoError(t, r.k.Bind(l, virtio.CIDAny, 10000, true))
	r.k.SetBufferLimits(l, 8192, 128*1024)
	size, _ := l.BufferSize()
	require.Equal(t, uint32(128*1024), size, "256 KiB default re-clamped to the new max")
	require.NoError(t, r.k.Listen(l, 16))
	r.deliver(fromHost(1<<30, 10000, virtio.OpRequest))
	resp := r.take()
	require.Len(t, resp, 1)
	require.Equal(t, uint32(128*1024), resp[0].hdr.BufAlloc)
	c, err := r.k.Accept(l)
	require.NoError(t, err)

	r.k.SetBufferSize(c, 1)
	size, bufAlloc := c.BufferSize()
	require.Equal(t, uint32(8192), size, "the child inherited the listener's min")
	require.Equal(t, uint32(8192), bufAlloc)
	r.run()
	sent := r.take()
	require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(sent))
	require.Equal(t, uint32(8192), sent[0].hdr.BufAlloc)

	r.k.SetBufferSize(c, 1<<40)
	size, _ = c.BufferSize()
	require.Equal(t, uint32(128*1024), size, "and its max")
	r.k.SetBufferSize(c, 1<<40)
	r.run()
	require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(r.take()), "an unchanged size sends nothing more")
}

func TestRequestOnLiveSocket(t *testing.T) {
	// docs/sources.md#linux-reset-leak: a REQUEST whose 4-tuple matches a live connected
	// socket is dropped silently in Linux (the host's connect times out);
	// DropRequestOnLive=false answers RST instead, as the incident's write-up
	// ("rejected") could also be read. A reset socket answers RST either
	// way (TestTransportResetLeavesSocketsInTheTable).
	for _, drop := range []bool{true, false} {
		t.Run(fmt.Sprint("DropRequestOnLive=", drop), func(t *testing.T) {
			p := mustProfile(t, "linux-6.12.68")
			p.DropRequestOnLive = drop
			r := newRig(t, p)
			_, c := r.listening(10000, 1<<30)
			r.deliver(fromHost(1<<30, 10000, virtio.OpRequest))
			sent := r.take()
			if drop {
				require.Empty(t, sent)
			} else {
				require.Equal(t, []virtio.Op{virtio.OpRST}, r.ops(sent))
			}
			require.Equal(t, StateEstablished, c.State(), "the live socket is untouched")
			require.Equal(t, 1, r.k.ConnectedCount())
		})
	}
}

func TestPipeFillsToCapacityAndEndsLikeAUnixPipe(t *testing.T) {
	r := newRig(t, mustProfile(t, "linux-6.12.68"))
	p := r.k.NewPipe()
	n, err := p.Write(make([]byte, 70000))
	require.NoError(t, err)
	require.Equal(t, PipeCapacity, n)
	_, err = p.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EAGAIN)
	buf := make([]byte, 4096)
	n, err = p.Read(buf)
	require.NoError(t, err)
	require.Equal(t, 4096, n)
	require.True(t, p.Writable())
	p.CloseWrite()
	total := n
	for {
		n, err := p.Read(buf)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		total += n
	}
	require.Equal(t, PipeCapacity, total)
	p.CloseRead()
	_, err = p.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EBADF, "the write end is closed")

	// A write after the reader went away is EPIPE (pipe(7)).
	p = r.k.NewPipe()
	p.CloseRead()
	_, err = p.Write([]byte{1})
	require.ErrorIs(t, err, syscall.EPIPE)
}

func TestCreditUpdateOnDrainUsesRcvlowat(t *testing.T) {
	// Linux virtio_transport_stream_do_dequeue with 93b808876682 (v6.8):
	// after a read that moved fwd_cnt, an update goes out when fewer bytes
	// are queued than sock_rcvlowat. With the default 1 only an empty queue
	// does; with SO_RCVLOWAT 3000 a queue of 2000 does too.
	for _, tc := range []struct {
		lowat  int
		update bool
	}{{0, false}, {3000, true}} {
		t.Run(fmt.Sprint("rcvlowat=", tc.lowat), func(t *testing.T) {
			r := newRig(t, mustProfile(t, "linux-6.12.68"))
			_, c := r.listening(10000, 1<<30)
			require.NoError(t, r.k.SetRcvlowat(c, tc.lowat))
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 2000)...)
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 2000)...)
			r.run()
			r.take()
			n, err := r.k.Recv(c, make([]byte, 2000), false)
			require.NoError(t, err)
			require.Equal(t, 2000, n)
			r.run()
			if tc.update {
				require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(r.take()))
			} else {
				require.Empty(t, r.take())
			}
		})
	}
}

func TestSetRcvlowatSendsCreditUpdate(t *testing.T) {
	// Linux af_vsock.c vsock_set_rcvlowat and 0fe1798968115 (v6.8)
	// virtio_transport_notify_set_rcvlowat: a value above the buffer size
	// is EINVAL; raising it above the queued bytes while fwd_cnt moved since
	// the last update sends one. 6.6.y never got 0fe1798968115.
	for _, tc := range []struct {
		profile string
		update  bool
	}{{"linux-6.12.68", true}, {"linux-6.17", true}, {"linux-6.6", false}} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			_, c := r.listening(10000, 1<<30)
			require.ErrorIs(t, r.k.SetRcvlowat(c, DefaultBufferSize+1), syscall.EINVAL)
			require.ErrorIs(t, r.k.SetRcvlowat(c, -1), syscall.EINVAL)
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 1000)...)
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 1000)...)
			_, err := r.k.Recv(c, make([]byte, 1000), false)
			require.NoError(t, err)
			r.run()
			require.Empty(t, r.take(), "1000 bytes still queued, plenty of room: no update yet")
			require.NoError(t, r.k.SetRcvlowat(c, 5000))
			require.Equal(t, 5000, c.Rcvlowat())
			r.run()
			if tc.update {
				sent := r.take()
				require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(sent))
				require.Equal(t, uint32(1000), sent[0].hdr.FwdCnt)
			} else {
				require.Empty(t, r.take())
			}
			require.NoError(t, r.k.SetRcvlowat(c, 6000))
			r.run()
			require.Empty(t, r.take(), "the peer already knows fwd_cnt 1000")
			require.NoError(t, r.k.SetRcvlowat(c, 0))
			require.Equal(t, 1, c.Rcvlowat(), "0 means 1")
		})
	}
}

func TestBlockedReadWaitsForRcvlowat(t *testing.T) {
	// A program's read that found nothing waits in epoll, and EPOLLIN needs
	// SO_RCVLOWAT queued bytes since v6.1 (af_vsock.c vsock_poll,
	// virtio_transport_notify_poll_in); read(2) itself takes what is there.
	for _, tc := range []struct {
		profile string
		wakes   bool
	}{{"linux-6.12.68", false}, {"linux-5.15", true}} {
		t.Run(tc.profile, func(t *testing.T) {
			r := newRig(t, mustProfile(t, tc.profile))
			_, c := r.listening(10000, 1<<30)
			require.NoError(t, r.k.SetRcvlowat(c, 3000))
			r.deliver(fromHost(1<<30, 10000, virtio.OpRW), make([]byte, 2000)...)
			require.Equal(t, tc.wakes, r.k.Readable(c))
			_, err := r.k.Recv(c, make([]byte, 4000), true)
			if !tc.wakes {
				require.ErrorIs(t, err, syscall.EAGAIN)
				n, err := r.k.Recv(c, make([]byte, 4000), false)
				require.NoError(t, err)
				require.Equal(t, 2000, n, "a fresh read takes what is queued")
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestBufferSizeChangeAnnouncedInEveryStateWithATransport(t *testing.T) {
	// Linux af_vsock.c vsock_update_buffer_size calls the transport's
	// notify_buffer_size whenever the size changes and a transport is
	// assigned, whatever sk_state is; virtio_transport_notify_buffer_size
	// sets buf_alloc and sends CREDIT_UPDATE. Without a transport (a fresh
	// socket, a listener) only the size is kept.
	r := newRig(t, mustProfile(t, "linux-6.12.68"))

	fresh := r.k.Socket()
	r.k.SetBufferSize(fresh, 4096)
	l := r.k.Socket()
	require.NoError(t, r.k.Bind(l, virtio.CIDAny, 10000, true))
	require.NoError(t, r.k.Listen(l, 16))
	r.k.SetBufferSize(l, 8192)
	r.run()
	require.Empty(t, r.take(), "no transport, no update")

	syn := r.k.Socket()
	require.ErrorIs(t, r.k.Connect(syn, 2, 9000), syscall.EINPROGRESS)
	r.run()
	r.take()
	r.k.SetBufferSize(syn, 16384)
	r.run()
	sent := r.take()
	require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(sent), "SYN_SENT")
	require.Equal(t, uint32(16384), sent[0].hdr.BufAlloc)

	est := r.established()
	r.transportReset()
	require.Equal(t, StateClose, est.State())
	r.take()
	r.k.SetBufferSize(est, 32768)
	r.run()
	sent = r.take()
	require.Equal(t, []virtio.Op{virtio.OpCreditUpdate}, r.ops(sent), "CLOSE after a transport reset")
	require.Equal(t, uint32(32768), sent[0].hdr.BufAlloc)
}
