package device

import (
	"errors"
	"fmt"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// Dir is the direction of a packet through the device.
type Dir uint8

const (
	GuestToHost Dir = iota // taken from the TX queue
	HostToGuest            // written into an RX buffer
)

func (d Dir) String() string { return [...]string{"guest->host", "host->guest"}[d] }

// Config wires a device into a world.
type Config struct {
	GuestCID uint64
	// UDSPath is where the device listens for host-initiated connections;
	// guest-initiated ones connect to UDSPath+"_"+<decimal port>.
	UDSPath string
	Host    *uds.Namespace
	Mem     virtio.Memory
	// Queues are indexed by virtio.QueueRX, QueueTX, QueueEvent. The event
	// queue's may be the zero Layout: the device then has none, as behind
	// QEMU's vhost-user-vsock, which keeps the event queue in the VMM
	// (QEMU hw/virtio/vhost-vsock-common.c, vhost_vsock_common_realize,
	// v7.2.0). Such a device posts no TRANSPORT_RESET and never arms its RX
	// gate, which only an event-queue notify could clear.
	Queues [3]virtio.Layout
	// Features are the negotiated ring features; VIRTIO_F_INDIRECT_DESC is
	// honoured.
	Features uint64
	// Interrupt is called synchronously after the device pushed buffers to a
	// used ring (once per processing run), and by the resume kick. It must
	// only schedule work.
	Interrupt func()
	// QueueInterrupt, if set, replaces Interrupt for a transport with an
	// interrupt per queue (vhost-user's call eventfds): it is called once
	// per queue the run pushed to, with the queue's index, and with
	// virtio.QueueEvent where Interrupt signals the event queue.
	QueueInterrupt func(queue int)
	// LogTXShapes adds each accepted TX packet's chain shape (descriptor
	// lengths, "r44 r32768 r32761") to its log line, as the dropped-chain
	// lines always have it. A real driver's layout is what a vhost-user run
	// is there to show.
	LogTXShapes bool
	// LogRXBuffers logs the receive buffers the driver has posted since the
	// device last looked at the RX ring, whenever it is about to fill
	// buffers: "rx buffers posted: 65 x w3776", one line per run of equal
	// chain shapes. A device that only logs the packets it writes cannot
	// show how many buffers a driver posts, and when it refills.
	LogRXBuffers bool
	// BufAlloc is the device's buffer per connection: the buf_alloc it
	// advertises on every packet, what its credit updates are counted
	// against, and its TX buffer's capacity (Firecracker's
	// CONN_TX_BUF_SIZE, a constant there). 0 keeps TxBufSize; otherwise
	// it must lie in [MinBufAlloc, MaxBufAlloc].
	BufAlloc uint32
	// OnPacket, if set, sees every packet the device accepts from TX and
	// every packet it writes to RX. payload is valid only during the call.
	OnPacket func(dir Dir, h *virtio.Header, payload []byte)
}

// hostListenBacklog is std's UnixListener::bind backlog on Linux (128).
const hostListenBacklog = 128

const comp = "device"

// Device is one vsock device.
type Device struct {
	eng  *engine.Engine
	prof Profile
	cfg  Config
	mem  virtio.Memory
	mux  *muxer

	bufAlloc uint32 // Config.BufAlloc, or TxBufSize
	q        [3]*vq

	gate   bool // RX held until the guest acknowledges a reset (pending_event_ack)
	halted bool // the worker panicked (CH, vhost-device-vsock)
	dead   bool // the process exited (after Snapshot)

	kickRX, kickTX, kickEV bool

	// rxSeen is the RX ring's available index up to which LogRXBuffers
	// has logged the buffers; rxSeenSet is false until the first look.
	rxSeen           uint16
	rxSeenSet        bool
	scheduled, inRun bool
	runFn            func()

	tx      txPacket
	rx      rxBuffer
	rxHdr   virtio.Header
	hdrRaw  [virtio.HeaderLen]byte
	scratch []byte
	tapBuf  []byte // payloadView's gather buffer

	stats      Stats
	violations []Violation

	// dropTX is an injected fault: the next dropTX.n RW packets of at
	// least dropTX.minLen payload bytes are lost (see DropTX).
	dropTX struct {
		n      int
		minLen uint32
	}
}

// New builds a device and binds cfg.UDSPath in cfg.Host (an error if the
// path is taken). The muxer is fresh: no connections, ports per profile.
func New(eng *engine.Engine, p Profile, cfg Config) (*Device, error) {
	if eng == nil || cfg.Mem == nil || cfg.Host == nil {
		return nil, errors.New("device: engine, memory and host namespace are required")
	}
	d := &Device{eng: eng, prof: p, cfg: cfg, mem: cfg.Mem, bufAlloc: txBufSize}
	if cfg.BufAlloc != 0 {
		if cfg.BufAlloc < MinBufAlloc || cfg.BufAlloc > MaxBufAlloc {
			return nil, fmt.Errorf("device: buf_alloc %d outside [%d, %d]", cfg.BufAlloc, MinBufAlloc, MaxBufAlloc)
		}
		d.bufAlloc = cfg.BufAlloc
	}
	if err := d.newQueues(); err != nil {
		return nil, err
	}
	l, err := cfg.Host.Listen(cfg.UDSPath, hostListenBacklog)
	if err != nil {
		return nil, fmt.Errorf("device: bind %s: %w", cfg.UDSPath, err)
	}
	d.runFn = d.run
	d.mux = newMuxer(d, l)
	return d, nil
}

// Profile returns the profile the device was built with.
func (d *Device) Profile() Profile { return d.prof }

// Halted reports whether the device's worker died (a modelled panic).
func (d *Device) Halted() bool { return d.halted }

// Notify is a guest kick of a queue. The work runs in an engine event at the
// current virtual time; kicks before it runs coalesce.
func (d *Device) Notify(queue int) {
	switch queue {
	case virtio.QueueRX:
		d.kickRX = true
	case virtio.QueueTX:
		d.kickTX = true
	case virtio.QueueEvent:
		if d.q[virtio.QueueEvent] == nil {
			d.logf(engine.KindFault, "notify of the event queue ignored: the device has none")
			return
		}
		d.kickEV = true
	default:
		d.logf(engine.KindFault, "notify of unknown queue %d ignored", queue)
		return
	}
	d.wake()
}

// wake makes sure a run will look at what just changed.
func (d *Device) wake() {
	if d.inRun || d.scheduled || d.dead || d.halted {
		return
	}
	d.scheduled = true
	d.eng.Post(d.eng.Now(), d.runFn)
}

// run is one pass of the device's event loop: the queue events, then
// backend notifications until no host socket has anything left to report
// (FC@v1.16.1 event_handler.rs: handle_evq_event, handle_txq_event,
// handle_rxq_event, notify_backend).
func (d *Device) run() {
	d.scheduled = false
	if d.dead || d.halted {
		return
	}
	d.inRun = true
	for !d.halted && d.step() {
	}
	d.inRun = false
	d.finishRun()
}

// step handles one pending event and reports whether there was one.
func (d *Device) step() bool {
	switch {
	case d.kickEV:
		d.kickEV = false
		d.handleEvq()
	case d.kickTX:
		d.kickTX = false
		d.processTX()
		if d.mux.hasPendingRX() {
			d.processRX()
		}
	case d.kickRX:
		d.kickRX = false
		if d.mux.hasPendingRX() {
			d.processRX()
		}
	case d.mux.hasEvents():
		d.mux.handleEvents()
		d.processTX() // the backend may have freed up room for stalled TX
		if d.mux.hasPendingRX() {
			d.processRX()
		}
	default:
		return false
	}
	return true
}

func (d *Device) finishRun() {
	var pushed [3]bool
	some := false
	for i, q := range d.q {
		if q == nil {
			continue
		}
		pushed[i] = q.pushedThisRun
		some = some || q.pushedThisRun
		q.pushedThisRun = false
	}
	d.checkChains()
	if !some {
		return
	}
	if d.cfg.QueueInterrupt == nil {
		d.interrupt(virtio.QueueEvent) // one interrupt line: the queue does not matter
		return
	}
	for i, p := range pushed {
		if p {
			d.interrupt(i)
		}
	}
}

// interrupt raises the interrupt of queue, or the device's one interrupt.
func (d *Device) interrupt(queue int) {
	d.stats.Interrupts++
	switch {
	case d.cfg.QueueInterrupt != nil:
		d.cfg.QueueInterrupt(queue)
	case d.cfg.Interrupt != nil:
		d.cfg.Interrupt()
	}
}

// handleEvq is an event-queue notify: the guest re-posted an event buffer,
// which acknowledges the reset and opens the RX gate (FC@v1.16.1
// event_handler.rs handle_evq_event). Without a gate it does nothing.
func (d *Device) handleEvq() {
	if d.prof.RXGate == RXGateNone {
		return
	}
	if d.gate {
		d.gate = false
		d.logf(engine.KindWorld, "rx gate cleared by event-queue notify")
	}
	if d.mux.hasPendingRX() {
		d.processRX()
	}
}

// halt models a worker panic: the device stops processing for good; its
// host sockets stay open but unserved.
func (d *Device) halt(format string, args ...any) {
	if d.halted {
		return
	}
	d.halted = true
	d.stats.Halts++
	d.logf(engine.KindFault, "device halted: "+format, args...)
}

func (d *Device) logf(k engine.Kind, format string, args ...any) {
	d.eng.Logf(k, comp, format, args...)
}

func opIndex(op virtio.Op) int {
	if op.Known() {
		return int(op)
	}
	return 0
}

// newQueues sets the rings up from index 0, as at creation and after a
// device reset. A zero event-queue layout means the VMM keeps that queue
// (vhost-user: QEMU's vhost-vsock-common.c), so the device has none.
func (d *Device) newQueues() error {
	names := [3]string{"rx", "tx", "event"}
	for i := range d.q {
		if i == virtio.QueueEvent && d.cfg.Queues[i] == (virtio.Layout{}) {
			d.q[i] = nil
			continue
		}
		q, err := newVQ(names[i], d.cfg.Mem, d.cfg.Queues[i], d.cfg.Features)
		if err != nil {
			return fmt.Errorf("device: %s queue: %w", names[i], err)
		}
		d.q[i] = q
	}
	return nil
}
