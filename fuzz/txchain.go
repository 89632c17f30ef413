package fuzz

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// The TX chain rig: a device of any profile on its own three queues in a
// small flat guest memory, with no guest kernel. The fuzzer owns the TX
// queue's descriptor table, available ring and a 64 KiB region of buffers;
// the harness plays a well-behaved driver on the RX and event queues so
// that whatever the device writes back can be checked.
const (
	txcGuestCID  = 3
	txcUDSPath   = "/run/txchain.sock"
	txcRXSize    = 16 // buffers, of two descriptors each
	txcEvSize    = 4
	txcRXQueue   = 0x0000
	txcEvQueue   = 0x1000
	txcTXUsed    = 0x1800 // the TX used ring, outside the fuzzer's region
	txcRXBufs    = 0x2000 // txcRXSize buffers of 44 + 4096 bytes
	txcRXStride  = 0x1100
	txcEvBufs    = txcRXBufs + txcRXSize*txcRXStride
	txcRegion    = 0x14000 // the fuzzer's TX region: queue at its start, then buffers
	txcRegionLen = 0x10000
	txcMemSize   = txcRegion + txcRegionLen + 0x4000 // 16 KiB after it, for chains to point at
	txcRXData    = 4096
	txcMaxRounds = 16
	txcSmallHost = 4096 // host socket buffer when flagTXSmallHost is set
)

// Flag bits of CheckTXChain's second byte.
const (
	flagTXIndirect  = 1 << 0 // negotiate VIRTIO_F_INDIRECT_DESC
	flagTXSmallHost = 1 << 1 // host sockets buffer 4 KiB: writes would block, the TX buffer fills
	flagTXListen    = 1 << 2 // a host program listens on <uds>_<port>
	flagTXDrain     = 1 << 3 // after each round the host reads everything
	flagTXClose     = 1 << 7 // after each round the host closes its connections
)

// CheckTXChain feeds a device guest memory and TX descriptor chains chosen
// by data, under the device profile data picks, and checks the device's
// bookkeeping.
//
// Layout of data: byte 0 picks the profile (device.Profiles(), modulo);
// byte 1 holds flags (bit 0 indirect descriptors, bit 1 small host socket
// buffers, bit 2 a host listener, bit 3 the host drains its connections
// after each round, bit 7 it closes them) and in bits 4-6 the TX queue size
// as a power of two (1 to 64); bytes 2-5 are the host listener's port (LE).
// Then up to 16 rounds within the first 512 bytes of data (the rest is
// ignored: txChainMaxInput), each: the available index to publish (u16 LE), an
// offset into the 64 KiB TX region (u16) and a length (u16) followed by
// that many bytes written there. The TX queue's descriptor table starts at
// offset 0 of the region and its available ring follows; the used ring
// belongs to the device and lives outside the region. Each round publishes
// the index, kicks the TX queue and runs the world.
//
// Oracles: nothing panics; the device never reads or writes guest memory
// outside what it checked; the engine goes idle; every chain the device
// popped is either returned through the used ring or counted leaked (and
// the device's own Violations counter stays zero); the device halts only
// where its profile models a crash (a lone short inline TX descriptor on
// Cloud Hypervisor before v52) or when the available index runs ahead of
// the ring; an accepted packet's payload is as long as its header says;
// every packet written to the RX queue is a well-formed host-to-guest
// packet that fits the buffer.
func CheckTXChain(data []byte) error {
	_, err := runTXChain(data)
	return err
}

// txResult is what a CheckTXChain run did, for tests of the seeds.
type txResult struct {
	stats     device.Stats
	hostBytes int // bytes the host read from its connections
}

func runTXChain(data []byte) (txResult, error) {
	var res txResult
	in := &input{b: capped(data, txChainMaxInput)}
	profiles := device.Profiles()
	prof := profiles[int(in.u8())%len(profiles)]
	flags := in.u8()
	size := uint16(1) << ((flags >> 4) % 7)
	port := in.u32()

	var features uint64
	if flags&flagTXIndirect != 0 {
		features |= virtio.FeatureIndirectDesc
	}
	buf := zeroed(txcMemSize)
	defer release(buf)
	as, err := virtio.NewAddressSpace(virtio.Region{Base: 0, Data: buf})
	if err != nil {
		return res, err
	}
	mem := &guardMem{AddressSpace: as}
	eng := engine.New(1)
	eng.Log.Keep(engine.KindInvariant)
	ns := uds.NewNamespace()
	if flags&flagTXSmallHost != 0 {
		ns.SetBufferSize(txcSmallHost)
	}
	var queues [3]virtio.Layout
	queues[virtio.QueueRX], _ = virtio.ContiguousLayout(txcRXQueue, 2*txcRXSize)
	queues[virtio.QueueEvent], _ = virtio.ContiguousLayout(txcEvQueue, txcEvSize)
	queues[virtio.QueueTX] = virtio.Layout{Size: size, Desc: txcRegion, Avail: txcRegion + virtio.DescLen*uint64(size), Used: txcTXUsed}
	txl := queues[virtio.QueueTX]
	rx, err := virtio.NewDriver(mem, queues[virtio.QueueRX], features)
	if err != nil {
		return res, err
	}
	ev, err := virtio.NewDriver(mem, queues[virtio.QueueEvent], features)
	if err != nil {
		return res, err
	}
	var payloadErr error
	r := &txRig{prof: prof, eng: eng, mem: mem, rx: rx, size: size, txl: txl, credit: map[txcKey]*txcCredit{}}
	dev, err := device.New(eng, prof, device.Config{
		GuestCID: txcGuestCID, UDSPath: txcUDSPath, Host: ns, Mem: mem,
		Queues: queues, Features: features,
		OnPacket: func(dir device.Dir, h *virtio.Header, payload []byte) {
			if dir != device.GuestToHost {
				return
			}
			if uint32(len(payload)) != h.Len && !prof.HaltOnShortInlineTX && payloadErr == nil {
				payloadErr = fmt.Errorf("accepted %v with %d payload bytes", h, len(payload))
			}
			r.guestSent(h)
		},
	})
	if err != nil {
		return res, err
	}
	r.dev = dev
	for i := 0; i < txcRXSize; i++ {
		if err := r.postRX(txcRXBufs + uint64(i)*txcRXStride); err != nil {
			return res, err
		}
	}
	for i := 0; i < txcEvSize; i++ {
		if _, err := ev.Add([]virtio.Buffer{{Addr: txcEvBufs + uint64(i)*16, Len: virtio.EventLen, Write: true}}); err != nil {
			return res, err
		}
	}
	var hostL *uds.Listener
	if flags&flagTXListen != 0 {
		if hostL, err = ns.Listen(txcUDSPath+"_"+strconv.FormatUint(uint64(port), 10), 128); err != nil {
			return res, err
		}
	}
	dev.Notify(virtio.QueueRX)
	dev.Notify(virtio.QueueEvent)
	if err := r.settle(); err != nil {
		return res, err
	}

	var hostConns []*uds.Conn
	for round := 0; round < txcMaxRounds && !in.done(); round++ {
		avail := in.u16()
		off := int(in.u16())
		patch := in.bytes(int(in.u16()))
		r.patch(off, patch)
		if err := r.publish(avail); err != nil {
			return res, err
		}
		dev.Notify(virtio.QueueTX)
		if err := r.settle(); err != nil {
			return res, fmt.Errorf("round %d: %w", round, err)
		}
		if hostL != nil && flags&(flagTXDrain|flagTXClose) != 0 {
			for hostL.Pending() > 0 {
				c, err := hostL.Accept()
				if err != nil {
					return res, err
				}
				hostConns = append(hostConns, c)
			}
			for _, c := range hostConns {
				if flags&flagTXDrain != 0 {
					res.hostBytes += drainHost(c)
				}
				if flags&flagTXClose != 0 {
					c.Close()
				}
			}
			if flags&flagTXClose != 0 {
				hostConns = hostConns[:0]
			}
			if err := r.settle(); err != nil {
				return res, fmt.Errorf("round %d, host side: %w", round, err)
			}
		}
		if err := r.check(round); err != nil {
			return res, err
		}
		if payloadErr != nil {
			return res, fmt.Errorf("round %d: %w", round, payloadErr)
		}
		if dev.Halted() {
			break // a dead device does nothing more
		}
	}
	res.stats = dev.Stats()
	return res, nil
}

// drainHost reads everything a host connection holds.
func drainHost(c *uds.Conn) int {
	var buf [4096]byte
	total := 0
	for {
		n, err := c.Read(buf[:])
		total += n
		if err != nil {
			return total
		}
	}
}

type txRig struct {
	prof device.Profile
	eng  *engine.Engine
	mem  *guardMem
	dev  *device.Device
	rx   *virtio.Driver
	size uint16
	txl  virtio.Layout

	rxByHead [2 * txcRXSize]uint64 // head -> buffer address + 1

	avail      uint16 // the available index last published
	usedSeen   uint16 // the TX used index at the last check
	popped     uint64 // chains the device must have taken
	overrun    bool   // an available index ran more than a ring ahead
	invariants int    // violations already looked at

	credit map[txcKey]*txcCredit
}

// txcKey is a connection as the device keys it: (host port, guest port).
type txcKey struct{ local, peer uint32 }

// txcCredit is the guest's side of a connection's credit, as far as the
// fuzzer's packets and the device's answers tell: what the guest sent and
// what it last heard of the device's buffer.
type txcCredit struct {
	sent              uint32 // RW payload bytes the device accepted from the guest
	heardFwd, heardBA uint32 // fwd_cnt and buf_alloc of the last RX packet reaped
	exceeded          bool   // the guest sent beyond the credit it had heard of
}

// guestSent tracks a packet the device accepted from the guest. A REQUEST
// for a connection the device does not know starts the count afresh.
func (r *txRig) guestSent(h *virtio.Header) {
	k := txcKey{h.DstPort, h.SrcPort}
	c := r.credit[k]
	if h.Op == virtio.OpRequest && (c == nil || !r.hasConn(k)) {
		c = &txcCredit{exceeded: c != nil && c.exceeded}
		r.credit[k] = c
	}
	if c == nil || h.Op != virtio.OpRW {
		return
	}
	c.sent += h.Len
	if c.sent-c.heardFwd > c.heardBA {
		c.exceeded = true
	}
}

func (r *txRig) hasConn(k txcKey) bool {
	for _, ci := range r.dev.Conns() {
		if ci.LocalPort == k.local && ci.PeerPort == k.peer {
			return true
		}
	}
	return false
}

// guestHeard records the credit fields of a packet the guest received.
func (r *txRig) guestHeard(h *virtio.Header) {
	if c := r.credit[txcKey{h.SrcPort, h.DstPort}]; c != nil {
		c.heardFwd, c.heardBA = h.FwdCnt, h.BufAlloc
	}
}

// expectedSkew reports whether a violation is the modelled behaviour of
// the device rather than a lab bug: Firecracker before v1.14 re-buffers
// bytes the host already got when a write blocks mid-payload (the profile's
// DuplicateOnPartialWrite; Firecracker issue #5475), and every
// Firecracker-derived device drops the part of a payload its full TX
// buffer cannot take (Firecracker src/vmm/src/devices/virtio/vsock/csm/
// connection.rs send_bytes and csm/txbuf.rs TxBuf::push, v1.14.0:
// silently), which only a guest that ignores its credit can cause.
func (r *txRig) expectedSkew(v device.Violation) bool {
	if v.Kind != device.BytesSkewed {
		return false
	}
	if r.prof.DuplicateOnPartialWrite {
		return true
	}
	c := r.credit[txcKey{v.LocalPort, v.PeerPort}]
	return c != nil && c.exceeded
}

func (r *txRig) postRX(addr uint64) error {
	head, err := r.rx.Add([]virtio.Buffer{{Addr: addr, Len: virtio.HeaderLen, Write: true}, {Addr: addr + virtio.HeaderLen, Len: txcRXData, Write: true}})
	if err != nil {
		return err
	}
	r.rxByHead[head] = addr + 1
	return nil
}

// patch writes fuzzer bytes into the TX region.
func (r *txRig) patch(off int, b []byte) {
	if off < txcRegionLen {
		b = b[:min(len(b), txcRegionLen-off)]
		_ = r.mem.AddressSpace.WriteAt(b, txcRegion+uint64(off))
	}
}

// publish sets the available index and accounts for the chains it offers.
func (r *txRig) publish(avail uint16) error {
	var b [2]byte
	b[0], b[1] = byte(avail), byte(avail>>8)
	if err := r.mem.AddressSpace.WriteAt(b[:], r.txl.Avail+2); err != nil {
		return err
	}
	delta := avail - r.avail
	if delta > r.size {
		r.overrun = true // the device must refuse the ring
	} else {
		r.popped += uint64(delta)
	}
	r.avail = avail
	return nil
}

// settle runs the world until it is idle, reaping and reposting RX
// buffers as a driver would, and checking every packet the device wrote.
func (r *txRig) settle() error {
	for i := 0; ; i++ {
		if i > 4*txcRXSize+64 {
			return errors.New("the device keeps filling RX buffers: no quiescence")
		}
		if err := settle(r.eng); err != nil {
			return err
		}
		if r.mem.bad != nil {
			return r.mem.bad
		}
		n, err := r.reapRX()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		r.dev.Notify(virtio.QueueRX)
	}
}

func (r *txRig) reapRX() (int, error) {
	n := 0
	var raw [virtio.HeaderLen]byte
	for {
		head, used, ok, err := r.rx.PopUsed()
		if err != nil {
			return n, fmt.Errorf("device corrupted the RX used ring: %w", err)
		}
		if !ok {
			return n, nil
		}
		n++
		addr := r.rxByHead[head] - 1
		r.rxByHead[head] = 0
		if used != 0 { // 0: a buffer the device discarded
			if err := r.mem.AddressSpace.ReadAt(raw[:], addr); err != nil {
				return n, err
			}
			h, _ := virtio.DecodeHeader(raw[:])
			if err := checkRXPacket(&h, used, txcRXData); err != nil {
				return n, err
			}
			r.guestHeard(&h)
		}
		if err := r.postRX(addr); err != nil {
			return n, err
		}
	}
}

// checkRXPacket: what a device writes into an RX buffer is a valid
// host-to-guest stream packet whose length matches the used length.
func checkRXPacket(h *virtio.Header, used, room uint32) error {
	switch {
	case used < virtio.HeaderLen || used-virtio.HeaderLen > room:
		return fmt.Errorf("RX used length %d outside [44, %d]", used, 44+room)
	case h.Len != used-virtio.HeaderLen:
		return fmt.Errorf("RX %v with used length %d", h, used)
	case h.SrcCID != virtio.CIDHost || h.DstCID != txcGuestCID:
		return fmt.Errorf("RX %v: wrong CIDs", h)
	case h.Type != virtio.TypeStream || !h.Op.Known() || h.Op == virtio.OpInvalid:
		return fmt.Errorf("RX %v: bad type or op", h)
	case h.Op == virtio.OpRW && h.Len == 0:
		return fmt.Errorf("RX %v: empty RW", h)
	case h.Op != virtio.OpRW && h.Len != 0:
		return fmt.Errorf("RX %v: payload on a control packet", h)
	}
	return nil
}

// check applies the per-round oracles.
func (r *txRig) check(round int) error {
	st := r.dev.Stats()
	vs := r.dev.Violations()
	for _, v := range vs[r.invariants:] {
		if r.expectedSkew(v) {
			continue
		}
		return fmt.Errorf("round %d: device invariant: %s", round, v)
	}
	r.invariants = len(vs)
	if n := r.eng.Log.Len(); uint64(n) != st.Violations || len(vs) != n {
		return fmt.Errorf("round %d: %d violations counted, %d kept, %d logged", round, st.Violations, len(vs), n)
	}
	if r.dev.Halted() {
		if !r.overrun && !r.prof.HaltOnShortInlineTX {
			return fmt.Errorf("round %d: profile %s halted without a modelled reason", round, r.prof.Name)
		}
		return nil
	}
	if r.overrun {
		return fmt.Errorf("round %d: available index ran past the ring and the device went on", round)
	}
	var b [2]byte
	if err := r.mem.AddressSpace.ReadAt(b[:], r.txl.Used+2); err != nil {
		return err
	}
	usedIdx := uint16(b[0]) | uint16(b[1])<<8
	pushed := uint64(usedIdx - r.usedSeen)
	r.usedSeen = usedIdx
	r.popped -= pushed
	if st.LeakedChains != r.popped {
		return fmt.Errorf("round %d: %d TX chains neither returned nor counted leaked (leaked %d)",
			round, int64(r.popped)-int64(st.LeakedChains), st.LeakedChains)
	}
	r.popped = st.LeakedChains
	return nil
}
