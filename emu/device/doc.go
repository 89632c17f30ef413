// Package device is the hypervisor side of a virtio-vsock device: the
// design Firecracker introduced (a per-connection state machine behind a
// muxer that bridges guest streams to host Unix sockets, "hybrid vsock"),
// and the variants Cloud Hypervisor and rust-vmm's vhost-device-vsock
// derived from it.
//
// The device works on real split virtqueues in guest memory
// (virtio.DeviceQueue) and on host sockets modelled by emu/uds. It is a pure
// state machine driven by the engine: Notify (a guest kick) and host socket
// readiness schedule one processing run at the current virtual time, and the
// run does what Firecracker's event loop does for the same events.
//
// Behaviour that differs between versions is data, a Profile. The
// evidence, upstream file and function per rule, is docs/sources.md (cited
// by anchor); every rule cites the source it models, written
// "FC@<tag> <file>" for Firecracker (paths under
// src/vmm/src/devices/virtio/vsock/), "CH@<tag> <file>" for Cloud Hypervisor
// (virtio-devices/src/vsock/) and "VD@d7ec5e4 <file>" for
// rust-vmm/vhost-device (vhost-device-vsock/src/, commit
// d7ec5e4a800bc728fd213465be51c460a2ce46c7).
//
// Guest input never makes the device panic: a bad chain or header gets the
// reaction the modelled device has (a log line, a used length of 0, a
// leaked chain, or, where the real device crashes, Halted).
package device
