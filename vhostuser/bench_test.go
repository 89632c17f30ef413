package vhostuser

import (
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// BenchmarkTXPacket is the back-end's cost per packet, seen from the
// guest: write a chain into the TX ring, kick, and wait for the call
// eventfd after the device popped, parsed and pushed the chain back.
// "credit-update" is a header-only packet (r44) the device takes without
// host I/O: kick, pop, parse, push, call and nothing else. The RW cases
// (r44 rN) also forward the payload to a real host socket through the
// lab's bridge. The guest honours the device's credit, asking for it when
// it runs out. Logging is the back-end's default (world and fault records
// only).
func BenchmarkTXPacket(b *testing.B) {
	for _, size := range []int{0, 64, 4096} {
		name := sizeName(size)
		if size == 0 {
			name = "credit-update"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarnessLogging(b, "firecracker-1.14", engine.KindWorld|engine.KindFault)
			h.handshake()
			h.start()
			host, resp := guestConnect(b, h, 49152, 5000, 65536)
			go func() { _, _ = io.Copy(io.Discard, host) }()

			peerBuf, peerFwd, sent := resp.BufAlloc, resp.FwdCnt, uint32(0)
			payload := make([]byte, size)
			if size > 0 {
				b.SetBytes(int64(size))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for sent-peerFwd+uint32(size) > peerBuf {
					h.sendPkt(hdr(49152, 5000, virtio.OpCreditRequest, 65536, 0), nil)
					waitCall(h.call[virtio.QueueTX], wait)
					p, _ := h.recvPkt(wait)
					peerBuf, peerFwd = p.BufAlloc, p.FwdCnt
				}
				if size == 0 {
					h.sendPkt(hdr(49152, 5000, virtio.OpCreditUpdate, 65536, 0), nil)
				} else {
					h.sendPkt(hdr(49152, 5000, virtio.OpRW, 65536, 0), payload)
				}
				sent += uint32(size)
				if !waitCall(h.call[virtio.QueueTX], wait) {
					b.Fatal("no TX interrupt")
				}
				h.reapTX()
				// Credit updates the device volunteers.
				for {
					head, _, ok, err := h.drv[virtio.QueueRX].PopUsed()
					require.NoError(b, err)
					if !ok {
						break
					}
					addr := h.rxBufs[head]
					delete(h.rxBufs, head)
					var hb [virtio.HeaderLen]byte
					require.NoError(b, h.mem.ReadAt(hb[:], addr))
					p, err := virtio.DecodeHeader(hb[:])
					require.NoError(b, err)
					peerBuf, peerFwd = p.BufAlloc, p.FwdCnt
					h.postRX(addr)
					h.kickRing(virtio.QueueRX)
				}
			}
			b.StopTimer()
			time.Sleep(10 * time.Millisecond)
		})
	}
}

// BenchmarkEventfdRoundTrip is the yardstick for BenchmarkTXPacket: the
// floor of any back-end built like this one, a kick eventfd read by a
// goroutine through the runtime's poller that writes a call eventfd the
// guest polls, with no device work in between.
func BenchmarkEventfdRoundTrip(b *testing.B) {
	kick, call := newEventFD(b), newEventFD(b)
	defer unix.Close(call)
	f, err := kickFile(kick)
	require.NoError(b, err)
	go func() {
		var buf [8]byte
		for {
			if _, err := f.Read(buf[:]); err != nil {
				return
			}
			signalFD(call)
		}
	}()
	defer f.Close()
	var one [8]byte
	one[0] = 1
	b.ReportAllocs()
	for range b.N {
		if _, err := unix.Write(kick, one[:]); err != nil {
			b.Fatal(err)
		}
		if !waitCall(call, wait) {
			b.Fatal("no call")
		}
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
