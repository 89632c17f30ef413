package emu

import (
	"errors"
	"fmt"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// Rings is the guest side of an external world: memory and split virtqueues
// a guest outside the model drives, such as a real kernel behind the
// vhost-user backend.
type Rings struct {
	Mem virtio.Memory
	// Queues are indexed by virtio.QueueRX, QueueTX, QueueEvent; the event
	// queue's may be the zero Layout when the VMM keeps it.
	Queues [3]virtio.Layout
	// State is where the device starts in each ring: the next available
	// index to pop and the used index it last wrote.
	State    [3]virtio.QueueState
	Features uint64 // negotiated ring features
	// Interrupt is called on the world's goroutine with the index of each
	// queue the device pushed buffers to. It must not block.
	Interrupt func(queue int)
}

// NewExternal builds a world without a guest model: the device and the
// host's socket namespace only, for a guest that runs elsewhere and drives
// real rings in real time. The device exists from StartRings to StopRings;
// cfg.Kernel, MemSize, QueueSize and Features do not apply. Guest is nil.
func NewExternal(cfg Config) (*World, error) {
	cfg.defaults()
	cfg.Kernel = ""
	devProf, err := cfg.deviceProfile()
	if err != nil {
		return nil, err
	}
	w := &World{
		Eng:      engine.New(cfg.Seed),
		Host:     uds.NewNamespace(),
		cfg:      cfg,
		devProf:  devProf,
		external: true,
	}
	w.Eng.Logf(engine.KindWorld, "world", "boot: device %s, external guest, cid %d", cfg.Device, cfg.GuestCID)
	return w, nil
}

// External reports whether the world's guest runs outside the model.
func (w *World) External() bool { return w.external }

var errNotExternal = errors.New("the world has a guest model: its rings are its own")

// StartRings builds the device over the external guest's rings. The first
// start builds a fresh device; every later one, after StopRings, rebuilds it
// as a snapshot restore does (device.Restore): a fresh muxer whose port
// allocator follows the profile, so fixed-start profiles begin again at
// 2^30 and persisted ones go on from the last port. The rings' positions
// come from r.State, not from the saved state: the guest may have set up new
// rings in between.
func (w *World) StartRings(r Rings) error {
	if !w.external {
		return errNotExternal
	}
	if w.Dev != nil && !w.suspended {
		return errors.New("start rings: the device is running")
	}
	cfg := device.Config{
		GuestCID:       w.cfg.GuestCID,
		UDSPath:        w.cfg.UDSPath,
		Host:           w.Host,
		Mem:            r.Mem,
		Queues:         r.Queues,
		Features:       r.Features,
		QueueInterrupt: r.Interrupt,
		LogTXShapes:    true,
		LogRXBuffers:   true,
		BufAlloc:       w.cfg.DeviceBufAlloc,
		OnPacket:       w.onPacket,
	}
	if w.Dev == nil {
		dev, err := device.New(w.Eng, w.devProf, cfg)
		if err != nil {
			return fmt.Errorf("start rings: %w", err)
		}
		for i, q := range r.State {
			if r.Queues[i] == (virtio.Layout{}) {
				continue
			}
			if err := dev.SetQueueState(i, q); err != nil {
				_, _ = dev.Snapshot() // unbinds the host socket again
				return fmt.Errorf("start rings: %w", err)
			}
		}
		w.Dev = dev
		w.Eng.Logf(engine.KindWorld, "world", "rings started: device %s", w.cfg.Device)
		w.Dev.Notify(virtio.QueueTX) // whatever the guest queued before
		w.Dev.Notify(virtio.QueueRX)
		return nil
	}
	snap := w.snap
	snap.Queues = r.State
	snap.Features = r.Features
	dev, err := device.Restore(w.Eng, w.devProf, cfg, snap)
	if err != nil {
		return fmt.Errorf("start rings: %w", err)
	}
	w.Dev = dev
	w.suspended = false
	w.cycles++
	w.Eng.Logf(engine.KindWorld, "world", "rings started again (cycle %d): muxer rebuilt, ports per profile %s", w.cycles, w.devProf.Name)
	w.Dev.Notify(virtio.QueueTX)
	w.Dev.Notify(virtio.QueueRX)
	return nil
}

// StopRings stops the device when the guest stops its rings, as a snapshot
// does: the ring positions and the profile's saved state (the port
// allocator) are kept for StartRings, and the device exits with every host
// connection. It returns the positions, which the guest's VMM asks for.
func (w *World) StopRings() ([3]virtio.QueueState, error) {
	if !w.external {
		return [3]virtio.QueueState{}, errNotExternal
	}
	if w.Dev == nil || w.suspended {
		return [3]virtio.QueueState{}, errors.New("stop rings: the device is not running")
	}
	w.Eng.Logf(engine.KindWorld, "world", "rings stopped (cycle %d)", w.cycles+1)
	snap, err := w.Dev.Snapshot()
	if err != nil {
		return [3]virtio.QueueState{}, fmt.Errorf("stop rings: %w", err)
	}
	w.snap = snap
	w.suspended = true
	return snap.Queues, nil
}

// RingsRunning reports whether an external world's device is serving rings.
func (w *World) RingsRunning() bool { return w.external && w.Dev != nil && !w.suspended }

// Kick is a notification of queue q by the external guest; it is dropped
// while the rings are stopped.
func (w *World) Kick(q int) {
	if w.RingsRunning() {
		w.Dev.Notify(q)
	}
}
