package device

import "math/rand/v2"

// fixedStartLast is Firecracker's local_port_last at muxer construction:
// the first port handed out is 2^30 (FC@v1.14.0 unix/muxer.rs new; docs/sources.md#fc-port-allocation).
const fixedStartLast = 1<<30 - 1

// portAllocator hands out host-side ports for host-initiated connections.
type portAllocator struct {
	policy PortPolicy
	// last is local_port_last for the Firecracker family, and the next
	// candidate (local_port) for vhost-device-vsock.
	last uint32
	used map[uint32]struct{} // local_port_set
}

// newPortAllocator is the allocator of a freshly built muxer: at boot and,
// since a restore builds a new muxer, at every restore.
func newPortAllocator(policy PortPolicy, rng *rand.Rand) portAllocator {
	a := portAllocator{policy: policy, used: map[uint32]struct{}{}}
	switch policy {
	case PortsRandomStart:
		// superfly/firecracker PR #7: (getrandom u32 & !(1<<31)) | (1<<30).
		a.last = rng.Uint32()&^(1<<31) | 1<<30
	case PortsFromZero:
		a.last = 0 // VD@d7ec5e4 vhu_vsock_thread.rs: local_port: Wrapping(0)
	default:
		a.last = fixedStartLast
	}
	return a
}

// alloc returns a port not in the set and marks it used.
func (a *portAllocator) alloc() (uint32, bool) {
	if a.policy == PortsFromZero {
		// VD@d7ec5e4 allocate_local_port: try local_port, local_port+1, ...
		// wrapping; NoFreeLocalPort after a full turn.
		start := a.last
		p := start
		for {
			if _, taken := a.used[p]; !taken {
				a.last = p + 1
				a.used[p] = struct{}{}
				return p, true
			}
			p++
			if p == start {
				return 0, false
			}
		}
	}
	// FC allocate_local_port: next = ((last + 1) & !(1 << 31)) | (1 << 30),
	// repeated while the port is in the set. The range holds 2^30 ports;
	// the bound only keeps a full set from spinning forever.
	for range 1 << 30 {
		a.last = (a.last+1)&^(1<<31) | 1<<30
		if _, taken := a.used[a.last]; !taken {
			a.used[a.last] = struct{}{}
			return a.last, true
		}
	}
	return 0, false
}

// free is free_local_port; it forgets the port whether or not it was handed
// out by alloc.
func (a *portAllocator) free(p uint32) { delete(a.used, p) }

// reserve marks a guest-initiated connection's host port used, as
// vhost-device-vsock does (thread_backend.rs add_new_guest_conn);
// Firecracker does not.
func (a *portAllocator) reserve(p uint32) {
	if a.policy == PortsFromZero {
		a.used[p] = struct{}{}
	}
}
