package emu

import (
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/guest"
)

// RXCompatible reports whether the device takes every receive buffer the
// kernel posts. When it does not, no packet ever reaches the guest: the
// device rejects each buffer and the guest posts it again, forever at one
// instant of virtual time (Firecracker v1.5 with Linux 6.1.63 and later,
// FC issue #4284). The answer comes from the device's own parser run on
// the kernel's own buffer layout.
//
// TX has broken pairings too (Cloud Hypervisor before v51 with a kernel
// that sends nonlinear packets: the stdout wedge incident), but those
// break only for payloads above a threshold and are scenarios to replay,
// not pairings to avoid.
func RXCompatible(d device.Profile, k guest.Profile) bool {
	return d.AcceptsRX(k.RX.Descriptors())
}

// KernelFor returns a kernel profile whose receive buffers the device
// takes: DefaultKernel when it does, else the first in guest.Profiles
// order that does; false when none does.
func KernelFor(d device.Profile) (string, bool) {
	if k, err := guest.LookupProfile(DefaultKernel); err == nil && RXCompatible(d, k) {
		return k.Name, true
	}
	for _, k := range guest.Profiles() {
		if RXCompatible(d, k) {
			return k.Name, true
		}
	}
	return "", false
}
