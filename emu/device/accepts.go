package device

import "github.com/vsocklab/vsocklab/virtio"

// AcceptsRX reports whether a device built from p takes a receive buffer
// made of descriptors of these lengths, all writable and in guest memory.
// It runs the profile's own RX parser on such a chain, so the answer is
// the parser's (and its upstream citations'), not a second reading: a
// Firecracker v1.5 device, for one, refuses the single-descriptor buffers
// of Linux 6.1.63 and later (BufDescMissing, FC issue #4284).
func (p Profile) AcceptsRX(descLens []uint32) bool {
	var v chainView
	var total uint64
	for _, n := range descLens {
		v.descs = append(v.descs, desc{addr: total, n: n, write: true})
		total += uint64(n)
	}
	d := &Device{prof: p, mem: virtio.NewFlatMemory(0, int(max(total, 1)))}
	var b rxBuffer
	return d.parseRX(&v, &b).ok()
}
