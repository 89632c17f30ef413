// Package emu assembles the lab's world: one guest kernel and one vsock
// device sharing guest memory and virtqueues, the host's Unix socket
// namespace the device serves, and the engine that drives them all in
// virtual time. Suspend and Resume snapshot and restore the device the way
// Firecracker does, with the guest frozen in between.
//
// The world is a pure state machine: it never starts goroutines, reads the
// wall clock or does I/O. Programs reach it through the runtime adapter
// (package emu/lab); tests and fuzzers may drive it directly.
package emu

import (
	"fmt"
	"time"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// Config describes a world. Zero values take the defaults noted.
type Config struct {
	Seed      uint64
	Device    string // device profile name (default DefaultDevice)
	Kernel    string // guest kernel profile name (default DefaultKernel)
	GuestCID  uint64 // default 3
	UDSPath   string // default DefaultUDSPath
	QueueSize uint16 // default 256, as Firecracker
	MemSize   int    // guest memory in bytes (default 16 MiB)
	Features  uint64 // negotiated ring features, e.g. virtio.FeatureIndirectDesc
	// MaxConnections overrides the device's connection limit (0 keeps the
	// profile's, 1,023 for every modelled device). No real device has a
	// higher one: it is for scale experiments, and the log says so.
	MaxConnections int
	// LogTXShapes adds each TX packet's descriptor chain shape to the
	// device's packet log line, as the vhost-user back-end logs it, so
	// that a lab run can be set beside a real guest's.
	LogTXShapes bool
	// LogRXBuffers makes the device log the receive buffers the guest
	// posts, as the vhost-user back-end logs them (device.Config).
	LogRXBuffers bool
	// DeviceBufAlloc is the device's buffer per connection, the buf_alloc
	// it advertises (device.Config.BufAlloc; 0: the profile's 64 KiB).
	DeviceBufAlloc uint32
	// Memory, when set, is the guest memory instead of a fresh one: an
	// address space of MemSize bytes at 0, such as one a finished world
	// used. New zeroes what was written to it (virtio.AddressSpace.Zero),
	// so the world boots as on fresh memory, for the cost of the bytes the
	// last world touched rather than of allocating and clearing 16 MiB:
	// for callers that build worlds by the thousand, one after another
	// (emu/lab's Config.RecycleMemory). The memory must belong to no
	// running world.
	Memory *virtio.AddressSpace
}

// DefaultUDSPath is where the device listens for host connections unless
// told otherwise.
const DefaultUDSPath = "/run/vsocklab/v.sock"

// The world's default profiles: the pairing of the incidents' production
// fleet, and the one every tool starts from unless told otherwise.
const (
	DefaultDevice = "firecracker-1.14"
	DefaultKernel = "linux-6.12.68"
)

// WithDefaults returns the configuration with every zero field at its
// default, as New fills them in.
func (c Config) WithDefaults() Config {
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	if c.Kernel == "" {
		c.Kernel = DefaultKernel
	}
	if c.GuestCID == 0 {
		c.GuestCID = 3
	}
	if c.UDSPath == "" {
		c.UDSPath = DefaultUDSPath
	}
	if c.QueueSize == 0 {
		c.QueueSize = 256
	}
	if c.MemSize == 0 {
		c.MemSize = 16 << 20
	}
}

// deviceProfile is the device's profile with the connection limit applied.
func (c *Config) deviceProfile() (device.Profile, error) {
	if c.MaxConnections < 0 {
		return device.Profile{}, fmt.Errorf("connection limit %d: must be positive, or 0 for the device's own", c.MaxConnections)
	}
	p, err := device.LookupProfile(c.Device)
	if err != nil {
		return device.Profile{}, err
	}
	if c.MaxConnections > 0 {
		p.MaxConnections = c.MaxConnections
	}
	return p, nil
}

// World is one microVM with its vsock device and host.
type World struct {
	Eng   *engine.Engine
	Host  *uds.Namespace
	Guest *guest.Kernel
	Dev   *device.Device

	cfg       Config
	devProf   device.Profile
	mem       *virtio.AddressSpace
	queues    [3]virtio.Layout
	suspended bool
	snap      device.Snapshot
	cycles    int
	counters  Counters
	taps      []Tap
	credits   []CreditTap
	external  bool // no guest model: see NewExternal
}

// CreditTap sees every change of a guest socket's credit (guest.Credit),
// with the virtual time.
type CreditTap func(at time.Duration, c guest.Credit)

// Tap sees every packet the device accepts from the guest (GuestToHost)
// and every packet it writes to the guest (HostToGuest), with the virtual
// time. payload is only valid during the call.
type Tap func(at time.Duration, dir device.Dir, h *virtio.Header, payload []byte)

// Counters are the world's own count of what crossed the device, kept for
// cross-checking captures and reports.
type Counters struct {
	Packets [2][8]uint64 // [dir][op]
	RWBytes [2]uint64    // [dir]
}

// New builds a world: guest memory, the three queues, the device bound to
// its Unix socket path, and the guest kernel with its buffers posted.
func New(cfg Config) (*World, error) {
	cfg.defaults()
	devProf, err := cfg.deviceProfile()
	if err != nil {
		return nil, err
	}
	kernProf, err := guest.LookupProfile(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	mem := cfg.Memory
	if mem == nil {
		mem = virtio.NewFlatMemory(0, cfg.MemSize)
	} else if mem.Check(0, uint64(cfg.MemSize)) != nil || mem.Check(uint64(cfg.MemSize), 1) == nil {
		return nil, fmt.Errorf("guest memory: Config.Memory does not span exactly [0, %d), the configured size", cfg.MemSize)
	}
	mem.Zero()
	w := &World{
		Eng:     engine.New(cfg.Seed),
		Host:    uds.NewNamespace(),
		cfg:     cfg,
		devProf: devProf,
		mem:     mem,
	}
	base := uint64(0)
	for q := range w.queues {
		l, n := virtio.ContiguousLayout(base, cfg.QueueSize)
		w.queues[q] = l
		base = (base + n + 4095) &^ 4095
	}
	if base >= uint64(cfg.MemSize) {
		return nil, fmt.Errorf("guest memory of %d bytes cannot hold the queues", cfg.MemSize)
	}
	w.Eng.Logf(engine.KindWorld, "world", "boot: device %s, guest %s, cid %d, seed %d", cfg.Device, cfg.Kernel, cfg.GuestCID, cfg.Seed)
	if cfg.MaxConnections > 0 {
		w.Eng.Logf(engine.KindWorld, "world", "device connection limit set to %d (not a real device's)", cfg.MaxConnections)
	}
	w.Dev, err = device.New(w.Eng, devProf, w.deviceConfig())
	if err != nil {
		return nil, err
	}
	w.Guest, err = guest.New(w.Eng, kernProf, guest.Config{
		CID: cfg.GuestCID, Mem: w.mem, Queues: w.queues, Features: cfg.Features,
		Arena:    guest.Range{Base: base, Size: uint64(cfg.MemSize) - base},
		OnCredit: w.onCredit,
		Notify: func(q int) {
			if w.Dev != nil && !w.suspended {
				w.Dev.Notify(q)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *World) deviceConfig() device.Config {
	return device.Config{
		GuestCID:  w.cfg.GuestCID,
		UDSPath:   w.cfg.UDSPath,
		Host:      w.Host,
		Mem:       w.mem,
		Queues:    w.queues,
		Features:  w.cfg.Features,
		Interrupt: func() { w.Guest.Interrupt() },
		OnPacket:  w.onPacket,

		LogTXShapes:  w.cfg.LogTXShapes,
		LogRXBuffers: w.cfg.LogRXBuffers,
		BufAlloc:     w.cfg.DeviceBufAlloc,
	}
}

func (w *World) onPacket(dir device.Dir, h *virtio.Header, payload []byte) {
	if int(dir) < len(w.counters.Packets) {
		if int(h.Op) < len(w.counters.Packets[dir]) {
			w.counters.Packets[dir][h.Op]++
		}
		if h.Op == virtio.OpRW {
			w.counters.RWBytes[dir] += uint64(len(payload))
		}
	}
	for _, t := range w.taps {
		t(w.Eng.Now(), dir, h, payload)
	}
}

func (w *World) onCredit(c guest.Credit) {
	for _, t := range w.credits {
		t(w.Eng.Now(), c)
	}
}

// AddCreditTap installs a tap on the guest's credit changes (a plot).
func (w *World) AddCreditTap(t CreditTap) { w.credits = append(w.credits, t) }

// AddTap installs a packet tap (a capture, a counter).
func (w *World) AddTap(t Tap) { w.taps = append(w.taps, t) }

// Counters returns the packets and bytes that crossed the device so far.
func (w *World) Counters() Counters { return w.counters }

// Config returns the world's configuration with defaults filled in.
func (w *World) Config() Config { return w.cfg }

// Suspended reports whether the VM is suspended.
func (w *World) Suspended() bool { return w.suspended }

// Cycles returns how many suspend/resume cycles completed.
func (w *World) Cycles() int { return w.cycles }

// Suspend pauses the guest and snapshots the device as Firecracker does:
// the device posts TRANSPORT_RESET on the event queue (the frozen guest
// will see it on resume), then its process is gone with every host-side
// connection. A device no VMM can snapshot (device.Profile.NoSnapshot)
// gives device.ErrSnapshotUnsupported, and the VM keeps running.
func (w *World) Suspend() error {
	if w.external {
		return fmt.Errorf("suspend: the guest is external (StopRings stops its rings)")
	}
	if w.suspended {
		return fmt.Errorf("suspend: already suspended")
	}
	if w.devProf.NoSnapshot {
		return fmt.Errorf("suspend: %s: %w", w.devProf.Name, device.ErrSnapshotUnsupported)
	}
	w.Eng.Logf(engine.KindWorld, "world", "suspend (cycle %d)", w.cycles+1)
	w.Guest.Freeze()
	snap, err := w.Dev.Snapshot()
	if err != nil {
		w.Guest.Thaw() // the VM keeps running
		return fmt.Errorf("suspend: %w", err)
	}
	w.snap = snap
	w.suspended = true
	return nil
}

// Resume restores the device from the snapshot (a fresh muxer whose port
// allocator follows the profile) and thaws the guest, which then handles
// the pending reset event.
func (w *World) Resume() error {
	if w.external {
		return fmt.Errorf("resume: the guest is external (StartRings starts its rings)")
	}
	if !w.suspended {
		return fmt.Errorf("resume: not suspended")
	}
	dev, err := device.Restore(w.Eng, w.devProf, w.deviceConfig(), w.snap)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	w.Dev = dev
	w.suspended = false
	w.cycles++
	w.Eng.Logf(engine.KindWorld, "world", "resume (cycle %d)", w.cycles)
	w.Guest.Thaw()
	return nil
}

// ResetDevice is the guest driver resetting the device in place, as an
// unbind and bind of the virtio device in the guest's sysfs does: the guest
// removes its driver (virtio_vsock_remove resets every connected socket),
// the device is reset (Device.Reset), and the driver probes again with
// fresh rings. A profile whose device cannot be reset gets
// device.ErrResetUnsupported and nothing changes.
func (w *World) ResetDevice() error {
	switch {
	case w.suspended:
		return fmt.Errorf("device reset: the VM is suspended")
	case !w.Dev.Profile().ResetInPlace:
		return fmt.Errorf("device reset: %s: %w", w.Dev.Profile().Name, device.ErrResetUnsupported)
	}
	w.Eng.Logf(engine.KindWorld, "world", "device reset: driver unbound and bound again")
	w.Guest.Remove()
	if err := w.Dev.Reset(); err != nil {
		return fmt.Errorf("device reset: %w", err)
	}
	if err := w.Guest.Probe(); err != nil {
		return fmt.Errorf("device reset: %w", err)
	}
	return nil
}

// RestartDriver is the guest driver unbound and bound again (in the
// guest's sysfs) under a VMM that, on the virtio reset this makes, stops
// the device's rings and starts them again, as QEMU does with a vhost-user
// back-end (GET_VRING_BASE, then the new rings): the guest removes its
// driver (Linux net/vmw_vsock/virtio_transport.c, virtio_vsock_remove:
// every connected socket reset by virtio_vsock_reset_sock, packets not
// yet sent freed), the device stops as at a snapshot but posts no
// TRANSPORT_RESET (the event queue is the VMM's: QEMU's
// hw/virtio/vhost-vsock-common.c keeps it) and exits with its host
// connections, a fresh device is built from what it saved (device.Restore:
// a new muxer, local ports per profile) on rings that start at index 0,
// and the driver probes again (virtio_vsock_probe: fresh rings, receive
// and event buffers posted). This is what emu.World.StartRings and
// StopRings do for an external guest; ResetDevice is the same unbind and
// bind for a device that implements the virtio reset itself.
func (w *World) RestartDriver() error {
	switch {
	case w.external:
		return fmt.Errorf("driver restart: the guest is external (StopRings and StartRings restart its device)")
	case w.suspended:
		return fmt.Errorf("driver restart: the VM is suspended")
	}
	w.Eng.Logf(engine.KindWorld, "world", "driver restart: driver unbound, device rings stopped")
	w.Guest.Remove()
	snap, err := w.Dev.Stop()
	if err != nil {
		return fmt.Errorf("driver restart: %w", err)
	}
	snap.Queues = [3]virtio.QueueState{}
	dev, err := device.Restore(w.Eng, w.devProf, w.deviceConfig(), snap)
	if err != nil {
		return fmt.Errorf("driver restart: %w", err)
	}
	w.Dev = dev
	w.cycles++
	if err := w.Guest.Probe(); err != nil {
		return fmt.Errorf("driver restart: %w", err)
	}
	return nil
}

// RunFor advances virtual time by d, running every event on the way.
func (w *World) RunFor(d time.Duration) { w.Eng.RunUntil(w.Eng.Now() + d) }

// Settle runs the events due now, until the world is quiet at this instant.
func (w *World) Settle() { w.Eng.RunIdle() }
