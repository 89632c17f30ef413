package device

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Snapshot is what a device saves (docs/sources.md#fc-snapshot-state): the rings' positions and,
// where the profile saves them, the port allocator and the RX gate. No
// connection survives.
type Snapshot struct {
	Profile  string
	GuestCID uint64
	UDSPath  string
	Features uint64
	Queues   [3]virtio.QueueState
	// LocalPortLast is saved from v1.15.0 on (PR #5688, VsockBackendState).
	LocalPortLast uint32
	PortsSaved    bool
	// RXGate is saved on FC main only (PR #6100, VsockFrontendState).
	RXGate      bool
	RXGateSaved bool
	// ResetPosted records whether a TRANSPORT_RESET went out (for tests
	// and logs; not device state).
	ResetPosted bool
}

// Snapshot is prepare_save plus save: the TRANSPORT_RESET is posted before
// or after the state is captured, or not at all, per profile (docs/sources.md#fc-reset-event,
// #fc-reset-on-snapshot). Afterwards the device is dead like an exited process: its host
// streams are closed, its listener unbound, and it processes nothing more.
func (d *Device) Snapshot() (Snapshot, error) {
	if d.dead {
		return Snapshot{}, errors.New("device: snapshot of a device that already exited")
	}
	var s Snapshot
	switch d.prof.Reset {
	case ResetBeforeSave:
		posted := d.postReset()
		s = d.capture()
		s.ResetPosted = posted
	case ResetAfterSave:
		s = d.capture()
		s.ResetPosted = d.postReset()
	default:
		s = d.capture()
	}
	d.exit()
	return s, nil
}

// Stop is the device's rings stopped by its VMM on a virtio reset (a
// vhost-user back-end's GET_VRING_BASE): the state is captured as
// Snapshot captures it, but no TRANSPORT_RESET is posted whatever the
// profile (the VMM resets the device; it does not snapshot it), and the
// device exits with every host connection. Restore builds the device that
// serves the next rings.
func (d *Device) Stop() (Snapshot, error) {
	if d.dead {
		return Snapshot{}, errors.New("device: stop of a device that already exited")
	}
	s := d.capture()
	s.RXGate, s.RXGateSaved = false, false // the reset drops a pending ack
	d.logf(engine.KindWorld, "rings stopped by the VMM: no transport reset posted")
	d.exit()
	return s, nil
}

// capture is the state a snapshot saves: the rings' positions and, per
// profile, the port allocator and the RX gate.
func (d *Device) capture() Snapshot {
	s := Snapshot{Profile: d.prof.Name, GuestCID: d.cfg.GuestCID, UDSPath: d.cfg.UDSPath, Features: d.cfg.Features}
	for i, q := range d.q {
		if q != nil {
			s.Queues[i] = q.q.State()
		}
	}
	if d.prof.Ports == PortsPersisted {
		s.LocalPortLast, s.PortsSaved = d.mux.ports.last, true
	}
	if d.prof.RXGate == RXGatePersisted {
		s.RXGate, s.RXGateSaved = d.gate, true
	}
	return s
}

// postReset is send_transport_reset_event (FC@v1.16.1 device.rs): pop one
// event buffer, write u32 0 at its address (no direction or length check),
// return it with its own length, arm the gate, interrupt. With no buffer it
// fails with EmptyQueue and nothing else happens (docs/sources.md#fc-reset-event).
func (d *Device) postReset() bool {
	q := d.q[virtio.QueueEvent]
	if q == nil {
		d.logf(engine.KindWorld, "no transport reset posted: the event queue is the VMM's")
		return false
	}
	st, err := q.pop()
	switch st {
	case popNone, popRing:
		d.stats.ResetEventFails++
		d.logf(engine.KindFault, "Failed to send reset transport event: VsockError(EmptyQueue)")
		if err != nil {
			d.logf(engine.KindFault, "event queue unusable: %v", err)
		}
		return false
	case popBadHead:
		d.leak(q, q.view.head, err.Error())
		d.stats.ResetEventFails++
		return false
	}
	head := q.view.head
	var addr uint64
	var n uint32
	if len(q.view.descs) > 0 {
		addr, n = q.view.descs[0].addr, q.view.descs[0].n
	}
	var ev [virtio.EventLen]byte
	binary.LittleEndian.PutUint32(ev[:], uint32(virtio.EventTransportReset))
	if err := d.mem.WriteAt(ev[:], addr); err != nil {
		d.logf(engine.KindFault, "Failed to write virtio vsock reset event: %v", err)
	}
	d.pushUsed(q, head, n)
	q.pushedThisRun = false
	d.stats.ResetEvents++
	d.logf(engine.KindWorld, "transport reset posted on event buffer %d", head)
	if d.prof.RXGate != RXGateNone {
		d.gate = true
	}
	d.interrupt(virtio.QueueEvent)
	return true
}

// exit closes every host socket and stops all processing.
func (d *Device) exit() {
	d.dead = true
	d.mux.exit()
	d.logf(engine.KindWorld, "device exited: host sockets closed, %s unbound", d.cfg.UDSPath)
}

// Restore builds a device from a snapshot: a fresh muxer (no connections,
// listener bound again), ring positions restored, the port allocator per
// profile, and the resume kick scheduled at the current virtual time (see
// docs/sources.md#fc-snapshot-state, #fc-persisted-ports, #fc-fly-random-port).
func Restore(eng *engine.Engine, p Profile, cfg Config, s Snapshot) (*Device, error) {
	d, err := New(eng, p, cfg)
	if err != nil {
		return nil, err
	}
	if s.Profile != "" && s.Profile != p.Name {
		d.logf(engine.KindWorld, "restoring a %s snapshot with profile %s", s.Profile, p.Name)
	}
	for i, q := range d.q {
		if q == nil {
			continue
		}
		if s.Queues[i].LastAvail-s.Queues[i].UsedIdx > q.l.Size {
			return nil, fmt.Errorf("device: snapshot %s queue: %d chains in flight exceed the queue size", q.name, s.Queues[i].LastAvail-s.Queues[i].UsedIdx)
		}
		q.q.SetState(s.Queues[i])
	}
	if p.Ports == PortsPersisted && s.PortsSaved {
		d.mux.ports.last = s.LocalPortLast // written back after the new muxer is built
	}
	if p.RXGate == RXGatePersisted && s.RXGateSaved && d.q[virtio.QueueEvent] != nil {
		d.gate = s.RXGate
	}
	d.logf(engine.KindWorld, "device restored (%s): local_port_last %d", p.Name, d.mux.ports.last)
	// The kick runs as an event at the current virtual time rather than
	// inside Restore, so that it finds the caller's world resumed: the new
	// device installed and the guest thawed, as when Firecracker resumes the
	// restored VM.
	eng.After(0, d.Resume)
	return d, nil
}

// Resume is the device's kick() on resume, called by Restore and to be
// called by the world after a bare pause/resume (FC@v1.14.0, FC@v1.16.1,
// FC@main device.rs kick; docs/sources.md#fc-reset-on-snapshot, #fc-rx-gate).
func (d *Device) Resume() {
	if d.dead || d.halted {
		return
	}
	signal := d.prof.ResumeSignalsEventQueue
	gate := d.prof.RXGate
	if d.q[virtio.QueueEvent] == nil {
		// Nothing could clear the gate, and there is no queue to signal.
		signal, gate = false, RXGateNone
	}
	switch gate {
	case RXGateArmedOnKick:
		d.gate = true // v1.16.x: even when no reset was published
		d.logf(engine.KindWorld, "rx gate armed by resume kick")
	case RXGatePersisted:
		signal = signal && d.gate
	}
	if signal {
		d.logf(engine.KindWorld, "resume kick: signaling event queue")
		d.interrupt(virtio.QueueEvent)
	}
	if d.prof.ResumeReplaysTX {
		d.logf(engine.KindWorld, "resume kick: notifying tx queue")
		d.kickTX = true
		d.wake()
	}
}

// ErrResetUnsupported is what a device reset gives on a profile whose
// VirtioDevice::_reset still returns false (Firecracker before c4fdd7c90,
// every released version).
var ErrResetUnsupported = errors.New("device: this device cannot be reset (VirtioDevice::_reset returns false)")

// ErrSnapshotUnsupported is what suspending a VM gives on a profile whose
// VMM cannot snapshot it (Profile.NoSnapshot).
var ErrSnapshotUnsupported = errors.New("device: no VMM can snapshot a VM with this device")

// Reset is a virtio device reset (the driver writes status 0, as when it
// unbinds and binds again) as Firecracker main implements it (c4fdd7c90
// "virtio: vsock: Implement device reset": device.rs _reset and
// unix/muxer.rs VsockBackend::reset): every connection is dropped and its
// host stream closed, host streams still sending their CONNECT line too;
// the RX and kill queues start empty; local_port_set is cleared and
// local_port_last goes back to 2^30 - 1, whatever the profile saved across
// snapshots; the pending event ack (RX gate) is cleared. The host socket
// stays bound. The rings start again from index 0 when the driver sets
// them up. Profiles without Profile.ResetInPlace give ErrResetUnsupported.
func (d *Device) Reset() error {
	switch {
	case !d.prof.ResetInPlace:
		return ErrResetUnsupported
	case d.dead:
		return errors.New("device: reset of a device that already exited")
	}
	m := d.mux
	dropped := len(m.conns)
	m.dropConnections()
	m.rxq = rxQueue{synced: true}
	m.killq = killQueue{synced: true}
	clear(m.ports.used)
	m.ports.last = 1<<30 - 1
	d.gate = false
	if err := d.newQueues(); err != nil {
		return fmt.Errorf("device: reset: %w", err)
	}
	d.kickRX, d.kickTX, d.kickEV = false, false, false
	d.rxSeenSet = false
	d.stats.Resets++
	d.logf(engine.KindWorld, "device reset: %d connections dropped, local_port_last = %d", dropped, m.ports.last)
	return nil
}

// SetQueueState places the device in a ring the guest already used: the
// next available index to pop and the used index last written, as a
// transport that starts a device on existing rings (vhost-user's
// SET_VRING_BASE) must. It fails when more chains would be in flight than
// the ring holds.
func (d *Device) SetQueueState(queue int, s virtio.QueueState) error {
	if queue < 0 || queue >= len(d.q) || d.q[queue] == nil {
		return fmt.Errorf("device: no queue %d", queue)
	}
	q := d.q[queue]
	if s.LastAvail-s.UsedIdx > q.l.Size {
		return fmt.Errorf("device: %s queue: %d chains in flight exceed the queue size", q.name, s.LastAvail-s.UsedIdx)
	}
	q.q.SetState(s)
	if queue == virtio.QueueRX {
		d.rxSeenSet = false
	}
	return nil
}
