package device

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// benchConn sets up an established guest-initiated connection with logging
// off, and returns the rig and the host end.
func benchConn(b *testing.B, rxBuffers int) (*rig, *uds.Conn) {
	r := newRig(b, "firecracker-1.14", max(1, rxBuffers))
	r.eng.Log.Keep(0)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	r.autoRepost = false
	return r, s
}

// BenchmarkDeviceTX1B pushes one-byte RW packets guest->host, 128 per kick,
// laid out as one linear descriptor (6.3+ kernels), and reports packets/s.
func BenchmarkDeviceTX1B(b *testing.B) {
	r, s := benchConn(b, 0)
	const batch = 128
	h := hdr(virtio.OpRW, 2000, 1024)
	h.Len = 1
	var chains [batch][]virtio.Buffer
	for i := range chains {
		addr := uint64(txArena + i*64)
		raw := append(h.Append(nil), 'x')
		require.NoError(b, r.mem.WriteAt(raw, addr))
		chains[i] = []virtio.Buffer{{Addr: addr, Len: uint32(len(raw))}}
	}
	tx := r.drv[virtio.QueueTX]
	sink := make([]byte, 64*1024)
	b.ResetTimer()
	packets := 0
	for b.Loop() {
		for i := range chains {
			if _, err := tx.Add(chains[i]); err != nil {
				b.Fatal(err)
			}
		}
		r.dev.Notify(virtio.QueueTX)
		r.run()
		for {
			_, _, ok, err := tx.PopUsed()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
		}
		for s.Buffered() > 0 {
			_, _ = s.Read(sink)
		}
		packets += batch
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
	require.Zero(b, r.stats().Violations)
}

// BenchmarkDeviceTX64K pushes 64 KiB RW packets guest->host laid out as
// header + 32 KiB + 32 KiB (6.12.68+ nonlinear TX); the host reads them out.
func BenchmarkDeviceTX64K(b *testing.B) {
	r, s := benchConn(b, 0)
	h := hdr(virtio.OpRW, 2000, 1024)
	h.Len = 65536
	bufs := []virtio.Buffer{{Addr: txArena, Len: 44}, {Addr: txArena + 4096, Len: 32768}, {Addr: txArena + 4096 + 32768 + 4096, Len: 32768}}
	require.NoError(b, r.mem.WriteAt(h.Append(nil), txArena))
	tx := r.drv[virtio.QueueTX]
	sink := make([]byte, 64*1024)
	b.SetBytes(65536)
	b.ResetTimer()
	for b.Loop() {
		if _, err := tx.Add(bufs); err != nil {
			b.Fatal(err)
		}
		r.dev.Notify(virtio.QueueTX)
		r.run()
		if _, _, ok, err := tx.PopUsed(); !ok || err != nil {
			b.Fatal("TX chain not returned", err)
		}
		for s.Buffered() > 0 {
			_, _ = s.Read(sink)
		}
	}
	require.Zero(b, r.stats().Violations)
}

// BenchmarkDeviceRX64K streams 64 KiB host->guest into 4140-byte RX buffers
// (6.3+ kernels); the guest re-posts them and returns the credit with one
// CREDIT_UPDATE per 64 KiB.
func BenchmarkDeviceRX64K(b *testing.B) {
	r, s := benchConn(b, 32)
	data := make([]byte, 65536)
	rxq := r.drv[virtio.QueueRX]
	tx := r.drv[virtio.QueueTX]
	cu := hdr(virtio.OpCreditUpdate, 2000, 1024)
	cuBufs := []virtio.Buffer{{Addr: txArena, Len: 44}}
	var fwd uint32
	var raw [virtio.HeaderLen]byte
	b.SetBytes(65536)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Write(data); err != nil {
			b.Fatal(err)
		}
		r.run()
		got := 0
		for got < len(data) {
			head, used, ok, err := rxq.PopUsed()
			if err != nil || !ok {
				b.Fatalf("RX stalled after %d bytes: %v", got, err)
			}
			got += int(used) - virtio.HeaderLen
			bufs := r.rxPosted[head]
			nh, err := rxq.Add(bufs)
			if err != nil {
				b.Fatal(err)
			}
			r.rxPosted[nh] = bufs
			r.dev.Notify(virtio.QueueRX)
			r.run()
		}
		fwd += uint32(got)
		cu.FwdCnt = fwd
		_ = cu.Encode(raw[:])
		_ = r.mem.WriteAt(raw[:], txArena)
		if _, err := tx.Add(cuBufs); err != nil {
			b.Fatal(err)
		}
		r.dev.Notify(virtio.QueueTX)
		r.run()
		_, _, _, _ = tx.PopUsed()
	}
	require.Zero(b, r.stats().Violations)
}
