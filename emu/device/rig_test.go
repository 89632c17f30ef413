package device

import (
	"encoding/binary"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// The rig is a minimal guest driving a device over real split virtqueues in
// flat guest memory: it posts RX and event buffers, lays TX packets out in
// whatever descriptor shape a test wants, and decodes what the device wrote.

const (
	guestCID    = 3
	udsPath     = "/tmp/vm.vsock"
	peerBuf     = 64 * 1024 // PEER_BUF_ALLOC of Firecracker's tests
	queueSize   = 256
	rxArea      = 0x10000
	rxSlot      = 0x2000 // room per RX buffer
	evArea      = rxArea + queueSize*rxSlot
	txArena     = evArea + 0x1000
	txArenaSize = 4 << 20
	memSize     = txArena + txArenaSize
)

type rxPkt struct {
	hdr     virtio.Header
	payload []byte
	used    uint32
}

type rig struct {
	t    testing.TB
	eng  *engine.Engine
	ns   *uds.Namespace
	mem  *virtio.AddressSpace
	dev  *Device
	prof Profile
	cfg  Config
	drv  [3]*virtio.Driver

	rxShape    []virtio.Buffer // lengths and directions of one RX buffer
	rxPosted   map[uint16][]virtio.Buffer
	rxSlots    []uint64 // free RX slots
	evPosted   map[uint16]uint64
	autoRepost bool

	events int // event buffers posted at start

	txNext     uint64
	txInFlight int
	txUsed     []uint32 // used lengths of reaped TX chains, in order

	irqs      int
	queueIRQs []int // with withQueueInterrupts: the queues signalled, in order

	noEventQueue bool
	configure    func(*Config)
}

type rigOpt func(*rig)

// withRXShape posts RX buffers of these descriptor lengths (all
// device-writable), for example 44+4096 as pre-6.3 guests do.
func withRXShape(lens ...uint32) rigOpt {
	return func(r *rig) {
		r.rxShape = nil
		for _, n := range lens {
			r.rxShape = append(r.rxShape, virtio.Buffer{Len: n, Write: true})
		}
	}
}

func withRXBuffers(b ...virtio.Buffer) rigOpt { return func(r *rig) { r.rxShape = b } }

func withSeed(seed uint64) rigOpt { return func(r *rig) { r.eng = engine.New(seed) } }

func withEvents(n int) rigOpt { return func(r *rig) { r.events = n } }

// withVhostUserTransport builds the device as the vhost-user back-end
// does: no event queue (the VMM keeps it), an interrupt per queue, and
// chain shapes on every TX line.
func withVhostUserTransport() rigOpt {
	return func(r *rig) {
		r.noEventQueue, r.events = true, 0
		r.configure = func(c *Config) {
			c.QueueInterrupt = func(q int) { r.queueIRQs = append(r.queueIRQs, q) }
			c.LogTXShapes = true
		}
	}
}

func withMaxConnections(n int) rigOpt { return func(r *rig) { r.prof.MaxConnections = n } }

func mustProfile(t testing.TB, name string) Profile {
	t.Helper()
	p, err := LookupProfile(name)
	require.NoError(t, err)
	return p
}

// newRig builds a device of the named profile with rxCount RX buffers and 8
// event buffers posted.
func newRig(t testing.TB, profile string, rxCount int, opts ...rigOpt) *rig {
	t.Helper()
	r := &rig{
		t:          t,
		eng:        engine.New(1),
		ns:         uds.NewNamespace(),
		mem:        virtio.NewFlatMemory(0, memSize),
		prof:       mustProfile(t, profile),
		rxShape:    []virtio.Buffer{{Len: 4140, Write: true}},
		rxPosted:   map[uint16][]virtio.Buffer{},
		evPosted:   map[uint16]uint64{},
		autoRepost: true,
		events:     8,
		txNext:     txArena,
	}
	for _, o := range opts {
		o(r)
	}
	for i := queueSize - 1; i >= 0; i-- {
		r.rxSlots = append(r.rxSlots, rxArea+uint64(i)*rxSlot)
	}
	r.cfg = Config{
		GuestCID: guestCID, UDSPath: udsPath, Host: r.ns, Mem: r.mem,
		Interrupt: func() { r.irqs++ },
	}
	for i := range r.cfg.Queues {
		l, _ := virtio.ContiguousLayout(uint64(i)*0x4000, queueSize)
		r.cfg.Queues[i] = l
		d, err := virtio.NewDriver(r.mem, l, 0)
		require.NoError(t, err)
		r.drv[i] = d
	}
	if r.noEventQueue {
		r.cfg.Queues[virtio.QueueEvent] = virtio.Layout{}
	}
	if r.configure != nil {
		r.configure(&r.cfg)
	}
	dev, err := New(r.eng, r.prof, r.cfg)
	require.NoError(t, err)
	r.dev = dev
	for range rxCount {
		r.postRX()
	}
	for i := range r.events {
		r.postEvent(evArea + uint64(i)*16)
	}
	r.run()
	return r
}

func (r *rig) run()                    { r.eng.RunUntil(r.eng.Now()) }
func (r *rig) advance(d time.Duration) { r.eng.RunUntil(r.eng.Now() + d) }
func (r *rig) notify(q int)            { r.dev.Notify(q); r.run() }
func (r *rig) log() string             { return r.eng.Log.String() }
func (r *rig) stats() Stats            { return r.dev.Stats() }
func (r *rig) conns() []ConnInfo       { return r.dev.Conns() }
func (r *rig) hostPath(port uint32) string {
	return udsPath + "_" + strconv.FormatUint(uint64(port), 10)
}

// postRX makes one RX buffer of the rig's shape available.
func (r *rig) postRX() {
	r.t.Helper()
	require.NotEmpty(r.t, r.rxSlots, "out of RX slots")
	base := r.rxSlots[len(r.rxSlots)-1]
	r.rxSlots = r.rxSlots[:len(r.rxSlots)-1]
	bufs := make([]virtio.Buffer, len(r.rxShape))
	off := base
	for i, b := range r.rxShape {
		bufs[i] = virtio.Buffer{Addr: off, Len: b.Len, Write: b.Write}
		off += uint64(b.Len)
	}
	require.LessOrEqual(r.t, off-base, uint64(rxSlot))
	head, err := r.drv[virtio.QueueRX].Add(bufs)
	require.NoError(r.t, err)
	r.rxPosted[head] = bufs
}

func (r *rig) postRXN(n int) {
	for range n {
		r.postRX()
	}
	r.notify(virtio.QueueRX)
}

func (r *rig) postEvent(addr uint64) {
	head, err := r.drv[virtio.QueueEvent].Add([]virtio.Buffer{{Addr: addr, Len: virtio.EventLen, Write: true}})
	require.NoError(r.t, err)
	r.evPosted[head] = addr
}

// recv reaps every used RX buffer, decodes it and, by default, posts a
// fresh buffer in its place and kicks the RX queue.
func (r *rig) recv() []rxPkt {
	r.t.Helper()
	var out []rxPkt
	for {
		head, used, ok, err := r.drv[virtio.QueueRX].PopUsed()
		require.NoError(r.t, err)
		if !ok {
			break
		}
		bufs := r.rxPosted[head]
		delete(r.rxPosted, head)
		r.rxSlots = append(r.rxSlots, bufs[0].Addr)
		p := rxPkt{used: used}
		if used >= virtio.HeaderLen {
			raw := r.gatherRX(bufs, used)
			p.hdr, _ = virtio.DecodeHeader(raw)
			p.payload = raw[virtio.HeaderLen:]
		}
		out = append(out, p)
	}
	if r.autoRepost && len(out) > 0 {
		for range out {
			r.postRX()
		}
		r.notify(virtio.QueueRX)
	}
	return out
}

func (r *rig) gatherRX(bufs []virtio.Buffer, n uint32) []byte {
	out := make([]byte, 0, n)
	for _, b := range bufs {
		take := min(b.Len, n-uint32(len(out)))
		chunk := make([]byte, take)
		require.NoError(r.t, r.mem.ReadAt(chunk, b.Addr))
		out = append(out, chunk...)
		if uint32(len(out)) == n {
			break
		}
	}
	return out
}

// recvOne expects exactly one packet.
func (r *rig) recvOne() rxPkt {
	r.t.Helper()
	ps := r.recv()
	require.Len(r.t, ps, 1, "packets: %v\nlog:\n%s", ps, r.log())
	return ps[0]
}

// expect reads one packet and checks its op and ports.
func (r *rig) expect(op virtio.Op, local, peer uint32) rxPkt {
	r.t.Helper()
	p := r.recvOne()
	require.Equal(r.t, op.String(), p.hdr.Op.String(), "header %v\nlog:\n%s", p.hdr, r.log())
	require.Equal(r.t, local, p.hdr.SrcPort, "src port")
	require.Equal(r.t, peer, p.hdr.DstPort, "dst port")
	require.Equal(r.t, uint64(virtio.CIDHost), p.hdr.SrcCID)
	require.Equal(r.t, uint64(guestCID), p.hdr.DstCID)
	require.Equal(r.t, virtio.TypeStream, p.hdr.Type)
	return p
}

func (r *rig) expectNothing() {
	r.t.Helper()
	ps := r.recv()
	require.Empty(r.t, ps, "log:\n%s", r.log())
}

// hdr is a guest packet header with the usual fields.
func hdr(op virtio.Op, src, dst uint32) virtio.Header {
	return virtio.Header{
		SrcCID: guestCID, DstCID: virtio.CIDHost, SrcPort: src, DstPort: dst,
		Type: virtio.TypeStream, Op: op, BufAlloc: peerBuf,
	}
}

// layTX writes header then payload across descriptors of the given lengths
// and returns the buffers; writeOnly marks descriptors device-writable.
func (r *rig) layTX(h virtio.Header, payload []byte, lens []uint32, writeOnly ...int) []virtio.Buffer {
	r.t.Helper()
	raw := append(h.Append(nil), payload...)
	bufs := make([]virtio.Buffer, len(lens))
	off := 0
	for i, n := range lens {
		addr := r.txNext
		r.txNext += (uint64(n) + 15) &^ 15
		require.LessOrEqual(r.t, r.txNext, uint64(txArena+txArenaSize), "TX arena exhausted")
		chunk := make([]byte, n)
		if off < len(raw) {
			copy(chunk, raw[off:])
		}
		off += int(n)
		require.NoError(r.t, r.mem.WriteAt(chunk, addr))
		bufs[i] = virtio.Buffer{Addr: addr, Len: n}
	}
	for _, i := range writeOnly {
		bufs[i].Write = true
	}
	return bufs
}

// addTX makes a chain available without the driver's ordering rule (a
// write-only descriptor before a readable one is legal input for a device).
func (r *rig) addTX(bufs []virtio.Buffer) {
	r.t.Helper()
	d := r.drv[virtio.QueueTX]
	order := true
	seenW := false
	for _, b := range bufs {
		if b.Write {
			seenW = true
		} else if seenW {
			order = false
		}
	}
	if order {
		_, err := d.Add(bufs)
		require.NoError(r.t, err)
	} else {
		// Flip directions for Add, then patch the flags in the table.
		flipped := make([]virtio.Buffer, len(bufs))
		for i, b := range bufs {
			flipped[i] = virtio.Buffer{Addr: b.Addr, Len: b.Len}
		}
		head, err := d.Add(flipped)
		require.NoError(r.t, err)
		idx := head
		for _, b := range bufs {
			desc, err := virtio.ReadDesc(r.mem, r.cfg.Queues[virtio.QueueTX].Desc, idx)
			require.NoError(r.t, err)
			if b.Write {
				desc.Flags |= virtio.DescFWrite
				require.NoError(r.t, virtio.WriteDesc(r.mem, r.cfg.Queues[virtio.QueueTX].Desc, idx, desc))
			}
			idx = desc.Next
		}
	}
	r.txInFlight++
}

// sendChain makes a chain available, kicks TX, runs, and reaps the TX used
// ring.
func (r *rig) sendChain(bufs []virtio.Buffer) {
	r.t.Helper()
	r.addTX(bufs)
	r.notify(virtio.QueueTX)
	r.reapTX()
}

// send sends a packet whose Len is the payload's, laid out as a 44-byte
// header descriptor plus one data descriptor (or the given lengths).
func (r *rig) send(h virtio.Header, payload []byte, lens ...uint32) {
	r.t.Helper()
	h.Len = uint32(len(payload))
	if len(lens) == 0 {
		lens = []uint32{virtio.HeaderLen}
		if len(payload) > 0 {
			lens = append(lens, uint32(len(payload)))
		}
	}
	r.sendChain(r.layTX(h, payload, lens))
}

func (r *rig) reapTX() {
	for {
		_, used, ok, err := r.drv[virtio.QueueTX].PopUsed()
		require.NoError(r.t, err)
		if !ok {
			break
		}
		r.txUsed = append(r.txUsed, used)
		r.txInFlight--
	}
	if r.txInFlight == 0 {
		r.txNext = txArena
	}
}

// reapEvents returns the event ids the device posted.
func (r *rig) reapEvents() []uint32 {
	var ids []uint32
	for {
		head, used, ok, err := r.drv[virtio.QueueEvent].PopUsed()
		require.NoError(r.t, err)
		if !ok {
			return ids
		}
		require.Equal(r.t, uint32(virtio.EventLen), used)
		var b [4]byte
		require.NoError(r.t, r.mem.ReadAt(b[:], r.evPosted[head]))
		ids = append(ids, binary.LittleEndian.Uint32(b[:]))
		delete(r.evPosted, head)
	}
}

// listen binds the host socket a guest connect to port lands on.
func (r *rig) listen(port uint32) *uds.Listener {
	r.t.Helper()
	l, err := r.ns.Listen(r.hostPath(port), 128)
	require.NoError(r.t, err)
	return l
}

// hostDial connects to the device's socket and writes line.
func (r *rig) hostDial(line string) *uds.Conn {
	r.t.Helper()
	c, err := r.ns.Connect(udsPath)
	require.NoError(r.t, err)
	if line != "" {
		_, err = c.Write([]byte(line))
		require.NoError(r.t, err)
	}
	r.run()
	return c
}

// readAll drains what a host stream holds.
func readAll(t testing.TB, c *uds.Conn) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 64*1024)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF || err == syscall.EAGAIN {
			return out
		}
		require.NoError(t, err)
	}
}

// guestConnect opens a guest-initiated connection to a host listener at
// port: REQUEST, RESPONSE, accept.
func (r *rig) guestConnect(l *uds.Listener, local, peer uint32) *uds.Conn {
	r.t.Helper()
	r.send(hdr(virtio.OpRequest, peer, local), nil)
	r.expect(virtio.OpResponse, local, peer)
	s, err := l.Accept()
	require.NoError(r.t, err)
	return s
}

// hostConnect opens a host-initiated connection to guest port peer and
// answers the REQUEST; it returns the host end and the local port.
func (r *rig) hostConnect(peer uint32) (*uds.Conn, uint32) {
	r.t.Helper()
	h := r.hostDial("CONNECT " + strconv.FormatUint(uint64(peer), 10) + "\n")
	req := r.recvOne()
	require.Equal(r.t, virtio.OpRequest, req.hdr.Op, "log:\n%s", r.log())
	local := req.hdr.SrcPort
	r.send(hdr(virtio.OpResponse, peer, local), nil)
	require.Equal(r.t, "OK "+strconv.FormatUint(uint64(local), 10)+"\n", string(readAll(r.t, h)))
	return h, local
}

func (r *rig) conn(local, peer uint32) ConnInfo {
	r.t.Helper()
	for _, c := range r.conns() {
		if c.LocalPort == local && c.PeerPort == peer {
			return c
		}
	}
	r.t.Fatalf("no connection %d<->%d; have %+v", local, peer, r.conns())
	return ConnInfo{}
}

func (r *rig) noConn(local, peer uint32) {
	r.t.Helper()
	for _, c := range r.conns() {
		require.False(r.t, c.LocalPort == local && c.PeerPort == peer, "connection %d<->%d still there: %+v", local, peer, c)
	}
}

// snapshot takes a snapshot of the device (which then exits).
func (r *rig) snapshot() Snapshot {
	r.t.Helper()
	s, err := r.dev.Snapshot()
	require.NoError(r.t, err)
	return s
}

// restore builds a device from s over the same guest memory and host.
func (r *rig) restore(s Snapshot) {
	r.t.Helper()
	d, err := Restore(r.eng, r.prof, r.cfg, s)
	require.NoError(r.t, err)
	r.dev = d
	r.run()
}
