package device

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// FC@v1.16.1 device.rs test_prepare_save_emits_transport_reset_when_active
// and test_send_transport_reset_event_sets_pending_event_ack (notes 5.1):
// the snapshot posts TRANSPORT_RESET (id 0, used with the buffer's own
// length) and interrupts; then the device is gone like an exited process.
func TestSnapshotPostsTransportReset(t *testing.T) {
	r := newRig(t, "firecracker-1.16", 4)
	s := r.guestConnect(r.listen(1024), 1024, 2000)
	irqs := r.irqs
	snap := r.snapshot()
	require.True(t, snap.ResetPosted)
	require.Equal(t, []uint32{uint32(virtio.EventTransportReset)}, r.reapEvents())
	require.Equal(t, irqs+1, r.irqs)
	require.True(t, r.dev.Muxer().RXGate, "pending_event_ack set")

	require.True(t, s.PeerClosed(), "host streams closed")
	require.False(t, r.ns.Lookup(udsPath), "listener unbound")
	used := len(r.txUsed)
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("nobody home"))
	require.Len(t, r.txUsed, used, "a dead device processes nothing")
}

// FC@v1.16.1 device.rs test_send_transport_reset_event_empty_queue (notes
// 5.1): with no event buffer the reset fails with EmptyQueue, is logged,
// counted, and the RX gate is not armed.
func TestSnapshotWithEmptyEventQueue(t *testing.T) {
	r := newRig(t, "firecracker-1.16", 4, withEvents(0))
	snap := r.snapshot()
	require.False(t, snap.ResetPosted)
	require.Equal(t, uint64(1), r.stats().ResetEventFails)
	require.Contains(t, r.log(), "Failed to send reset transport event: VsockError(EmptyQueue)")
	require.False(t, r.dev.Muxer().RXGate)
}

// Cloud Hypervisor's snapshot() only serialises state: no TRANSPORT_RESET
// (CH@v50.0 device.rs; no reset event anywhere in vsock/).
func TestCloudHypervisorSnapshotPostsNoReset(t *testing.T) {
	r := newRig(t, "cloud-hypervisor-50", 4)
	snap := r.snapshot()
	require.False(t, snap.ResetPosted)
	require.Empty(t, r.reapEvents())
}

// FC v1.5.1..v1.9.x (src/vmm/src/device_manager/persist.rs; notes 5.2):
// the reset goes out after the state was saved, so the saved event queue
// predates it, and nothing re-signals the guest on resume.
func TestResetAfterSaveIsNotSignalledOnResume(t *testing.T) {
	r := newRig(t, "firecracker-1.5", 4, withRXShape(44, 4096))
	snap := r.snapshot()
	require.True(t, snap.ResetPosted)
	require.Equal(t, virtio.QueueState{}, snap.Queues[virtio.QueueEvent], "saved before the event buffer was used")
	irqs := r.irqs
	r.restore(snap)
	require.Equal(t, irqs, r.irqs, "no kick")

	r14 := newRig(t, "firecracker-1.14", 4)
	snap = r14.snapshot()
	require.Equal(t, virtio.QueueState{LastAvail: 1, UsedIdx: 1}, snap.Queues[virtio.QueueEvent])
	irqs = r14.irqs
	r14.restore(snap)
	require.Equal(t, irqs+1, r14.irqs, "v1.10+: the resume kick signals the event queue")
}

// Ports after restore, by profile (notes 4.3, 5.5, 5.6; FC@v1.15.0
// persist.rs test_persist_uds_backend; superfly PR #7; VD@d7ec5e4
// allocate_local_port): three host connections, snapshot, restore, and the
// first port handed out after it.
func TestPortAllocatorAfterRestore(t *testing.T) {
	const seed = 42
	rng := engine.New(seed).Rand()
	bootStart := rng.Uint32()&^(1<<31) | 1<<30
	restoreStart := rng.Uint32()&^(1<<31) | 1<<30
	next := func(last uint32) uint32 { return (last+1)&^(1<<31) | 1<<30 }

	for _, c := range []struct {
		prof        string
		firstAtBoot uint32
		afterRest   uint32
	}{
		{"firecracker-1.14", 1 << 30, 1 << 30},
		{"cloud-hypervisor-50", 1 << 30, 1 << 30},
		{"firecracker-1.15", 1 << 30, 1<<30 + 3},
		{"firecracker-1.16", 1 << 30, 1<<30 + 3},
		{"firecracker-fly", next(bootStart), next(restoreStart)},
		{"vhost-device-vsock", 0, 0},
	} {
		t.Run(c.prof, func(t *testing.T) {
			r := newRig(t, c.prof, 8, withSeed(seed))
			var ports []uint32
			for peer := uint32(52); peer < 55; peer++ {
				r.hostDial("CONNECT 52\n")
				ports = append(ports, r.recvOne().hdr.SrcPort)
			}
			require.Equal(t, []uint32{c.firstAtBoot, c.firstAtBoot + 1, c.firstAtBoot + 2}, ports)
			r.restore(r.snapshot())
			r.reapEvents()
			r.notify(virtio.QueueEvent) // acknowledge the reset where a gate holds RX
			r.hostDial("CONNECT 52\n")
			require.Equal(t, c.afterRest, r.recvOne().hdr.SrcPort)
		})
	}
}

// FC@v1.16.1 event_handler.rs test_pending_event_ack_gates_rx,
// test_pending_event_ack_gates_txq_drain and
// test_evq_event_clears_flag_without_pending_rx (notes 5.3): after restore
// RX is held until the guest notifies the event queue; TX still drains.
func TestRXGateHeldUntilEventQueueNotify(t *testing.T) {
	r := newRig(t, "firecracker-1.16", 4)
	r.restore(r.snapshot())
	require.True(t, r.dev.Muxer().RXGate)
	r.listen(1024)
	r.send(hdr(virtio.OpRequest, 2000, 1024), nil)
	require.Equal(t, uint64(1), r.stats().TXPackets, "TX is not gated")
	r.expectNothing()
	require.NotZero(t, r.stats().RXGateHeld)

	r.reapEvents()
	r.postEvent(evArea) // Linux re-posts the event buffer and kicks
	r.notify(virtio.QueueEvent)
	require.False(t, r.dev.Muxer().RXGate)
	r.expect(virtio.OpResponse, 1024, 2000)
}

// FC v1.16.x arms the gate on every kick, so a bare pause/resume (no reset
// published, nothing for the guest to acknowledge) blocks host->guest
// traffic for good; FC main persists the gate and leaves a bare resume
// ungated (PR #6100; FC@v1.16.1 device.rs
// test_kick_when_active_arms_pending_event_ack, FC@main
// test_bare_resume_kick_leaves_rx_ungated).
func TestBareResumeGate(t *testing.T) {
	for prof, held := range map[string]bool{"firecracker-1.16": true, "firecracker-main": false, "firecracker-1.15": false} {
		t.Run(prof, func(t *testing.T) {
			r := newRig(t, prof, 4)
			r.dev.Resume()
			r.run()
			r.hostDial("CONNECT 52\n")
			ps := r.recv()
			if held {
				require.Empty(t, ps)
				require.True(t, r.dev.Muxer().RXGate)
			} else {
				require.Len(t, ps, 1)
				require.Equal(t, virtio.OpRequest, ps[0].hdr.Op)
			}
		})
	}
}

// FC main saves the gate: a snapshot whose reset was never acknowledged
// restores gated, and the kick re-signals the event queue only then
// (notes 5.3; FC@main persist.rs test_persist_pending_event_ack).
func TestPersistedGateSurvivesRestore(t *testing.T) {
	r := newRig(t, "firecracker-main", 4)
	snap := r.snapshot()
	require.True(t, snap.RXGateSaved)
	require.True(t, snap.RXGate)
	irqs := r.irqs
	r.restore(snap)
	require.True(t, r.dev.Muxer().RXGate)
	require.Equal(t, irqs+1, r.irqs)
}

// FC v1.16.1 (PR #5958; FC@v1.16.1 device.rs
// test_kick_replays_tx_notification_only): a TX chain the guest kicked just
// before the snapshot is processed after restore; v1.15 leaves it until the
// guest kicks again.
func TestResumeReplaysTX(t *testing.T) {
	for prof, replayed := range map[string]bool{"firecracker-1.16": true, "firecracker-1.15": false} {
		t.Run(prof, func(t *testing.T) {
			r := newRig(t, prof, 4)
			r.listen(1024)
			h := hdr(virtio.OpRequest, 2000, 1024)
			r.addTX(r.layTX(h, nil, []uint32{44}))
			r.dev.Notify(virtio.QueueTX) // the run never happens: the snapshot comes first
			snap := r.snapshot()
			r.restore(snap)
			if replayed {
				require.Equal(t, uint64(1), r.stats().TXPackets)
			} else {
				require.Zero(t, r.stats().TXPackets)
				r.notify(virtio.QueueTX)
				require.Equal(t, uint64(1), r.stats().TXPackets)
			}
		})
	}
}

// No connection survives a restore and no RST is sent for the old ones: the
// guest learns only from the reset event (notes 5.4).
func TestRestoreStartsWithNoConnections(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 4)
	r.guestConnect(r.listen(1024), 1024, 2000)
	r.restore(r.snapshot())
	require.Empty(t, r.conns())
	r.expectNothing()
	r.send(hdr(virtio.OpRW, 2000, 1024), []byte("old"))
	r.expect(virtio.OpRST, 1024, 2000)
}

// FC main c4fdd7c90 (device.rs _reset, unix/muxer.rs VsockBackend::reset):
// a virtio reset drops every connection, closing its host stream, and
// sets local_port_last back to 2^30 - 1, so the next host connection gets
// 1073741824 again although the profile persists ports across snapshots.
// Released versions cannot be reset.
func TestDeviceResetDropsConnectionsAndRestartsPorts(t *testing.T) {
	r := newRig(t, "firecracker-main", 8)
	first, p1 := r.hostConnect(10000)
	require.Equal(t, uint32(1<<30), p1)
	_, p2 := r.hostConnect(10001)
	require.Equal(t, uint32(1<<30+1), p2)
	require.Len(t, r.conns(), 2)

	require.NoError(t, r.dev.Reset())
	require.Empty(t, r.conns())
	_, err := first.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the host stream was closed")
	require.Equal(t, uint64(1), r.stats().Resets)
	require.Contains(t, r.log(), "device reset: 2 connections dropped, local_port_last = 1073741823")

	for _, prof := range []string{"firecracker-1.15", "firecracker-1.16", "cloud-hypervisor-51"} {
		r := newRig(t, prof, 1)
		require.ErrorIs(t, r.dev.Reset(), ErrResetUnsupported, prof)
	}
}
