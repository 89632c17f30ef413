package device

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

func TestLookupProfile(t *testing.T) {
	names := map[string]bool{}
	for _, p := range Profiles() {
		require.NotEmpty(t, p.Source, p.Name)
		require.NotZero(t, p.CreditUpdateThreshold, p.Name)
		require.False(t, names[p.Name], "duplicate %s", p.Name)
		names[p.Name] = true
		got, err := LookupProfile(p.Name)
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	for _, want := range []string{"firecracker-1.5", "firecracker-1.13", "firecracker-1.14", "firecracker-1.15",
		"firecracker-1.16", "firecracker-fly", "cloud-hypervisor-50", "cloud-hypervisor-51", "vhost-device-vsock"} {
		require.True(t, names[want], want)
	}
	_, err := LookupProfile("qemu")
	require.ErrorContains(t, err, `unknown device profile "qemu"`)
	require.ErrorContains(t, err, "firecracker-1.14, firecracker-1.15")
}

// A 64 KiB RW laid out as 6.12.68+/6.17 kernels do (header + 32 KiB + 32 KiB,
// facts section 4): Cloud Hypervisor before v51 fails it with
// BufDescTooSmall, returns it used with length 0 and sends no RST, so the
// guest's credit shrinks for good (seed 000's wedge; CH@v50.0 packet.rs,
// notes 7); v51 (PR #7680) and Firecracker v1.6+ deliver it intact.
func TestNonlinear64KPacket(t *testing.T) {
	payload := bytes.Repeat([]byte("vsocklab-nonlinear-"), 65536/19+1)[:65536]
	for prof, delivered := range map[string]bool{
		"cloud-hypervisor-50": false,
		"cloud-hypervisor-51": true,
		"firecracker-1.14":    true,
	} {
		t.Run(prof, func(t *testing.T) {
			r := newRig(t, prof, 4)
			s := r.guestConnect(r.listen(1024), 1024, 2000)
			r.send(hdr(virtio.OpRW, 2000, 1024), payload, 44, 32768, 32768)
			require.Equal(t, []uint32{0, 0}, r.txUsed, "REQUEST and RW both used with length 0")
			got := readAll(t, s)
			if delivered {
				require.Equal(t, payload, got)
				require.Equal(t, uint32(65536), r.conn(1024, 2000).FwdCnt)
				require.Zero(t, r.stats().BadTXChains)
				require.Equal(t, virtio.OpCreditUpdate, r.recvOne().hdr.Op)
			} else {
				require.Empty(t, got)
				require.Equal(t, "BufDescTooSmall", r.lastFault("vsock: error reading TX packet: "))
				require.Equal(t, uint64(1), r.stats().BadTXChains)
				require.Zero(t, r.conn(1024, 2000).FwdCnt, "the guest's credit never comes back")
				r.expectNothing() // no RST, no CREDIT_UPDATE
			}
			require.Zero(t, r.stats().Violations, r.log())
		})
	}
}

// An injected TX loss (DropTX) has the effect of seed 000's dropped chain
// on a device that parses every shape: the chain is used with length 0, the
// host never sees the bytes and fwd_cnt never counts them. Smaller packets
// and other ops pass.
func TestInjectedTXDrop(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.dev.DropTX(1, 1000)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("small"))
	r.send(hdr(virtio.OpRW, 2000, 1024), make([]byte, 4000))
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("after"))
	require.Equal(t, []uint32{0, 0, 0, 0}, r.txUsed, "REQUEST and three RWs, all used")
	require.Equal(t, "smallafter", string(readAll(t, s)))
	require.Equal(t, uint32(10), r.conn(1024, 2000).FwdCnt, "the lost 4000 bytes are never credited")
	st := r.stats()
	require.Equal(t, uint64(1), st.InjectedTXDrops)
	require.Equal(t, uint64(4000), st.DroppedRWBytes)
	require.Zero(t, st.BadTXChains)
	require.Equal(t, "RW 3:2000->2:1024 len=4000 buf_alloc=65536 fwd_cnt=0", r.lastFault("fault: lost TX "))
	require.Zero(t, st.Violations, r.log())
}

// CH before v52 accepts a lone TX descriptor shorter than 44+len and the
// worker panics when the payload is forwarded (CH@v51.0 csm/connection.rs
// &pkt.buf().unwrap()[..pkt.len()], fixed by 9f405a21a): the device halts.
func TestShortInlineTXDescriptor(t *testing.T) {
	for prof, halts := range map[string]bool{"cloud-hypervisor-50": true, "cloud-hypervisor-51": true, "cloud-hypervisor-52": false} {
		t.Run(prof, func(t *testing.T) {
			r := newRig(t, prof, 4)
			r.guestConnect(r.listen(1024), 1024, 2000)
			h := hdr(virtio.OpRW, 2000, 1024)
			h.Len = 100
			r.sendChain(r.layTX(h, make([]byte, 10), []uint32{54}))
			require.Equal(t, halts, r.dev.Halted())
			if !halts {
				require.Equal(t, "BufDescTooSmall", r.lastFault("vsock: error reading TX packet: "))
				return
			}
			require.Contains(t, r.log(), "device halted: vsock worker panicked")
			require.Equal(t, uint64(1), r.stats().LeakedChains, "the worker died holding the chain")
			r.send(hdr(virtio.OpRW, 2000, 1024), []byte("after"))
			require.Equal(t, uint64(2), r.stats().TXPackets, "nothing more is processed")
			require.Zero(t, r.stats().Violations, r.log())
		})
	}
}

// vhost-device-vsock never returns a TX chain it cannot parse (VD@d7ec5e4
// vhu_vsock_thread.rs process_tx_queue: `continue` without add_used): the
// ring drains one descriptor chain at a time.
func TestVhostLeaksBadTXChain(t *testing.T) {
	r := newRig(t, "vhost-device-vsock", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	used := len(r.txUsed)
	free := r.drv[virtio.QueueTX].NumFree()
	r.send(hdr(virtio.OpRW, 2000, 1024), make([]byte, 65536), 44, 32768, 32768)
	require.Len(t, r.txUsed, used, "never returned")
	require.Equal(t, free-3, r.drv[virtio.QueueTX].NumFree(), "its descriptors are gone for good")
	require.Equal(t, uint64(1), r.stats().LeakedChains)
	require.Zero(t, r.stats().Violations, "a leak is reported, not an invariant failure")
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("next"))
	require.Equal(t, "next", string(readAll(t, s)))
}

// vhost-device-vsock numbers host ports from 0, skips ports guest
// connections use, and acks with the guest's port (VD@d7ec5e4
// vhu_vsock_thread.rs allocate_local_port; thread_backend.rs
// add_new_guest_conn; vsock_conn.rs send_pkt "OK {peer_port}").
func TestVhostPortsAndAck(t *testing.T) {
	r := newRig(t, "vhost-device-vsock", 4)
	r.guestConnect(r.listen(1), 1, 2000) // host port 1 now in use
	var ports []uint32
	for range 2 {
		h := r.hostDial("CONNECT 52\n")
		req := r.recvOne()
		ports = append(ports, req.hdr.SrcPort)
		r.send(hdr(virtio.OpResponse, 52, req.hdr.SrcPort), nil)
		require.Equal(t, "OK 52\n", string(readAll(t, h)))
	}
	require.Equal(t, []uint32{0, 2}, ports)
}

// FC v1.6.0..v1.13.x iovec bug (notes 1.6; issue #5475, fixed by PR #5485
// in v1.14.0): when the host stream takes exactly the first payload iovec
// and would block on the second, send_bytes sees the error, counts 0 bytes
// written and buffers the whole payload: the host gets the first 32 KiB
// twice (fwd_cnt, counting only the flush, says 64 KiB). The byte invariant
// fires, once. v1.14 delivers the stream intact.
func TestPartialWriteDuplication(t *testing.T) {
	payload := make([]byte, 65536)
	for i := range payload {
		payload[i] = byte(i / 4096)
	}
	for prof, dup := range map[string]bool{"firecracker-1.13": true, "firecracker-1.14": false} {
		t.Run(prof, func(t *testing.T) {
			// Default buffers and a host that has not read yet: five
			// 36,544-byte skbs (truesize 37,120) hold 185,600 of the
			// 212,992-byte sk_sndbuf, so unix_stream_sendmsg admits the
			// first 32 KiB fragment whole (the buffer overshoots by an
			// skb) and the second would block.
			r := newRig(t, prof, 8)
			s := r.guestConnect(r.listen(1024), 1024, 2000)
			var filler []byte
			for range 5 {
				b := bytes.Repeat([]byte{0xee}, 36544)
				filler = append(filler, b...)
				r.send(hdr(virtio.OpRW, 2000, 1024), b)
			}
			r.send(hdr(virtio.OpRW, 2000, 1024), payload, 44, 32768, 32768)
			var got []byte
			for {
				b := readAll(t, s)
				if len(b) == 0 {
					break
				}
				got = append(got, b...)
				r.run()
			}
			require.Equal(t, filler, got[:len(filler)])
			got = got[len(filler):]
			if dup {
				require.Equal(t, append(append([]byte(nil), payload[:32768]...), payload...), got)
				require.Equal(t, uint32(5*36544+65536), r.conn(1024, 2000).FwdCnt)
				require.Equal(t, uint64(5*36544+98304), r.conn(1024, 2000).Forwarded)
				require.Equal(t, uint64(1), r.stats().Violations)
				// The host has the filler and the first fragment; the whole
				// payload is buffered again.
				v := r.dev.Violations()
				require.Len(t, v, 1)
				require.Equal(t, Violation{Kind: BytesSkewed, At: v[0].At, LocalPort: 1024, PeerPort: 2000,
					Forwarded: 5*36544 + 32768, Buffered: 65536, Accepted: 5*36544 + 65536, Delta: 32768}, v[0])
				require.Contains(t, r.log(), "invariant: "+v[0].String(), "the log states the kept violation")
			} else {
				require.Equal(t, payload, got)
				require.Zero(t, r.stats().Violations, r.log())
			}
		})
	}
}

// The RX half of the same bug (notes 1.6, derived): bytes read into an
// earlier iovec of a multi-descriptor RX buffer are lost when the read for
// the next one would block; from v1.14 the partial count is delivered.
func TestPartialReadLoss(t *testing.T) {
	for prof, lost := range map[string]bool{"firecracker-1.13": true, "firecracker-1.14": false} {
		t.Run(prof, func(t *testing.T) {
			r := newRig(t, prof, 1, withRXShape(44, 2048, 2048))
			r.autoRepost = false
			s := r.guestConnect(r.listen(1024), 1024, 2000)
			_, err := s.Write(bytes.Repeat([]byte{7}, 2048))
			require.NoError(t, err)
			r.run()
			r.postRXN(1)
			if lost {
				r.expectNothing()
				require.Contains(t, r.log(), "unexpected EWOULDBLOCK")
				require.Zero(t, r.conn(1024, 2000).RxCnt)
			} else {
				p := r.expect(virtio.OpRW, 1024, 2000)
				require.Len(t, p.payload, 2048)
			}
		})
	}
}

// The lab's determinism contract: the same scripted scenario gives the same
// event log, byte for byte (design.md "Determinism contract").
func TestDeterministicLog(t *testing.T) {
	scenario := func() string {
		r := newRig(t, "firecracker-fly", 8, withSeed(7))
		s := r.guestConnect(r.listen(1024), 1024, 2000)
		h, local := r.hostConnect(80)
		for i := range 20 {
			r.send(hdr(virtio.OpRW, 2000, 1024), bytes.Repeat([]byte{byte(i)}, 1000*i))
			_, _ = h.Write(bytes.Repeat([]byte{byte(i)}, 3000))
			r.run()
			r.recv()
			readAll(t, s)
		}
		r.send(hdr(virtio.OpRW, 80, local), []byte("bye"))
		s.Close()
		r.run()
		r.recv()
		r.restore(r.snapshot())
		r.hostDial("CONNECT 81\n")
		r.recv()
		return r.eng.Log.Hash()
	}
	first := scenario()
	for range 3 {
		require.Equal(t, first, scenario())
	}
}

// Arbitrary descriptor tables, chains and headers never make any profile
// panic, and every popped chain is accounted for.
func TestRandomChainsNeverPanic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			r := newRig(t, p.Name, 16)
			r.listen(1024)
			for round := range 200 {
				q := []int{virtio.QueueTX, virtio.QueueRX}[round%2]
				l := r.cfg.Queues[q]
				// Scribble over a few descriptors, then make random heads available.
				hdrAt := txArena + uint64(rng.IntN(64))*64
				for range 4 {
					d := virtio.Desc{
						Addr:  randAddr(rng, hdrAt),
						Len:   []uint32{0, 1, 43, 44, 45, 4096, 65580, rng.Uint32()}[rng.IntN(8)],
						Flags: uint16(rng.IntN(8)),
						Next:  uint16(rng.IntN(300)),
					}
					require.NoError(t, virtio.WriteDesc(r.mem, l.Desc, uint16(rng.IntN(queueSize)), d))
				}
				h := hdr(virtio.Op(rng.IntN(9)), uint32(rng.IntN(3000)), []uint32{1024, 2000, uint32(rng.IntN(5000))}[rng.IntN(3)])
				h.Len = []uint32{0, 1, 100, 4096, 65536, 65537, rng.Uint32()}[rng.IntN(7)]
				h.Type = virtio.Type(rng.IntN(4))
				require.NoError(t, r.mem.WriteAt(h.Append(nil), hdrAt))
				var b [2]byte
				require.NoError(t, r.mem.ReadAt(b[:], l.Avail+2))
				idx := uint16(b[0]) | uint16(b[1])<<8
				n := 1 + rng.IntN(3)
				for i := range n {
					head := uint16(rng.IntN(260))
					slot := l.Avail + 4 + 2*uint64((idx+uint16(i))%queueSize)
					require.NoError(t, r.mem.WriteAt([]byte{byte(head), byte(head >> 8)}, slot))
				}
				idx += uint16(n)
				require.NoError(t, r.mem.WriteAt([]byte{byte(idx), byte(idx >> 8)}, l.Avail+2))
				r.notify(q)
				if r.dev.Halted() {
					break
				}
			}
			require.False(t, strings.Contains(r.log(), "popped chains neither returned nor leaked"), r.log())
		})
	}
}

func randAddr(rng *rand.Rand, hdrAt uint64) uint64 {
	switch rng.IntN(5) {
	case 0:
		return rng.Uint64()
	case 1:
		return memSize - uint64(rng.IntN(100))
	case 2:
		return txArena + uint64(rng.IntN(1<<20))
	default:
		return hdrAt + uint64(rng.IntN(2))*44
	}
}

// Well-formed rings, random chain shapes and headers, a guest that ignores
// credit, and a host that writes, reads and closes at random: no panic,
// every chain accounted for, and never more RW payload than the guest's
// advertised credit.
func TestRandomTrafficKeepsInvariants(t *testing.T) {
	for i, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(i)))
			r := newRig(t, p.Name, 32, withRXShape(2048))
			r.autoRepost = false
			l := r.listen(1024)
			var hosts []*uds.Conn
			ports := []uint32{1024, 2000, 2001, 1 << 30, 0}
			for round := range 3000 {
				switch rng.IntN(8) {
				case 0, 1, 2:
					h := hdr(virtio.Op(1+rng.IntN(7)), ports[1+rng.IntN(2)], ports[rng.IntN(len(ports))])
					if rng.IntN(10) == 0 {
						h.Op = virtio.Op(rng.IntN(9))
					}
					h.BufAlloc = []uint32{0, 100, peerBuf, peerBuf, 1 << 20}[rng.IntN(5)]
					if rng.IntN(4) == 0 {
						h.FwdCnt = uint32(rng.IntN(1 << 17))
					}
					h.Flags = uint32(rng.IntN(4))
					payload := make([]byte, []int{0, 1, 43, 1000, 4096, 40000, 65536}[rng.IntN(7)])
					h.Len = uint32(len(payload))
					if rng.IntN(8) == 0 {
						h.Len = []uint32{0, 1, 65537, rng.Uint32()}[rng.IntN(4)]
					}
					var lens []uint32
					total := uint32(44 + len(payload))
					for total > 0 && len(lens) < 4 {
						n := min(total, []uint32{1, 43, 44, 100, 32768, total}[rng.IntN(6)])
						lens = append(lens, n)
						total -= n
					}
					var wo []int
					if rng.IntN(10) == 0 {
						wo = []int{rng.IntN(len(lens))}
					}
					if r.drv[virtio.QueueTX].NumFree() < len(lens) {
						r.reapTX()
						continue
					}
					bufs := r.layTX(h, payload, lens, wo...)
					r.addTX(bufs)
					r.notify(virtio.QueueTX)
					r.reapTX()
				case 3:
					r.recv()
					for r.drv[virtio.QueueRX].NumFree() > 3 && len(r.rxSlots) > 0 && rng.IntN(4) != 0 {
						r.rxShape = [][]virtio.Buffer{{w(2048)}, {w(44), w(1000)}, {w(44), w(100), w(100)}, {w(30)}}[rng.IntN(4)]
						r.postRX()
					}
					r.notify(virtio.QueueRX)
				case 4:
					if s, err := l.Accept(); err == nil {
						hosts = append(hosts, s)
					}
					if len(hosts) > 0 {
						s := hosts[rng.IntN(len(hosts))]
						switch rng.IntN(4) {
						case 0:
							s.Close()
						case 1:
							_, _ = s.Read(make([]byte, rng.IntN(70000)))
						default:
							_, _ = s.Write(make([]byte, rng.IntN(9000)))
						}
					}
					r.run()
				case 5:
					if c, err := r.ns.Connect(udsPath); err == nil {
						_, _ = c.Write([]byte([]string{"CONNECT 2000\n", "CONNECT 1024\nxx", "bogus\n", "CONN"}[rng.IntN(4)]))
						hosts = append(hosts, c)
					}
					r.run()
				case 6:
					r.advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
				case 7:
					r.reapEvents()
					r.notify(virtio.QueueEvent)
				}
				if r.dev.Halted() {
					t.Logf("halted at round %d", round)
					break
				}
			}
			log := r.log()
			require.NotContains(t, log, "popped chains neither returned nor leaked")
			require.NotContains(t, log, "exceed the guest's buf_alloc")
			require.NotZero(t, r.stats().TXPackets)
			st := r.stats()
			t.Logf("tx %d rx %d rwbytes %d/%d bad %d/%d leaked %d conns +%d -%d killed %d viol %d halted %v", st.TXPackets, st.RXPackets, st.TXBytes, st.RXBytes, st.BadTXChains, st.BadRXChains, st.LeakedChains, st.ConnsAdded, st.ConnsRemoved, st.ConnsKilled, st.Violations, r.dev.Halted())
		})
	}
}
