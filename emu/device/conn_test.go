package device

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/virtio"
)

// FC@v1.14.0 csm/connection.rs test_peer_request: a guest REQUEST yields a
// RESPONSE (ports swapped, STREAM, len 0, buf_alloc 64 KiB, fwd_cnt 0) and
// the connection becomes Established when it is emitted.
func TestPeerRequestYieldsResponseThenEstablished(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 0)
	r.listen(1024)
	r.send(hdr(virtio.OpRequest, 2000, 1024), nil)
	require.Equal(t, "PeerInit", r.conn(1024, 2000).State, "no RX buffer yet: RESPONSE pending")
	require.Equal(t, "Response", r.conn(1024, 2000).Pending)
	r.postRXN(1)
	p := r.expect(virtio.OpResponse, 1024, 2000)
	require.Zero(t, p.hdr.Len)
	require.Equal(t, uint32(64*1024), p.hdr.BufAlloc)
	require.Zero(t, p.hdr.FwdCnt)
	require.Equal(t, "Established", r.conn(1024, 2000).State)
	require.Equal(t, uint32(peerBuf), r.conn(1024, 2000).PeerBufAlloc, "peer_buf_alloc from the REQUEST")
}

// FC@v1.14.0 csm/connection.rs test_local_request: a host-initiated
// connection yields a REQUEST; its timer is armed only when the REQUEST is
// emitted; the guest's RESPONSE makes it Established and clears the timer.
func TestLocalRequestArmsTimerOnEmission(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 0)
	h := r.hostDial("CONNECT 52\n")
	c := r.conn(1<<30, 52)
	require.Equal(t, "LocalInit", c.State)
	require.False(t, c.HasExpiry, "no timer before the REQUEST goes out")
	r.advance(500 * time.Millisecond)
	r.postRXN(1)
	r.expect(virtio.OpRequest, 1<<30, 52)
	c = r.conn(1<<30, 52)
	require.True(t, c.HasExpiry)
	require.Equal(t, 500*time.Millisecond+connRequestTimeout, c.Expiry)
	r.send(hdr(virtio.OpResponse, 52, 1<<30), nil)
	c = r.conn(1<<30, 52)
	require.Equal(t, "Established", c.State)
	require.False(t, c.HasExpiry)
	require.Equal(t, "OK 1073741824\n", string(readAll(t, h)))
}

// FC@v1.14.0 csm/connection.rs test_local_request_timeout with the muxer's
// sweep (unix/muxer.rs sweep_killq; notes 4.2, 4.6): an unanswered REQUEST
// expires after 2000 ms, but only a new connection's sweep acts on it: then
// the guest gets an RST and the host stream closes with no reply.
func TestLocalRequestTimeoutKilledBySweep(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	h := r.hostDial("CONNECT 52\n")
	r.expect(virtio.OpRequest, 1<<30, 52)
	r.advance(connRequestTimeout + time.Millisecond)
	r.expectNothing() // no periodic timer
	require.Equal(t, "LocalInit", r.conn(1<<30, 52).State)

	r.listen(1024)
	r.send(hdr(virtio.OpRequest, 2000, 1024), nil) // add_connection sweeps first
	ps := r.recv()
	require.Len(t, ps, 2)
	require.Equal(t, virtio.OpRST, ps[0].hdr.Op)
	require.Equal(t, uint32(1<<30), ps[0].hdr.SrcPort)
	require.Equal(t, virtio.OpResponse, ps[1].hdr.Op)
	r.noConn(1<<30, 52)
	require.Empty(t, readAll(t, h), "no OK line, just EOF")
	require.True(t, h.PeerClosed())
}

// FC@v1.14.0 csm/connection.rs test_rx_data: host data becomes an RW of that
// length; an empty stream yields nothing.
func TestRxDataBecomesRW(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.expectNothing()
	_, err := s.Write([]byte("hello, guest"))
	require.NoError(t, err)
	r.run()
	p := r.expect(virtio.OpRW, 1024, 2000)
	require.Equal(t, "hello, guest", string(p.payload))
	require.Equal(t, uint32(12), p.hdr.Len)
	require.Equal(t, uint32(virtio.HeaderLen+12), p.used)
	require.Equal(t, uint32(12), r.conn(1024, 2000).RxCnt)
	r.expectNothing()
}

// Released Firecracker emits one RW per readiness and relies on
// level-triggered epoll to come back while data remains (notes 2.3): a
// stream larger than one RX buffer still arrives whole, one buffer per RW.
func TestRxStreamSpansBuffers(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 8)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	_, err := s.Write(data)
	require.NoError(t, err)
	r.run()
	var got []byte
	for _, p := range r.recv() {
		require.Equal(t, virtio.OpRW, p.hdr.Op)
		require.LessOrEqual(t, p.hdr.Len, uint32(4096))
		got = append(got, p.payload...)
	}
	require.Equal(t, data, got)
}

// FC@v1.14.0 csm/connection.rs test_local_close: host EOF yields
// SHUTDOWN(RCV|SEND), state LocalClosed and a 2000 ms kill timer; later
// guest data is dropped.
func TestLocalCloseSendsShutdown(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.advance(time.Second)
	s.Close()
	r.run()
	p := r.expect(virtio.OpShutdown, 1024, 2000)
	require.Equal(t, virtio.ShutdownRcv|virtio.ShutdownSend, p.hdr.Flags)
	c := r.conn(1024, 2000)
	require.Equal(t, "LocalClosed", c.State)
	require.True(t, c.HasExpiry)
	require.Equal(t, time.Second+connShutdownTimeout, c.Expiry)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("late"))
	require.Zero(t, r.conn(1024, 2000).Accepted, "RW in LocalClosed is dropped")
}

// FC@v1.14.0 csm/connection.rs test_peer_close: SHUTDOWN flags are sticky.
// SEND-off: host->guest data still flows, guest RW is dropped; RCV-off on
// top: both set with an empty TX buffer -> RST, the connection goes and the
// host stream sees EOF.
func TestPeerCloseFlagsAreSticky(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	sh := hdr(virtio.OpShutdown, 2000, 1024)
	sh.Flags = virtio.ShutdownSend
	r.send(sh, nil)
	require.Equal(t, "PeerClosed(false,true)", r.conn(1024, 2000).State)
	_, err := s.Write([]byte("to guest"))
	require.NoError(t, err)
	r.run()
	require.Equal(t, "to guest", string(r.expect(virtio.OpRW, 1024, 2000).payload))
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("dropped"))
	require.Empty(t, readAll(t, s))

	sh.Flags = virtio.ShutdownRcv // the earlier SEND flag sticks
	r.send(sh, nil)
	r.expect(virtio.OpRST, 1024, 2000)
	r.noConn(1024, 2000)
	_, err = s.Read(make([]byte, 1))
	require.Error(t, err) // EOF
	require.True(t, s.PeerClosed())
}

// FC@v1.14.0 csm/connection.rs test_peer_close, RCV-off half: guest data is
// still written to the host, but a read owed to the guest turns into RST.
func TestPeerCloseRcvOffTurnsReadIntoRST(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1)
	r.autoRepost = false
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	_, err := s.Write([]byte("pending"))
	require.NoError(t, err)
	r.run() // no RX buffer: the read stays owed (Rw)
	require.Equal(t, "Rw", r.conn(1024, 2000).Pending)
	sh := hdr(virtio.OpShutdown, 2000, 1024)
	sh.Flags = virtio.ShutdownRcv
	r.send(sh, nil)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("still written"))
	require.Equal(t, "still written", string(readAll(t, s)))
	r.postRXN(1)
	r.expect(virtio.OpRST, 1024, 2000)
}

// FC@v1.14.0 csm/connection.rs test_credit_request_to_peer: a read owed
// while the guest's advertised credit is zero yields CREDIT_REQUEST, and
// last_fwd_cnt_to_peer moves to fwd_cnt.
func TestCreditRequestToPeer(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1)
	r.autoRepost = false
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	_, err := s.Write([]byte("data"))
	require.NoError(t, err)
	r.run()
	require.Equal(t, "Rw", r.conn(1024, 2000).Pending)
	cu := hdr(virtio.OpCreditUpdate, 2000, 1024)
	cu.BufAlloc = 0 // the guest now advertises no room
	r.send(cu, nil)
	r.postRXN(1)
	p := r.expect(virtio.OpCreditRequest, 1024, 2000)
	require.Zero(t, p.hdr.Len)
	require.Zero(t, r.conn(1024, 2000).RxCnt, "nothing read")
}

// FC@v1.14.0 csm/connection.rs test_credit_request_from_peer: a guest
// CREDIT_REQUEST is answered with CREDIT_UPDATE carrying buf_alloc 64 KiB
// and the current fwd_cnt.
func TestCreditRequestFromPeer(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("12345"))
	require.Equal(t, "12345", string(readAll(t, s)))
	r.send(hdr(virtio.OpCreditRequest, 2000, 1024), nil)
	p := r.expect(virtio.OpCreditUpdate, 1024, 2000)
	require.Equal(t, uint32(64*1024), p.hdr.BufAlloc)
	require.Equal(t, uint32(5), p.hdr.FwdCnt)
}

// FC@v1.14.0 csm/connection.rs test_credit_update_to_peer: with fwd_cnt at
// 61,434 since the last report, a 4-byte RW (61,438) leaves nothing pending
// and a second one (61,442, more than 61,440) pends a CREDIT_UPDATE
// (notes 2.4: strictly more than 61,440).
func TestCreditUpdateThreshold(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.send(hdr(virtio.OpRW, 2000, 1024), make([]byte, 61434))
	require.Equal(t, uint32(61434), r.conn(1024, 2000).FwdCnt)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("abcd"))
	r.expectNothing()
	require.Empty(t, r.conn(1024, 2000).Pending)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("efgh"))
	p := r.expect(virtio.OpCreditUpdate, 1024, 2000)
	require.Equal(t, uint32(61442), p.hdr.FwdCnt)
	require.Equal(t, uint32(61442), r.conn(1024, 2000).LastFwdCntToPeer)
	require.Len(t, readAll(t, s), 61442)
}

// FC@v1.14.0 csm/connection.rs test_tx_buffering and csm/txbuf.rs
// test_incomplete_flush: what the host stream will not take waits in the TX
// buffer, uncounted by fwd_cnt; it is flushed as the host reads, and the
// flush may pend a CREDIT_UPDATE.
func TestTxBufferingAndFlush(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	// SOCK_MIN_SNDBUF (4,608): the host stream takes two 2,240-byte skbs
	// (unix_stream_sendmsg: half the buffer less 64 each, admitted while
	// sk_wmem_alloc < sk_sndbuf) and would block after.
	r.ns.SetBufferSize(1000)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	data := bytes.Repeat([]byte("xyz0123456789"), 5000) // 65,000 bytes
	r.send(hdr(virtio.OpRW, 2000, 1024), data)
	c := r.conn(1024, 2000)
	require.Equal(t, uint32(4480), c.FwdCnt)
	require.Equal(t, 65000-4480, c.TxBuffered)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("tail")) // appended: order kept
	require.Equal(t, 65004-4480, r.conn(1024, 2000).TxBuffered)

	var got []byte
	buf := make([]byte, 700)
	for len(got) < len(data)+4 {
		n, err := s.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
		r.run()
	}
	require.Equal(t, append(data, "tail"...), got)
	c = r.conn(1024, 2000)
	require.Zero(t, c.TxBuffered)
	require.Equal(t, uint32(65004), c.FwdCnt)
	ps := r.recv()
	require.NotEmpty(t, ps)
	require.Equal(t, virtio.OpCreditUpdate, ps[len(ps)-1].hdr.Op)
	require.Zero(t, r.stats().Violations, r.log())
}

// FC@v1.14.0 csm/connection.rs test_peer_credit_misbehavior: a guest that
// ignores credit overflows the 64 KiB TX buffer: TxBufFull kills the
// connection, the guest gets an RST and the host stream closes.
func TestPeerCreditMisbehaviourKills(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	r.ns.SetBufferSize(1) // SOCK_MIN_SNDBUF: 4,480 bytes written, 61,056 buffered
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.send(hdr(virtio.OpRW, 2000, 1024), make([]byte, 65536))
	r.expectNothing()
	r.send(hdr(virtio.OpRW, 2000, 1024), make([]byte, 4481)) // 65,537 > 64 KiB
	r.expect(virtio.OpRST, 1024, 2000)
	r.noConn(1024, 2000)
	require.True(t, s.PeerClosed())
	require.Equal(t, uint64(1), r.stats().ConnsKilled)
}

// FC@v1.14.0 csm/connection.rs test_stream_write_error: a host write error
// (the host closed its end before the device noticed) kills the connection.
func TestStreamWriteErrorKills(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1)
	r.autoRepost = false
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	s.Close()
	r.run() // EOF is owed to the guest but there is no RX buffer
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("into the void"))
	require.Contains(t, r.log(), "vsock: error writing to local stream")
	r.postRXN(1)
	r.expect(virtio.OpRST, 1024, 2000)
	r.noConn(1024, 2000)
}

// An RX buffer with no payload room reads zero bytes, which the connection
// takes for EOF (derived from FC@v1.16.1 connection.rs recv_pkt and
// iovec.rs write_volatile_at: len 0 returns Ok(0)).
func TestZeroRoomRXBufferLooksLikeEOF(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1, withRXShape(44))
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	_, err := s.Write([]byte("data"))
	require.NoError(t, err)
	r.run()
	r.expect(virtio.OpShutdown, 1024, 2000)
	require.Equal(t, "LocalClosed", r.conn(1024, 2000).State)
}
