// Package guest models a Linux guest kernel's vsock stack over a virtio-vsock
// device: the socket tables and their lookup rule, connect/accept/shutdown/
// close, per-socket credit, transport resets, and the virtio driver side of
// the three queues, laying packets out over descriptors as each kernel era
// does. Profiles (profile.go) select the era's behaviour.
//
// Sources: net/vmw_vsock/af_vsock.c, virtio_transport_common.c and
// virtio_transport.c; the rules and their commits are in
// docs/sources.md#linux. The model is pure: no goroutines, no clock but the
// engine's, no I/O.
package guest

import (
	"cmp"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// Range is a span of guest physical memory.
type Range struct {
	Base, Size uint64
}

// Config places the kernel in guest memory.
type Config struct {
	CID      uint64
	Mem      virtio.Memory
	Queues   [3]virtio.Layout // indexed by virtio.QueueRX, QueueTX, QueueEvent
	Features uint64           // negotiated ring features
	Arena    Range            // where receive, event and transmit buffers live
	// Notify kicks the device's queue. It is called synchronously and must
	// only schedule work.
	Notify func(queue int)
	// OnCredit, when set, sees every change of a connected socket's credit
	// (see Credit), at the engine's current time. It is called
	// synchronously and must not call back into the kernel.
	OnCredit func(Credit)
}

// eventBuffers is how many event buffers the driver posts.
const eventBuffers = 8

// Kernel is one guest's vsock stack.
type Kernel struct {
	eng *engine.Engine
	p   Profile
	cfg Config
	cid uint64
	mem virtio.Memory

	rxq, txq, evq *virtio.Driver
	arena         *arena

	rxSlots    []uint64 // receive buffer addresses
	rxFree     []int    // slots not posted
	rxByHead   []int    // head -> slot+1
	rxPosted   int
	rxPeak     int
	evSlots    [eventBuffers]uint64
	evByHead   []int // head -> slot+1
	txByHead   []*txPkt
	sendQ      []*txPkt
	pktPool    []*txPkt
	skbBufPool [][]byte
	scratch    []byte

	bound     map[uint32]*Socket
	connected map[connKey]*Socket
	sockets   []*Socket // every socket the kernel still knows, by creation
	nextID    int
	nextPipe  int

	portCounter uint32

	frozen       bool
	irqPending   bool
	irqScheduled bool
	irqFn        func() // k.handleIRQ, bound once: a method value allocates
	timers       []*kTimer
	rxRetry      *kTimer

	// Wake is called with a *Socket or *Pipe whose readiness may have
	// changed (sk_data_ready, sk_write_space, sk_state_change,
	// sk_error_report). It must only schedule work.
	Wake func(obj any)

	stats Stats
}

// Stats counts what the kernel did.
type Stats struct {
	TXPackets, RXPackets   uint64
	TXBytes, RXBytes       uint64 // RW payload
	RXDropped              uint64 // used buffers dropped by the driver's checks
	RWDropped              uint64 // RW packets dropped by a socket's receive limit
	OverflowResets         uint64
	TransportResets        uint64
	RSTSent, RSTReceived   uint64
	SendQueuePeak          int
	ArenaExhausted         uint64
	UsedRingErrors         uint64
	EventBuffersIgnored    uint64
	RequestsOnResetSockets uint64 // REQUESTs answered with RST by a reset, unclosed socket
}

type connKey struct {
	remoteCID  uint32
	remotePort uint32
	localPort  uint32
}

func keyOf(s *Socket) connKey {
	return connKey{remoteCID: uint32(s.remote.CID), remotePort: s.remote.Port, localPort: s.local.Port}
}

// hashConnected puts s in the connected table (vsock_insert_connected).
func (k *Kernel) hashConnected(s *Socket) {
	s.connected = true
	k.connected[keyOf(s)] = s
}

// unhashConnected takes s out of the connected table if it is there
// (vsock_remove_connected).
func (k *Kernel) unhashConnected(s *Socket) {
	if s.connected {
		delete(k.connected, keyOf(s))
		s.connected = false
	}
}

// New builds the kernel's driver side: rings initialised, receive buffers
// and eight event buffers posted, the device notified.
func New(eng *engine.Engine, p Profile, cfg Config) (*Kernel, error) {
	k := &Kernel{
		eng: eng, p: p, cfg: cfg, cid: cfg.CID, mem: cfg.Mem,
		bound:     map[uint32]*Socket{},
		connected: map[connKey]*Socket{},
		scratch:   make([]byte, virtio.HeaderLen),
	}
	k.irqFn = k.handleIRQ
	var err error
	if k.rxq, err = virtio.NewDriver(cfg.Mem, cfg.Queues[virtio.QueueRX], cfg.Features); err != nil {
		return nil, fmt.Errorf("guest rx queue: %w", err)
	}
	if k.txq, err = virtio.NewDriver(cfg.Mem, cfg.Queues[virtio.QueueTX], cfg.Features); err != nil {
		return nil, fmt.Errorf("guest tx queue: %w", err)
	}
	if k.evq, err = virtio.NewDriver(cfg.Mem, cfg.Queues[virtio.QueueEvent], cfg.Features); err != nil {
		return nil, fmt.Errorf("guest event queue: %w", err)
	}
	if err := cfg.Mem.Check(cfg.Arena.Base, cfg.Arena.Size); err != nil {
		return nil, fmt.Errorf("guest arena: %w", err)
	}
	k.rxByHead = make([]int, cfg.Queues[virtio.QueueRX].Size)
	k.evByHead = make([]int, cfg.Queues[virtio.QueueEvent].Size)
	k.txByHead = make([]*txPkt, cfg.Queues[virtio.QueueTX].Size)

	// Receive buffers: as many as the ring holds (virtio_vsock_rx_fill adds
	// until the ring is full), each the profile's layout, packed at the
	// start of the arena; then the event buffers; the rest is for TX.
	perBuf := uint64(0)
	for _, l := range p.RX.bufs() {
		perBuf += rxSpan(l)
	}
	nrx := int(cfg.Queues[virtio.QueueRX].Size) / len(p.RX.bufs())
	rxBytes := perBuf * uint64(nrx)
	if rxBytes+eventBuffers*64 >= cfg.Arena.Size {
		return nil, fmt.Errorf("guest arena of %d bytes cannot hold %d receive buffers", cfg.Arena.Size, nrx)
	}
	for i := 0; i < nrx; i++ {
		k.rxSlots = append(k.rxSlots, cfg.Arena.Base+uint64(i)*perBuf)
		k.rxFree = append(k.rxFree, nrx-1-i)
	}
	for i := range k.evSlots {
		k.evSlots[i] = cfg.Arena.Base + rxBytes + uint64(i)*64
	}
	txBase := cfg.Arena.Base + rxBytes + eventBuffers*64
	k.arena = newArena(txBase, cfg.Arena.Base+cfg.Arena.Size-txBase)

	k.fillRX()
	for i := range k.evSlots {
		if err := k.postEvent(i); err != nil {
			return nil, err
		}
	}
	k.notify(virtio.QueueRX)
	k.notify(virtio.QueueEvent)
	return k, nil
}

// Profile returns the kernel's profile.
func (k *Kernel) Profile() Profile { return k.p }

// CID returns the guest's context ID.
func (k *Kernel) CID() uint64 { return k.cid }

// Stats returns the kernel's counters.
func (k *Kernel) Stats() Stats { return k.stats }

func (k *Kernel) notify(q int) {
	if k.cfg.Notify != nil {
		k.cfg.Notify(q)
	}
}

func (k *Kernel) wake(obj any) {
	if k.Wake != nil {
		k.Wake(obj)
	}
}

func (k *Kernel) logConn(format string, args ...any) {
	k.eng.Logf(engine.KindConn, "guest", format, args...)
}

func (k *Kernel) logFault(format string, args ...any) {
	k.eng.Logf(engine.KindFault, "guest", format, args...)
}

// --- receive buffers -------------------------------------------------------

// rxSpan is the room one receive descriptor of l bytes takes in the arena:
// descriptors start on 64-byte boundaries.
func rxSpan(l uint32) uint64 { return (uint64(l) + 63) &^ 63 }

func (k *Kernel) fillRX() {
	var bufs [2]virtio.Buffer
	lens := k.p.RX.bufs()
	for len(k.rxFree) > 0 && k.rxq.NumFree() >= len(lens) {
		slot := k.rxFree[len(k.rxFree)-1]
		addr := k.rxSlots[slot]
		for i, l := range lens {
			bufs[i] = virtio.Buffer{Addr: addr, Len: l, Write: true}
			addr += rxSpan(l)
		}
		head, err := k.rxq.Add(bufs[:len(lens)])
		if err != nil {
			k.logFault("posting a receive buffer failed: %v", err)
			return
		}
		k.rxFree = k.rxFree[:len(k.rxFree)-1]
		k.rxByHead[head] = slot + 1
		k.rxPosted++
	}
	k.rxPeak = max(k.rxPeak, k.rxPosted)
}

func (k *Kernel) postEvent(slot int) error {
	head, err := k.evq.Add([]virtio.Buffer{{Addr: k.evSlots[slot], Len: virtio.EventLen, Write: true}})
	if err != nil {
		return fmt.Errorf("guest event buffer: %w", err)
	}
	k.evByHead[head] = slot + 1
	return nil
}

// --- interrupts ------------------------------------------------------------

// Interrupt is the device's used-buffer notification. The kernel handles it
// in an event at the current virtual time (its workers), or after Thaw when
// the guest is frozen.
func (k *Kernel) Interrupt() {
	if k.frozen {
		k.irqPending = true
		return
	}
	if k.irqScheduled {
		return
	}
	k.irqScheduled = true
	k.eng.Post(k.eng.Now(), k.irqFn)
}

// handleIRQ runs the three workers in queue order: receive, transmit
// completions, events (vp_vring_interrupt walks the queues in index order).
func (k *Kernel) handleIRQ() {
	k.irqScheduled = false
	if k.frozen {
		k.irqPending = true
		return
	}
	k.reapRX()
	k.reapTX()
	k.reapEvents()
}

// rxRetryDelay is how long the kernel waits before re-posting receive
// buffers when every buffer the device returned was dropped. Linux re-posts
// at once, and against a device that rejects every buffer (Firecracker
// before v1.6 with single-descriptor buffers, issue #4284) the two spin at
// one instant forever; the lab lets virtual time pass between rounds so the
// rest of the world still runs, and logs each round once. The delay is the
// lab's, not Linux's: 100 ms rather than 10 ms makes such a world ten times
// cheaper to run (it was most of a fuzzing campaign's CPU) and changes no
// outcome, only how many rounds a timeline counts.
const rxRetryDelay = 100 * time.Millisecond

func (k *Kernel) reapRX() {
	got, valid := 0, 0
	var firstDrop rxDrop
	for {
		head, used, ok, err := k.rxq.PopUsed()
		if err != nil {
			k.stats.UsedRingErrors++
			k.logFault("rx used ring: %v", err)
			if !ok {
				break
			}
			continue
		}
		if !ok {
			break
		}
		got++
		slot := k.rxByHead[head] - 1
		k.rxByHead[head] = 0
		k.rxPosted--
		if why := k.receiveBuffer(k.rxSlots[slot], used); why.kind == rxKept {
			valid++
		} else if firstDrop.kind == rxKept {
			firstDrop = why
		}
		k.rxFree = append(k.rxFree, slot)
	}
	if got > valid {
		k.logFault("rx: %d of %d used buffers dropped (%s)", got-valid, got, firstDrop)
	}
	if got == 0 || k.rxPosted >= k.rxPeak/2 {
		return
	}
	if valid == 0 {
		if k.rxRetry == nil || k.rxRetry.dead {
			k.rxRetry = k.after(rxRetryDelay, func() {
				k.fillRX()
				k.notify(virtio.QueueRX)
			})
		}
		return
	}
	k.fillRX()
	k.notify(virtio.QueueRX)
}

// rxDrop is why the driver dropped a used receive buffer (kind rxKept:
// it did not). It is formatted only when a round's first drop is logged:
// against a device that rejects every buffer, formatting each one cost
// two fifths of a fuzzed world's CPU.
type rxDrop struct {
	kind int
	a, b uint32
	err  error
}

const (
	rxKept = iota
	rxBadUsedLen
	rxUnreadable
	rxHdrLenOver
	rxPayloadUnreadable
)

func (d rxDrop) String() string {
	switch d.kind {
	case rxBadUsedLen:
		return fmt.Sprintf("used length %d outside [44, %d]", d.a, d.b)
	case rxUnreadable:
		return fmt.Sprintf("unreadable: %v", d.err)
	case rxHdrLenOver:
		return fmt.Sprintf("hdr.len %d over the %d bytes written", d.a, d.b)
	case rxPayloadUnreadable:
		return fmt.Sprintf("payload unreadable: %v", d.err)
	}
	return ""
}

// receiveBuffer applies the driver's checks to one used receive buffer and
// hands its packet to the socket layer (virtio_transport_rx_work).
func (k *Kernel) receiveBuffer(addr uint64, used uint32) rxDrop {
	lens := k.p.RX.bufs()
	total := uint32(0)
	for _, l := range lens {
		total += l
	}
	if used < virtio.HeaderLen || used > total {
		k.stats.RXDropped++
		return rxDrop{kind: rxBadUsedLen, a: used, b: total}
	}
	if err := k.mem.ReadAt(k.scratch[:virtio.HeaderLen], addr); err != nil {
		k.stats.RXDropped++
		return rxDrop{kind: rxUnreadable, err: err}
	}
	hdr, _ := virtio.DecodeHeader(k.scratch)
	payloadAddr := addr + virtio.HeaderLen
	room := total - virtio.HeaderLen
	if len(lens) == 2 {
		payloadAddr = addr + rxSpan(lens[0])
	}
	n := hdr.Len
	if n > used-virtio.HeaderLen {
		if k.p.RXHdrLenCheck {
			k.stats.RXDropped++
			return rxDrop{kind: rxHdrLenOver, a: hdr.Len, b: used - virtio.HeaderLen}
		}
		// Before 0dab92484474 the length was trusted; what lies past the
		// written bytes is whatever the buffer held.
		k.logFault("rx hdr.len %d over the %d bytes written: trusted (no 0dab92484474)", hdr.Len, used-virtio.HeaderLen)
		n = min(n, room)
	}
	var payload []byte
	if n > 0 {
		payload = k.getSkbBuf(int(n))
		if err := k.mem.ReadAt(payload, payloadAddr); err != nil {
			k.putSkbBuf(payload)
			k.stats.RXDropped++
			return rxDrop{kind: rxPayloadUnreadable, err: err}
		}
	}
	k.stats.RXPackets++
	if hdr.Op == virtio.OpRW {
		k.stats.RXBytes += uint64(n)
	}
	k.recvPkt(&hdr, payload)
	return rxDrop{}
}

func (k *Kernel) reapEvents() {
	got := false
	for {
		head, used, ok, err := k.evq.PopUsed()
		if err != nil {
			k.stats.UsedRingErrors++
			k.logFault("event used ring: %v", err)
			if !ok {
				break
			}
			continue
		}
		if !ok {
			break
		}
		got = true
		slot := k.evByHead[head] - 1
		k.evByHead[head] = 0
		if used != virtio.EventLen {
			k.stats.EventBuffersIgnored++
			k.logFault("event buffer with used length %d ignored", used)
		} else if err := k.mem.ReadAt(k.scratch[:virtio.EventLen], k.evSlots[slot]); err == nil {
			id, _ := virtio.DecodeEvent(k.scratch)
			if id == virtio.EventTransportReset {
				k.transportReset()
			}
		}
		if err := k.postEvent(slot); err != nil {
			k.logFault("%v", err)
		}
	}
	if got {
		k.notify(virtio.QueueEvent)
	}
}

// transportReset is virtio_vsock_reset_sock for every connected socket:
// TCP_CLOSE, sk_err = ECONNRESET, an error report. No packet is sent,
// SOCK_DONE is not set and nothing leaves any table (docs/sources.md#linux-transport-reset).
func (k *Kernel) transportReset() {
	k.stats.TransportResets++
	keys := make([]connKey, 0, len(k.connected))
	for key := range k.connected {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, cmpKey)
	k.logConn("TRANSPORT_RESET: %d connected sockets reset", len(keys))
	for _, key := range keys {
		s := k.connected[key]
		s.state = StateClose
		s.err = syscall.ECONNRESET
		k.wake(s)
	}
}

func cmpKey(a, b connKey) int {
	return cmp.Or(cmp.Compare(a.localPort, b.localPort), cmp.Compare(a.remoteCID, b.remoteCID), cmp.Compare(a.remotePort, b.remotePort))
}

// --- freezing --------------------------------------------------------------

// kTimer is a kernel timer that stops while the guest is frozen: guest
// time does not pass while the VM is suspended.
type kTimer struct {
	t         *engine.Timer
	fn        func()
	remaining time.Duration
	dead      bool
}

func (k *Kernel) after(d time.Duration, fn func()) *kTimer {
	if len(k.timers) == cap(k.timers) {
		// Forget fired and stopped timers before the list grows, so it is
		// as long as the live timers, not all timers ever armed; room for
		// as many again keeps the sweeps amortised O(1).
		k.timers = slices.DeleteFunc(k.timers, (*kTimer).isDead)
		k.timers = slices.Grow(k.timers, len(k.timers))
	}
	kt := &kTimer{fn: fn, remaining: d}
	if !k.frozen {
		k.arm(kt)
	}
	k.timers = append(k.timers, kt)
	return kt
}

// arm starts kt's engine timer for what it has left.
func (k *Kernel) arm(kt *kTimer) {
	kt.t = k.eng.After(kt.remaining, func() { kt.dead = true; kt.fn() })
}

func (kt *kTimer) isDead() bool { return kt.dead }

func (k *Kernel) stopTimer(kt *kTimer) {
	if kt == nil || kt.dead {
		return
	}
	kt.dead = true
	k.eng.Stop(kt.t)
}

// Freeze stops the guest: interrupts are held and kernel timers pause.
func (k *Kernel) Freeze() {
	if k.frozen {
		return
	}
	k.frozen = true
	k.timers = slices.DeleteFunc(k.timers, (*kTimer).isDead)
	for _, kt := range k.timers {
		kt.remaining = kt.t.When() - k.eng.Now()
		k.eng.Stop(kt.t)
		kt.t = nil
	}
}

// Thaw resumes the guest: paused timers continue with what they had left
// and held interrupts are delivered.
func (k *Kernel) Thaw() {
	if !k.frozen {
		return
	}
	k.frozen = false
	for _, kt := range k.timers {
		if !kt.dead { // stopped while frozen
			k.arm(kt)
		}
	}
	if k.irqPending {
		k.irqPending = false
		k.Interrupt()
	}
}

// Frozen reports whether the guest is suspended.
func (k *Kernel) Frozen() bool { return k.frozen }

// --- inspection ------------------------------------------------------------

// Sockets returns every socket the kernel still holds, in creation order.
func (k *Kernel) Sockets() []*Socket { return slices.Clone(k.sockets) }

// forget drops a released socket that is in no table any more.
func (k *Kernel) forget(s *Socket) {
	if i := slices.Index(k.sockets, s); i >= 0 {
		k.sockets = slices.Delete(k.sockets, i, i+1)
	}
}

// ConnectedCount returns the size of the connected table.
func (k *Kernel) ConnectedCount() int { return len(k.connected) }

// Leaked counts sockets that a transport reset left in the connected table
// and that their owner never closed: the leak of seed 003.
func (k *Kernel) Leaked() int {
	n := 0
	for _, s := range k.connected {
		if s.state == StateClose && !s.released {
			n++
		}
	}
	return n
}

// --- device removal and re-probe -------------------------------------------

// Remove is virtio_vsock_remove (Linux net/vmw_vsock/virtio_transport.c,
// v6.12), the driver letting go of the device, as on an unbind in sysfs:
// every connected socket is reset with virtio_vsock_reset_sock, the same as
// on a TRANSPORT_RESET event (nothing leaves the tables, an owner that
// never closes its socket leaks it); then the device is reset (the caller
// does that, between Remove and Probe) and the packets still queued for it
// are freed unsent. Receive and event buffers go back to the driver.
func (k *Kernel) Remove() {
	k.logConn("virtio_vsock_remove: device going away")
	k.transportReset()
	for _, p := range k.sendQ {
		k.putPkt(p)
	}
	k.sendQ = nil
	for head, p := range k.txByHead {
		if p != nil {
			k.txByHead[head] = nil
			k.putPkt(p)
		}
	}
	k.rxFree = k.rxFree[:0]
	for slot := len(k.rxSlots) - 1; slot >= 0; slot-- {
		k.rxFree = append(k.rxFree, slot)
	}
	clear(k.rxByHead)
	clear(k.evByHead)
	k.rxPosted = 0
	if k.rxRetry != nil {
		k.stopTimer(k.rxRetry)
		k.rxRetry = nil
	}
}

// Probe is virtio_vsock_probe after a Remove: the rings are set up afresh
// at the same places (the device was reset, so both sides start from index
// 0), receive and event buffers posted, the device kicked. Sockets keep
// their state; new connections work again.
func (k *Kernel) Probe() error {
	var err error
	if k.rxq, err = virtio.NewDriver(k.cfg.Mem, k.cfg.Queues[virtio.QueueRX], k.cfg.Features); err != nil {
		return fmt.Errorf("guest rx queue: %w", err)
	}
	if k.txq, err = virtio.NewDriver(k.cfg.Mem, k.cfg.Queues[virtio.QueueTX], k.cfg.Features); err != nil {
		return fmt.Errorf("guest tx queue: %w", err)
	}
	if k.evq, err = virtio.NewDriver(k.cfg.Mem, k.cfg.Queues[virtio.QueueEvent], k.cfg.Features); err != nil {
		return fmt.Errorf("guest event queue: %w", err)
	}
	k.fillRX()
	for i := range k.evSlots {
		if err := k.postEvent(i); err != nil {
			return err
		}
	}
	k.logConn("virtio_vsock_probe: %d receive buffers posted", k.rxPosted)
	k.notify(virtio.QueueRX)
	k.notify(virtio.QueueEvent)
	return nil
}
