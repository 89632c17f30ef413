package virtio

// Credit arithmetic of a vsock stream (virtio spec "Device Operation: Buffer
// Space Management"; Linux net/vmw_vsock/virtio_transport_common.c).
//
// Every counter is a u32 that wraps: tx_cnt counts bytes sent, fwd_cnt bytes
// the receiver has consumed. The sender may have at most the receiver's
// advertised buf_alloc bytes in flight, where in flight is tx_cnt minus the
// receiver's last advertised fwd_cnt, computed modulo 2^32.

// InFlight is how many bytes the peer has not yet consumed.
func InFlight(txCnt, peerFwdCnt uint32) uint32 { return txCnt - peerFwdCnt }

// SpecFree is the free space toward the peer as the specification writes it,
// peer_buf_alloc - (tx_cnt - peer_fwd_cnt), in u32. When a peer shrinks its
// buffer below what is in flight the subtraction wraps to a huge value; this
// is the reading older Linux implemented (the underflow CVE-2026-23069 fixed).
func SpecFree(peerBufAlloc, txCnt, peerFwdCnt uint32) uint32 {
	return peerBufAlloc - InFlight(txCnt, peerFwdCnt)
}

// LinuxFree is the free space toward the peer as current Linux computes it:
// min(peer_buf_alloc, buf_alloc) - (tx_cnt - peer_fwd_cnt) in s64, clamped at
// zero. The min is the CVE-2026-23086 fix (c0e42fb0e054, in 6.12.68 and
// 6.1.162); the s64 with the clamp is the CVE-2026-23069 fix.
func LinuxFree(peerBufAlloc, bufAlloc, txCnt, peerFwdCnt uint32) uint32 {
	return S64Free(min(peerBufAlloc, bufAlloc), txCnt, peerFwdCnt)
}

// S64Free is the free space with the underflow fix but without the min over
// both buffers: peer_buf_alloc - in flight in s64, clamped at zero.
func S64Free(peerBufAlloc, txCnt, peerFwdCnt uint32) uint32 {
	free := int64(peerBufAlloc) - int64(InFlight(txCnt, peerFwdCnt))
	if free < 0 {
		return 0
	}
	return uint32(free)
}
