// Package vhostuser serves the lab's vsock device model to a real guest
// kernel: it is a vhost-user back-end for QEMU's vhost-user-vsock-pci, in
// pure Go on golang.org/x/sys/unix, following QEMU's
// docs/interop/vhost-user.rst (v7.2.0).
//
// The back-end is a transport, not a second device. QEMU hands over the
// guest's RAM (memfd regions, mapped here) and the RX and TX split rings
// (ring addresses in QEMU's userspace, translated to guest-physical ones;
// descriptors carry guest-physical addresses). The unchanged emu/device
// model pops, parses and pushes chains over a virtio.Memory built on the
// mapped regions, with the same bounds checks as the lab; kicks come from
// the kick eventfds and interrupts go out through the call eventfds. The
// device and its host side run in an emu.NewExternal world on emu/lab's
// real-time driver, the one `vsocklab serve` uses. Nothing about vsock
// semantics lives here.
//
// # Use
//
//	b, err := vhostuser.Listen(vhostuser.Config{
//		Socket: "/tmp/vhost.sock",  // QEMU: -chardev socket,id=c0,path=/tmp/vhost.sock
//		UDS:    "/tmp/v.sock",      // Firecracker's hybrid vsock, as `vsocklab serve`
//		Device: "cloud-hypervisor-50",
//	})
//	// The socket exists now: start QEMU.
//	err = b.Serve(ctx)  // until QEMU disconnects (nil), ctx ends (nil), or a *ProtocolError
//	sum := b.Close()    // packets, bytes, ring restarts
//
// `vsocklab vhost-user --socket PATH --uds PATH [--device PROFILE] [--cid N]
// [--pcap FILE] [--log KINDS]` is the same as a command: it prints
// "vhost-user: listening on PATH" on standard error when QEMU may connect,
// and a summary line when QEMU disconnects or a signal stops it.
//
// Tests and other Go callers may skip the socket (Config.Socket empty) and
// hand ServeConn a connected *net.UnixConn, and may leave Config.UDS empty
// to reach the device's host side inside the world (Lab().Host).
//
// # Host side
//
// As with Firecracker: a host client connects to UDS and writes
// "CONNECT <port>\n"; the device answers "OK <local port>\n" once the guest
// accepted. A guest connection to host port P is connected to a real Unix
// listener on UDS_P (lab.Host.ReachRealSockets); where nothing listens the
// guest gets the profile's answer (an RST from Firecracker). The socket on
// UDS stays bound for the back-end's whole life, as Firecracker's and
// vhost-device-vsock's listeners do, while the device comes and goes with
// the rings: a host client that connects while the rings are stopped waits,
// as in a listen backlog, and is joined to the rebuilt device when they
// start again; clients joined to a device are closed when it stops. The
// socket is served by lab.HybridServer, as `vsocklab serve`'s is: a client
// that sends no line within 10 s is closed, at most 512 wait for the device
// at once, and accept errors such as EMFILE are retried with backoff.
//
// # What is negotiated
//
// Features: VIRTIO_F_VERSION_1 and VHOST_USER_F_PROTOCOL_FEATURES; not
// VIRTIO_F_INDIRECT_DESC (no modelled device offers it, and it would change
// the TX layout the device sees) and not VIRTIO_F_EVENT_IDX (every used
// buffer is signalled). Protocol features: REPLY_ACK (NEED_REPLY is
// answered with a u64 0), CONFIG (GET_CONFIG returns the le64 guest_cid of
// struct virtio_vsock_config) and MQ (GET_QUEUE_NUM answers 2). The
// memory-slot messages are not sent by QEMU unless CONFIGURE_MEM_SLOTS is
// negotiated, which it is not: memory comes in SET_MEM_TABLE, at most 8
// regions.
//
// Requests served: GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES,
// GET_QUEUE_NUM, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_VRING_NUM,
// SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK,
// SET_VRING_CALL, SET_VRING_ERR, SET_VRING_ENABLE, GET_CONFIG. Anything
// else, and any message that is short, oversized, inconsistent (payload
// size, descriptor count, ring index, ring size, regions that overlap, are
// not regular files or are larger than their file, ring addresses outside
// every region) ends the connection with a *ProtocolError that names the
// request. A region larger than its file is refused because touching a
// shared mapping past the end of its file kills the process with SIGBUS.
//
// # Rings, and restarts
//
// Only rings 0 (RX) and 1 (TX) reach the back-end: QEMU keeps the event
// queue, so the device has none, posts no TRANSPORT_RESET and never arms
// its RX gate. A ring starts with SET_VRING_KICK and, once
// PROTOCOL_FEATURES is negotiated, is enabled by SET_VRING_ENABLE 1
// (vhost-user.rst, "Ring states"). The device starts when both rings are
// started and enabled, at the available index SET_VRING_BASE gave and the
// used index found in the used ring. GET_VRING_BASE stops the ring, and
// the device with it (a vsock device cannot run on one ring): its host
// connections close and the reply is the next available index.
//
// When the rings start again (the guest driver's remove and probe, which
// the harness triggers by unbinding and binding the virtio device in
// sysfs), the device is rebuilt as a snapshot restore rebuilds it
// (device.Restore): a fresh muxer whose port allocator follows the
// profile, so fixed-start profiles (Firecracker before v1.15) begin again
// at 2^30 and persisted ones go on. The log says "rings stopped (cycle N)",
// "device restored (PROFILE): local_port_last ..." and "rings started again
// (cycle N)". The guest's side of such a cycle matches a snapshot's: the
// driver's remove path resets every connected socket with the function the
// TRANSPORT_RESET event handler uses (Linux net/vmw_vsock/virtio_transport.c,
// virtio_vsock_vqs_del, called by virtio_vsock_remove since v5.18, applies
// virtio_vsock_reset_sock to every connected socket, as
// virtio_vsock_event_handle does for VIRTIO_VSOCK_EVENT_TRANSPORT_RESET).
//
// A ring disabled by SET_VRING_ENABLE 0 but not stopped is not kicked and
// its interrupts are held until it is enabled again; the device itself is
// not paused, so host data may still be written into an RX ring QEMU
// disabled. QEMU 7.2 disables the rings only right before GET_VRING_BASE.
//
// Guest memory is shared with a running guest and read with plain loads:
// the back-end relies on x86's ordering (loads are not reordered with
// loads, nor stores with stores) where a driver on another CPU writes a
// descriptor before the available index, and on the eventfd syscalls as
// full barriers between a kick and the reads it announces. Other
// architectures would need explicit barriers.
//
// # Logs and captures
//
// The event log is the lab's (engine.Record lines, as in replay
// timelines), streamed to Config.Log and not kept; every TX packet's line
// carries its chain shape ("tx RW 3:1025->2:5000 len=4096 ... chain r44
// r4096"), as dropped chains' lines always do. Config.Pcap receives a
// LINKTYPE_VSOCK capture, timed from the back-end's start on the lab's
// capture epoch (2000-01-01 UTC).
//
// # Tests
//
// The tests play QEMU's side in Go (a memfd as q35's two regions, eventfds,
// QEMU 7.2's message sequence with REPLY_ACK, rings driven with the virtio
// package's driver side); FuzzMessages fuzzes the message stream with
// descriptors attached; BenchmarkTXPacket measures the back-end's cost per
// packet. A real kernel under QEMU is the harness's business.
package vhostuser
