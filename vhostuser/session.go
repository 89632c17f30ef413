package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/virtio"
)

// Offered features: VIRTIO_F_VERSION_1 and, for the vhost-user protocol,
// VHOST_USER_F_PROTOCOL_FEATURES.
//
// VIRTIO_F_INDIRECT_DESC is not offered because no modelled device offers
// it (Firecracker src/vmm/src/devices/virtio/vsock/device.rs
// AVAIL_FEATURES: VERSION_1 and IN_ORDER, plus EVENT_IDX on main, read
// 2026-11-26): with it, Linux's virtio_ring would hand a multi-buffer TX
// packet over as one indirect table, a layout the modelled devices never
// see. VIRTIO_F_EVENT_IDX only changes when notifications are sent, not what
// the device sees; without it the back-end needs no used_event or
// avail_event, and signals every used buffer.
const (
	offeredFeatures = FeatureVersion1 | FeatureProtocolFeatures
	// MQ is offered so that QEMU asks GET_QUEUE_NUM and learns the two
	// rings; CONFIG for GET_CONFIG (guest_cid); REPLY_ACK for NEED_REPLY.
	offeredProtocol = ProtocolMQ | ProtocolReplyAck | ProtocolConfig
)

// session is one front-end connection: the protocol state it negotiated
// and the rings it described.
type session struct {
	b *Backend
	c *net.UnixConn
	r *msgReader

	features    uint64
	protocol    uint64
	protocolSet bool      // SET_PROTOCOL_FEATURES received
	mem         *memTable // what the device sees, once handed over
	rings       [numRings]vring
	running     bool
	errFDs      [numRings]int
}

func newSession(b *Backend, c *net.UnixConn) *session {
	s := &session{b: b, c: c, r: newMsgReader(c)}
	for i := range s.errFDs {
		s.errFDs[i] = -1
	}
	return s
}

func (s *session) run() error {
	for {
		m, err := s.r.read()
		if err != nil {
			return err
		}
		out, err := s.handle(m)
		m.closeFDs() // whatever a handler did not keep
		if err != nil {
			return err
		}
		if out == nil && m.flags&flagNeedReply != 0 && s.protocol&ProtocolReplyAck != 0 {
			out = u64(0) // REPLY_ACK: success
		}
		if out != nil {
			if _, err := s.c.Write(reply(m, out)); err != nil {
				if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
					return errDisconnected // gone without waiting for the reply
				}
				return fmt.Errorf("vhost-user %s: reply: %w", m.name(), err)
			}
		}
	}
}

// protocolNegotiated: the back-end always offers
// VHOST_USER_F_PROTOCOL_FEATURES; the front-end takes it by acking it in
// SET_FEATURES or by setting protocol features at all. QEMU before
// 02b61f38d3 ("hw/virtio: incorporate backend features in features") did
// only the latter and still sent SET_VRING_ENABLE.
func (s *session) protocolNegotiated() bool {
	return s.features&FeatureProtocolFeatures != 0 || s.protocolSet
}

// fixedPayload is the payload size of each request whose payload has one
// size and which carries no descriptor (vhost-user.rst, "Message types":
// a u64, struct vhost_vring_state or struct vhost_vring_addr).
var fixedPayload = map[uint32]int{
	reqGetFeatures: 0, reqSetFeatures: 8, reqSetOwner: 0, reqResetOwner: 0,
	reqGetProtocolFeatures: 0, reqSetProtocolFeatures: 8, reqGetQueueNum: 0,
	reqSetVringNum: 8, reqSetVringBase: 8, reqGetVringBase: 8, reqSetVringEnable: 8,
	reqSetVringAddr: 40,
}

// handle carries out one request and returns its reply payload, nil when
// the request has none.
func (s *session) handle(m *message) ([]byte, error) {
	name := m.name()
	if want, ok := fixedPayload[m.req]; ok {
		if len(m.payload) != want {
			return nil, protoErr(name, "payload of %d bytes, want %d", len(m.payload), want)
		}
		if len(m.fds) != 0 {
			return nil, protoErr(name, "%d file descriptors, want 0", len(m.fds))
		}
	}
	le := binary.LittleEndian
	switch m.req {
	case reqGetFeatures:
		return u64(offeredFeatures), nil
	case reqSetFeatures:
		f := le.Uint64(m.payload)
		if extra := f &^ offeredFeatures; extra != 0 {
			return nil, protoErr(name, "features %#x include %#x, never offered", f, extra)
		}
		s.features = f
		if !s.protocolNegotiated() {
			// Without PROTOCOL_FEATURES rings are enabled from the start
			// (vhost-user.rst, "Ring states").
			for q := range numRings {
				s.b.sig.setEnabled(q, true)
			}
		}
		return nil, nil
	case reqGetProtocolFeatures:
		return u64(offeredProtocol), nil
	case reqSetProtocolFeatures:
		f := le.Uint64(m.payload)
		if extra := f &^ offeredProtocol; extra != 0 {
			return nil, protoErr(name, "protocol features %#x include %#x, never offered", f, extra)
		}
		s.protocol, s.protocolSet = f, true
		return nil, nil
	case reqGetQueueNum:
		return u64(numRings), nil
	case reqSetOwner:
		return nil, nil // one front-end per connection: nothing to own
	case reqResetOwner:
		if err := s.stopDevice(); err != nil {
			return nil, protoErr(name, "%v", err)
		}
		for q := range numRings {
			s.stopRing(q)
			s.rings[q] = vring{}
		}
		return nil, nil
	case reqGetConfig:
		return s.getConfig(m)
	case reqSetMemTable:
		return nil, s.setMemTable(m)
	case reqSetVringNum, reqSetVringBase, reqSetVringEnable, reqGetVringBase:
		q, num := le.Uint32(m.payload), le.Uint32(m.payload[4:])
		if q >= numRings {
			return nil, protoErr(name, "ring %d out of range (the back-end has %d)", q, numRings)
		}
		return s.vringState(m, int(q), num)
	case reqSetVringAddr:
		return nil, s.setVringAddr(m)
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		return nil, s.setVringFD(m)
	}
	return nil, protoErr(name, "not supported by this back-end")
}

func (s *session) getConfig(m *message) ([]byte, error) {
	name := m.name()
	if len(m.payload) < 12 {
		return nil, protoErr(name, "payload of %d bytes, shorter than the 12-byte config header", len(m.payload))
	}
	if len(m.fds) != 0 {
		return nil, protoErr(name, "%d file descriptors, want 0", len(m.fds))
	}
	if s.protocol&ProtocolConfig == 0 {
		return nil, protoErr(name, "VHOST_USER_PROTOCOL_F_CONFIG not negotiated")
	}
	le := binary.LittleEndian
	off, size := le.Uint32(m.payload), le.Uint32(m.payload[4:])
	if size > maxConfigSize || len(m.payload) != 12+int(size) {
		return nil, protoErr(name, "config size %d in a payload of %d bytes", size, len(m.payload))
	}
	// struct virtio_vsock_config: le64 guest_cid (virtio 1.2, 5.10.4).
	var cfg [8]byte
	le.PutUint64(cfg[:], s.b.cfg.CID)
	if uint64(off)+uint64(size) > uint64(len(cfg)) {
		return nil, protoErr(name, "offset %d, size %d: the vsock config space has %d bytes", off, size, len(cfg))
	}
	out := append([]byte(nil), m.payload[:12]...)
	return append(out, cfg[off:off+size]...), nil
}

func (s *session) setMemTable(m *message) error {
	fds := m.fds
	m.fds = nil // parseMemTable owns them now
	mt, err := parseMemTable(m.name(), m.payload, fds)
	if err != nil {
		return err
	}
	old := s.mem
	s.mem = mt
	// The swap happens on the world's goroutine, so the device never
	// reads a region being unmapped.
	_ = s.b.lab.Do(func(*emu.World) error { s.b.ram.mt = mt; return nil })
	old.unmap()
	return nil
}

func (s *session) vringState(m *message, q int, num uint32) ([]byte, error) {
	name := m.name()
	r := &s.rings[q]
	switch m.req {
	case reqSetVringNum:
		if num == 0 || num&(num-1) != 0 || num > virtio.MaxQueueSize {
			return nil, protoErr(name, "ring %d: size %d is not a power of two in [1, %d]", q, num, virtio.MaxQueueSize)
		}
		if s.running {
			return nil, protoErr(name, "ring %d: resized while started", q)
		}
		r.num = uint16(num)
	case reqSetVringBase:
		if num > 0xffff {
			return nil, protoErr(name, "ring %d: base %d does not fit a split ring's 16-bit index", q, num)
		}
		if s.running {
			return nil, protoErr(name, "ring %d: base set while started", q)
		}
		r.base = uint16(num)
	case reqSetVringEnable:
		if num > 1 {
			return nil, protoErr(name, "ring %d: enable %d, want 0 or 1", q, num)
		}
		if !s.protocolNegotiated() {
			return nil, protoErr(name, "VHOST_USER_F_PROTOCOL_FEATURES not negotiated")
		}
		s.b.sig.setEnabled(q, num == 1)
		if num == 1 {
			if err := s.tryStart(name); err != nil {
				return nil, err
			}
			if s.running {
				_ = s.b.lab.Do(func(w *emu.World) error { w.Kick(q); return nil })
			}
		}
	case reqGetVringBase:
		// Stops the ring (vhost-user.rst, "Ring states"); a vsock device
		// cannot run on one ring, so the device stops with it.
		if err := s.stopDevice(); err != nil {
			return nil, protoErr(name, "%v", err)
		}
		s.stopRing(q)
		if s.protocolNegotiated() {
			s.b.sig.setEnabled(q, false)
		}
		return vringState(uint32(q), uint32(r.base)), nil
	}
	return nil, nil
}

// setVringAddr is struct vhost_vring_addr: le32 index, le32 flags, le64
// desc, used, avail, log (userspace addresses).
func (s *session) setVringAddr(m *message) error {
	name := m.name()
	le := binary.LittleEndian
	q := le.Uint32(m.payload)
	if q >= numRings {
		return protoErr(name, "ring %d out of range (the back-end has %d)", q, numRings)
	}
	if s.running {
		return protoErr(name, "ring %d: moved while started", q)
	}
	if s.mem == nil {
		return protoErr(name, "ring %d: no memory table yet", q)
	}
	r := &s.rings[q]
	desc, used, avail := le.Uint64(m.payload[8:]), le.Uint64(m.payload[16:]), le.Uint64(m.payload[24:])
	for _, a := range [...]struct {
		what string
		at   uint64
	}{{"descriptor table", desc}, {"used ring", used}, {"available ring", avail}} {
		if _, ok := s.mem.userToGuest(a.at, 1); !ok {
			return protoErr(name, "ring %d: %s at user address %#x is outside every region", q, a.what, a.at)
		}
	}
	r.desc, r.used, r.avail, r.addrSet = desc, used, avail, true
	return nil
}

func (s *session) setVringFD(m *message) error {
	name := m.name()
	if len(m.payload) != 8 {
		return protoErr(name, "payload of %d bytes, want 8", len(m.payload))
	}
	v := binary.LittleEndian.Uint64(m.payload)
	q := int(v & vringIndexMask)
	if v&^(vringIndexMask|vringNoFD) != 0 {
		return protoErr(name, "value %#x has bits beyond the ring index and NOFD", v)
	}
	if q >= numRings {
		return protoErr(name, "ring %d out of range (the back-end has %d)", q, numRings)
	}
	noFD := v&vringNoFD != 0
	want := 1
	if noFD {
		want = 0
	}
	if len(m.fds) != want {
		return protoErr(name, "ring %d: %d file descriptors, want %d", q, len(m.fds), want)
	}
	switch m.req {
	case reqSetVringCall:
		fd := -1
		if !noFD {
			fd = m.takeFD()
		}
		s.b.sig.setCall(q, fd)
	case reqSetVringErr:
		// Nothing is ever reported on it; kept so the front-end's fd lives
		// as long as the ring.
		if s.errFDs[q] >= 0 {
			closeAll([]int{s.errFDs[q]})
		}
		s.errFDs[q] = -1
		if !noFD {
			s.errFDs[q] = m.takeFD()
		}
	case reqSetVringKick:
		if noFD {
			return protoErr(name, "ring %d: polling without a kick eventfd is not supported", q)
		}
		s.stopKick(q) // a new kick eventfd replaces the ring's old one
		f, err := kickFile(m.takeFD())
		if err != nil {
			return protoErr(name, "ring %d: kick eventfd: %v", q, err)
		}
		r := &s.rings[q]
		r.kick, r.kickDone = f, make(chan struct{})
		go s.b.watchKick(q, f, r.kickDone)
		// The ring starts now (vhost-user.rst, "Ring states"); without
		// PROTOCOL_FEATURES it is enabled too.
		return s.tryStart(name)
	}
	return nil
}

// tryStart starts the device once both rings are started and enabled.
func (s *session) tryStart(name string) error {
	if s.running || s.mem == nil {
		return nil
	}
	var rings emu.Rings
	for q := range numRings {
		r := &s.rings[q]
		if r.kick == nil || !r.addrSet || r.num == 0 || !s.b.sig.isEnabled(q) {
			return nil
		}
		l, err := s.layout(q)
		if err != nil {
			return protoErr(name, "starting ring %d: %v", q, err)
		}
		r.layout = l
		rings.Queues[q] = l
		var idx [2]byte
		if err := s.mem.as.ReadAt(idx[:], l.Used+2); err != nil {
			return protoErr(name, "starting ring %d: %v", q, err)
		}
		rings.State[q] = virtio.QueueState{LastAvail: r.base, UsedIdx: binary.LittleEndian.Uint16(idx[:])}
	}
	rings.Mem = &s.b.ram
	rings.Features = s.features &^ (FeatureProtocolFeatures | FeatureVersion1)
	rings.Interrupt = s.b.sig.raise
	if err := s.b.lab.Do(func(w *emu.World) error { return w.StartRings(rings) }); err != nil {
		return protoErr(name, "%v", err)
	}
	s.running = true
	s.b.up.Up()
	return nil
}

// layout translates ring q's userspace addresses, each of which must lie
// with its whole extent in one region, into guest-physical ones.
func (s *session) layout(q int) (virtio.Layout, error) {
	r := &s.rings[q]
	n := uint64(r.num)
	l := virtio.Layout{Size: r.num}
	for _, p := range [...]struct {
		what    string
		at, len uint64
		dst     *uint64
	}{
		{"descriptor table", r.desc, virtio.DescLen * n, &l.Desc},
		{"available ring", r.avail, 6 + 2*n, &l.Avail},
		{"used ring", r.used, 6 + 8*n, &l.Used},
	} {
		g, ok := s.mem.userToGuest(p.at, p.len)
		if !ok {
			return l, fmt.Errorf("%s of %d bytes at user address %#x is not inside one region", p.what, p.len, p.at)
		}
		*p.dst = g
	}
	return l, l.Validate()
}

// stopDevice stops the device if it runs and keeps each ring's next
// available index for GET_VRING_BASE.
func (s *session) stopDevice() error {
	if !s.running {
		return nil
	}
	s.b.up.Down()
	var st [3]virtio.QueueState
	err := s.b.lab.Do(func(w *emu.World) error {
		if w.RingsRunning() {
			s.b.badTXStopped += w.Dev.Stats().BadTXChains
		}
		var err error
		st, err = w.StopRings()
		return err
	})
	s.running = false
	if err != nil {
		return err
	}
	for q := range numRings {
		s.rings[q].base = st[q].LastAvail
	}
	return nil
}

func (s *session) stopKick(q int) {
	r := &s.rings[q]
	if r.kick == nil {
		return
	}
	r.kick.Close()
	<-r.kickDone
	r.kick, r.kickDone = nil, nil
}

// stopRing stops ring q: no more kicks until a new SET_VRING_KICK.
func (s *session) stopRing(q int) { s.stopKick(q) }

// teardown releases everything the connection set up: the device stops
// (the VM is gone), every watcher ends, every fd is closed, the memory is
// unmapped.
func (s *session) teardown() {
	_ = s.stopDevice()
	for q := range numRings {
		s.stopRing(q)
		s.b.sig.setEnabled(q, false)
		if s.errFDs[q] >= 0 {
			closeAll([]int{s.errFDs[q]})
			s.errFDs[q] = -1
		}
	}
	s.b.sig.closeAll()
	_ = s.b.lab.Do(func(*emu.World) error { s.b.ram.mt = nil; return nil })
	s.mem.unmap()
	s.mem = nil
}
