package device

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/virtio"
)

// FC@v1.14.0 unix/muxer.rs test_bad_peer_pkt (notes 4.4): a non-STREAM
// packet gets an RST whatever its op and CID (the type check comes first);
// packets for no connection get an RST unless they are REQUESTs, guest RSTs
// included; a wrong dst_cid is dropped silently.
func TestBadPeerPacket(t *testing.T) {
	for _, c := range []struct {
		name    string
		mutate  func(*virtio.Header)
		wantRST bool
	}{
		{"DGRAM type", func(h *virtio.Header) { h.Type = virtio.TypeDgram }, true},
		{"SEQPACKET type to a wrong CID", func(h *virtio.Header) { h.Type = virtio.TypeSeqpacket; h.DstCID = 3 }, true},
		{"orphan RESPONSE", func(h *virtio.Header) { h.Op = virtio.OpResponse }, true},
		{"orphan CREDIT_REQUEST", func(h *virtio.Header) { h.Op = virtio.OpCreditRequest }, true},
		{"orphan CREDIT_UPDATE", func(h *virtio.Header) { h.Op = virtio.OpCreditUpdate }, true},
		{"orphan SHUTDOWN", func(h *virtio.Header) { h.Op = virtio.OpShutdown }, true},
		{"orphan RW", func(h *virtio.Header) { h.Op = virtio.OpRW }, true},
		{"orphan RST", func(h *virtio.Header) { h.Op = virtio.OpRST }, true},
		{"dst_cid 3", func(h *virtio.Header) { h.DstCID = 3 }, false},
		{"REQUEST to dst_cid 3", func(h *virtio.Header) { h.Op = virtio.OpRequest; h.DstCID = 3 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "firecracker-1.14", 4)
			h := hdr(virtio.OpRW, 1025, 1026)
			c.mutate(&h)
			r.sendChain(r.layTX(h, nil, []uint32{44}))
			if !c.wantRST {
				r.expectNothing()
				require.Equal(t, uint64(1), r.stats().DroppedPackets)
				return
			}
			p := r.expect(virtio.OpRST, 1026, 1025)
			require.Zero(t, p.hdr.BufAlloc, "muxer-made RST: buf_alloc 0")
			require.Zero(t, p.hdr.FwdCnt)
			require.Empty(t, r.conns())
		})
	}
}

// VD@d7ec5e4 thread_backend.rs send_pkt: vhost-device-vsock drops what
// Firecracker resets (non-stream, orphans), drops a packet whose src_cid is
// not the guest's, and sends nothing when a guest connect fails
// (handle_new_guest_conn -> enq_rst is a TODO).
func TestVhostUserDropsInsteadOfRST(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*virtio.Header)
	}{
		{"DGRAM type", func(h *virtio.Header) { h.Type = virtio.TypeDgram }},
		{"orphan RW", func(h *virtio.Header) {}},
		{"foreign src_cid", func(h *virtio.Header) { h.SrcCID = 9 }},
		{"refused REQUEST", func(h *virtio.Header) { h.Op = virtio.OpRequest }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "vhost-device-vsock", 4)
			h := hdr(virtio.OpRW, 1025, 1026)
			c.mutate(&h)
			r.sendChain(r.layTX(h, nil, []uint32{44}))
			r.expectNothing()
		})
	}
}

// FC@v1.14.0 unix/muxer.rs test_peer_connection: a guest REQUEST with no
// host listener gets an RST; with one, a RESPONSE; then data flows both
// ways.
func TestPeerConnectionRefusedThenAccepted(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	r.send(hdr(virtio.OpRequest, 1025, 1026), nil)
	r.expect(virtio.OpRST, 1026, 1025)
	require.Equal(t, uint64(1), r.stats().HostConnectsRefused)

	s := r.guestConnect(r.listen(1026), 1026, 1025)
	r.send(hdr(virtio.OpRW, 1025, 1026), []byte("guest->host"))
	require.Equal(t, "guest->host", string(readAll(t, s)))
	_, err := s.Write([]byte("host->guest"))
	require.NoError(t, err)
	r.run()
	require.Equal(t, "host->guest", string(r.expect(virtio.OpRW, 1026, 1025).payload))
	require.Zero(t, r.stats().Violations)
}

// FC@v1.14.0 unix/muxer.rs test_local_connection (notes 4.1, 4.2): the host
// writes "CONNECT <port>\n", the guest gets a REQUEST from the first local
// port, answers RESPONSE, the host reads "OK <port>\n"; bytes the host sent
// right after the line are the stream's first bytes.
func TestLocalConnectionConnectOKAndData(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	h := r.hostDial("CONNECT 1025\nearly bytes")
	req := r.expect(virtio.OpRequest, 1<<30, 1025)
	require.Zero(t, req.hdr.FwdCnt)
	r.expectNothing() // LocalInit: no credit yet, the early bytes wait in the socket
	r.send(hdr(virtio.OpResponse, 1025, 1<<30), nil)
	require.Equal(t, "OK 1073741824\n", string(readAll(t, h)))
	require.Equal(t, "early bytes", string(r.expect(virtio.OpRW, 1<<30, 1025).payload))
	r.send(hdr(virtio.OpRW, 1025, 1<<30), []byte("from guest"))
	require.Equal(t, "from guest", string(readAll(t, h)))
	require.Contains(t, r.log(), "host connect CONNECT 1025 -> local port 1073741824")
}

// FC@v1.14.0 unix/muxer.rs test_regression_handshake (notes 2.4, 4.2): the
// OK line is a raw write, not counted in fwd_cnt.
func TestRegressionHandshakeOKNotInFwdCnt(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	_, local := r.hostConnect(1025)
	require.Zero(t, r.conn(local, 1025).FwdCnt)
	r.send(hdr(virtio.OpCreditRequest, 1025, local), nil)
	require.Zero(t, r.expect(virtio.OpCreditUpdate, local, 1025).hdr.FwdCnt)
}

// FC@v1.14.0 unix/muxer.rs test_local_close: host close yields SHUTDOWN; the
// guest's RST removes the connection and frees its local port.
func TestMuxerLocalCloseThenGuestRST(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	h, local := r.hostConnect(1025)
	require.Equal(t, 1, r.dev.Muxer().PortsInUse)
	h.Close()
	r.run()
	r.expect(virtio.OpShutdown, local, 1025)
	r.send(hdr(virtio.OpRST, 1025, local), nil)
	r.noConn(local, 1025)
	require.Zero(t, r.dev.Muxer().PortsInUse)
	r.expectNothing()
}

// FC@v1.14.0 unix/muxer.rs test_peer_close: a guest SHUTDOWN with both
// flags and nothing buffered yields RST; the connection is removed and the
// host stream sees EOF.
func TestMuxerPeerCloseBothFlags(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1026), 1026, 1025)
	sh := hdr(virtio.OpShutdown, 1025, 1026)
	sh.Flags = virtio.ShutdownRcv | virtio.ShutdownSend
	r.send(sh, nil)
	r.expect(virtio.OpRST, 1026, 1025)
	r.noConn(1026, 1025)
	require.True(t, s.PeerClosed())
}

// A peer SHUTDOWN with data still in the TX buffer arms the 2000 ms timer
// instead of an RST; the flush that empties the buffer then pends the RST
// (FC@v1.14.0 connection.rs send_pkt and notify; notes 2.2, 2.5).
func TestPeerShutdownWaitsForTxBufferDrain(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	r.ns.SetBufferSize(10) // SOCK_MIN_SNDBUF: the first 4,480 bytes fill it
	s := r.guestConnect(r.listen(1026), 1026, 1025)
	filler := bytes.Repeat([]byte{'.'}, 4480)
	r.send(hdr(virtio.OpRW, 1025, 1026), filler)
	r.send(hdr(virtio.OpRW, 1025, 1026), []byte("0123456789abcdefghij"))
	sh := hdr(virtio.OpShutdown, 1025, 1026)
	sh.Flags = virtio.ShutdownRcv | virtio.ShutdownSend
	r.send(sh, nil)
	c := r.conn(1026, 1025)
	require.Equal(t, "PeerClosed(true,true)", c.State)
	require.True(t, c.HasExpiry)
	require.Equal(t, 20, c.TxBuffered)
	r.expectNothing()
	got := readAll(t, s)
	r.run()
	got = append(got, readAll(t, s)...)
	require.Equal(t, string(filler)+"0123456789abcdefghij", string(got))
	r.expect(virtio.OpRST, 1026, 1025)
	r.noConn(1026, 1025)
}

// FC@v1.14.0 unix/muxer.rs test_muxer_rxq (notes 4.6): 256 RESPONSEs fill
// the RX queue in sync; the 257th desyncs it; an RST (refused connect) then
// evicts the newest RESPONSE and comes out last; the drained, unsynced queue
// is rebuilt from the connections and yields the two RESPONSEs left (in key
// order here; FC's HashMap order is arbitrary).
func TestMuxerRxqFillDesyncEvictResync(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 0)
	l := r.listen(1026)
	for peer := uint32(1025); peer < 1025+rxqSize; peer++ {
		r.send(hdr(virtio.OpRequest, peer, 1026), nil)
		_, err := l.Accept()
		require.NoError(t, err)
	}
	require.True(t, r.dev.Muxer().RxqSynced)
	require.Equal(t, rxqSize, r.dev.Muxer().RxqLen)
	r.send(hdr(virtio.OpRequest, 1025+rxqSize, 1026), nil)
	require.False(t, r.dev.Muxer().RxqSynced)
	r.send(hdr(virtio.OpRequest, 1025, 1027), nil) // nobody listens on 1027: RST
	require.Equal(t, rxqSize, r.dev.Muxer().RxqLen)

	r.autoRepost = false
	r.postRXN(rxqSize)
	ps := r.recv()
	require.Len(t, ps, rxqSize)
	for i, p := range ps[:rxqSize-1] {
		require.Equal(t, virtio.OpResponse, p.hdr.Op)
		require.Equal(t, uint32(1025+i), p.hdr.DstPort, "order holds")
	}
	require.Equal(t, virtio.OpRST, ps[rxqSize-1].hdr.Op)
	require.Equal(t, uint32(1027), ps[rxqSize-1].hdr.SrcPort)
	require.Zero(t, r.dev.Muxer().RxqLen)
	require.False(t, r.dev.Muxer().RxqSynced, "empty but unsynced: still pending RX")

	r.postRXN(2)
	ps = r.recv()
	require.Len(t, ps, 2)
	require.Equal(t, uint32(1025+rxqSize-1), ps[0].hdr.DstPort, "the evicted one")
	require.Equal(t, uint32(1025+rxqSize), ps[1].hdr.DstPort, "the one that desynced the queue")
	require.True(t, r.dev.Muxer().RxqSynced)
}

// FC@v1.14.0 unix/muxer.rs test_muxer_killq (notes 4.6): 129 connections
// get a shutdown timer; the kill queue holds 128 and desyncs on the 129th.
// After 2000 ms a new REQUEST sweeps it: exactly 128 are killed (the 129th
// has already expired at the rebuild and is never queued), one resync, and
// the guest gets 128 RSTs before the new RESPONSE.
func TestMuxerKillqSweepsOnNewConnection(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 8)
	l := r.listen(1026)
	last := uint32(1025 + killqSize)
	for peer := uint32(1025); peer <= last; peer++ {
		r.send(hdr(virtio.OpRequest, peer, 1026), nil)
		r.expect(virtio.OpResponse, 1026, peer)
		s, err := l.Accept()
		require.NoError(t, err)
		s.Close()
		r.run()
		r.expect(virtio.OpShutdown, 1026, peer)
		require.Equal(t, peer < 1025+killqSize, r.dev.Muxer().KillqSynced, "peer %d", peer)
	}
	require.False(t, r.dev.Muxer().KillqSynced)
	before := r.stats()

	r.advance(connShutdownTimeout + time.Millisecond)
	r.autoRepost = false
	r.send(hdr(virtio.OpRequest, last+1, 1026), nil)
	st := r.stats()
	require.Equal(t, before.ConnsAdded+1, st.ConnsAdded)
	require.Equal(t, before.ConnsKilled+killqSize, st.ConnsKilled)
	require.Equal(t, before.KillqResyncs+1, st.KillqResyncs)
	require.True(t, r.dev.Muxer().KillqSynced)

	r.postRXN(killqSize + 1 - 8)
	var ps []rxPkt
	for len(ps) < killqSize+1 {
		got := r.recv()
		require.NotEmpty(t, got)
		ps = append(ps, got...)
		r.postRXN(len(got))
	}
	for _, p := range ps[:killqSize] {
		require.Equal(t, virtio.OpRST, p.hdr.Op)
		require.Equal(t, uint32(1026), p.hdr.SrcPort)
	}
	require.Equal(t, virtio.OpResponse, ps[killqSize].hdr.Op)
	require.Equal(t, last+1, ps[killqSize].hdr.DstPort)
	r.conn(1026, last) // the overflowed one lingers
}

// FC@v1.14.0 unix/muxer.rs test_regression_rxq_pop: a connection with two
// pending bits stays queued until both went out.
func TestRegressionRxqPopKeepsConnWithTwoBits(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1)
	r.autoRepost = false
	s := r.guestConnect(r.listen(1026), 1026, 1025)
	_, err := s.Write([]byte{5, 6, 7, 8})
	require.NoError(t, err)
	r.run()
	r.send(hdr(virtio.OpCreditRequest, 1025, 1026), nil)
	require.Equal(t, "Rw|CreditUpdate", r.conn(1026, 1025).Pending)
	r.postRXN(1)
	require.Equal(t, virtio.OpRW, r.recvOne().hdr.Op)
	require.Equal(t, 1, r.dev.Muxer().RxqLen, "still queued")
	r.postRXN(1)
	require.Equal(t, virtio.OpCreditUpdate, r.recvOne().hdr.Op)
	require.Zero(t, r.dev.Muxer().RxqLen)
}

// MAX_CONNECTIONS is 1023 (FC unix/mod.rs): the 1024th guest REQUEST is
// refused with an RST after the sweep (FC add_connection), and a host
// connection beyond the limit is accepted and closed at once (FC
// handle_event HostSock, "connection limit reached"). The limit is a profile
// setting for scale experiments: raised, the same rules apply at the new cap.
func TestConnectionLimit(t *testing.T) {
	for _, limit := range []int{maxConnections, 2000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			r := newRig(t, "firecracker-1.14", 0, withMaxConnections(limit))
			l, err := r.ns.Listen(r.hostPath(1026), 4096)
			require.NoError(t, err)
			for peer := uint32(0); peer < uint32(limit); peer++ {
				r.send(hdr(virtio.OpRequest, 5000+peer, 1026), nil)
			}
			require.Equal(t, uint64(limit), r.stats().ConnsAdded)
			r.send(hdr(virtio.OpRequest, 9999, 1026), nil)
			require.Equal(t, uint64(limit), r.stats().ConnsAdded)
			require.Equal(t, uint64(1), r.stats().HostConnectsRefused)
			require.Equal(t, limit+1, l.Pending(), "the refused stream was connected, then closed")

			h := r.hostDial("CONNECT 52\n")
			require.True(t, h.PeerClosed())
			require.Equal(t, uint64(1), r.stats().HostAcceptsDropped)
		})
	}
}

// FC@v1.14.0 unix/muxer.rs read_local_stream_port (notes 4.1) and
// VD@d7ec5e4 vhu_vsock_thread.rs read_local_stream_port: which lines open a
// connection, and what happens to bytes after the newline.
func TestConnectLine(t *testing.T) {
	for _, c := range []struct {
		line     string
		fcPort   int64 // -1: rejected
		vhost    int64
		fcStream string // what the guest receives first after the handshake
	}{
		{"CONNECT 52\n", 52, 52, ""},
		{"connect 52\r\n", 52, 52, ""},
		{"  Connect\t52 junk\n", 52, 52, ""},
		{"CoNnEcT +0052\n", 52, 52, ""},
		{"CONNECT 4294967295\n", 4294967295, 4294967295, ""},
		{"CONNECT 4294967296\n", -1, -1, ""},
		{"CONNECT -1\n", -1, -1, ""},
		{"CONNECT\n", -1, -1, ""},
		{"CONNECT", -1, -1, ""},          // 7 bytes: read_exact(10) would block
		{"CONNECT 5", -1, -1, ""},        // 9 bytes
		{"CONNECT 52", -1, -1, ""},       // 10 bytes, then the byte-by-byte read blocks
		{"LISTEN 52\n", -1, -1, ""},      // wrong verb
		{"CONNECT x52\n", -1, -1, ""},    // not a number
		{"CONNECT \xff52\n", -1, -1, ""}, // not UTF-8
		{"CONNECT 52\nhello", 52, 52, "hello"},
		{"CONNECT 52 " + strings.Repeat("x", 40) + "\n", 52, 52, strings.Repeat("x", 19) + "\n"}, // FC stops at 32 bytes
	} {
		for _, prof := range []string{"firecracker-1.14", "vhost-device-vsock"} {
			t.Run(prof+"/"+strconv.Quote(c.line), func(t *testing.T) {
				want := c.fcPort
				if prof == "vhost-device-vsock" {
					want = c.vhost
				}
				r := newRig(t, prof, 4)
				h := r.hostDial(c.line)
				if want < 0 {
					r.expectNothing()
					require.True(t, h.PeerClosed(), "closed without a reply")
					require.Empty(t, readAll(t, h))
					require.Equal(t, uint64(1), r.stats().HostLinesRejected)
					return
				}
				req := r.recvOne()
				require.Equal(t, virtio.OpRequest, req.hdr.Op)
				require.Equal(t, uint32(want), req.hdr.DstPort)
				r.send(hdr(virtio.OpResponse, req.hdr.DstPort, req.hdr.SrcPort), nil)
				readAll(t, h)
				if prof == "firecracker-1.14" && c.fcStream != "" {
					require.Equal(t, c.fcStream, string(r.recvOne().payload))
				} else {
					r.expectNothing() // vhost-device-vsock's BufReader swallowed the rest
				}
			})
		}
	}
}
