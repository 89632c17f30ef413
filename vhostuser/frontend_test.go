package vhostuser

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// The front-end plays QEMU 7.2's vhost-user-vsock-pci and the guest driver
// behind it: guest RAM in a memfd described as two regions, as q35 with
// 4 MiB lays it out (guest-physical 0..0xa0000 and 0xc0000..), rings
// addressed by made-up QEMU userspace addresses, eventfds for kicks and
// calls, and a minimal guest on the virtio package's driver side that posts
// RX buffers and writes TX chains into the shared memory.

const (
	ramSize   = 4 << 20
	hole      = 0xa0000 // end of the low region
	highStart = 0xc0000 // start of the high one
	userBase  = 0x7f3a00000000
	ringSize  = 128
	rxRingGPA = 0x100000
	txRingGPA = 0x104000
	rxArea    = 0x200000
	rxSlot    = 0x1000
	rxBufLen  = 3776 // what Debian's 6.1 and 6.12 drivers posted: w3776
	txArea    = 0x300000
	txSlot    = 0x2000 // header at +0, payload at +0x100, up to 7.75 KiB
	txSlots   = 16
)

type frontend struct {
	t     testing.TB
	c     *net.UnixConn
	memfd int
	ram   []byte
	mem   *virtio.AddressSpace
	kick  [numRings]int
	call  [numRings]int
	drv   [numRings]*virtio.Driver
	ack   bool // REPLY_ACK negotiated

	txNext int // TX chains queued since start
	rxGot  int // RX packets received since start
	rxBufs map[uint16]uint64
}

// harness is a back-end with real sockets in a temporary directory and a
// front-end connected to it.
type harness struct {
	*frontend
	b      *Backend
	dir    string
	uds    string
	served chan error
	mu     sync.Mutex
	log    []string
}

func newHarness(t testing.TB, device string) *harness {
	return newHarnessLogging(t, device, engine.KindAll&^engine.KindCredit)
}

func newHarnessLogging(t testing.TB, device string, kinds engine.Kind) *harness {
	return newHarnessWith(t, func(c *Config) { c.Device, c.LogKinds = device, kinds })
}

// newHarnessWith starts a back-end whose Config set adjusts.
func newHarnessWith(t testing.TB, set func(*Config)) *harness {
	dir := t.TempDir()
	h := &harness{dir: dir, uds: filepath.Join(dir, "v.sock"), served: make(chan error, 1)}
	cfg := Config{
		Socket: filepath.Join(dir, "vhost.sock"), UDS: h.uds,
		Log: func(r engine.Record) {
			h.mu.Lock()
			h.log = append(h.log, r.String())
			h.mu.Unlock()
		},
	}
	set(&cfg)
	b, err := Listen(cfg)
	require.NoError(t, err)
	h.b = b
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.served <- b.Serve(ctx) }()
	h.frontend = newFrontend(t, dialBackend(t, h))
	t.Cleanup(func() {
		cancel()
		h.c.Close()
		select {
		case <-h.served:
		case <-time.After(10 * time.Second): // a test that failed after taking the result
		}
		b.Close()
		h.frontend.close()
	})
	return h
}

// logged reports whether some log line contains every part, in order.
func (h *harness) logged(parts ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.log {
		rest, ok := l, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

func (h *harness) logText() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.log, "\n")
}

func dialBackend(t testing.TB, h *harness) *net.UnixConn {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(h.dir, "vhost.sock"), Net: "unix"})
	require.NoError(t, err)
	return c
}

func newFrontend(t testing.TB, c *net.UnixConn) *frontend {
	fd, err := unix.MemfdCreate("guest-ram", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	require.NoError(t, unix.Ftruncate(fd, ramSize))
	ram, err := unix.Mmap(fd, 0, ramSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	mem, err := virtio.NewAddressSpace(
		virtio.Region{Base: 0, Data: ram[:hole]},
		virtio.Region{Base: highStart, Data: ram[highStart:]},
	)
	require.NoError(t, err)
	f := &frontend{t: t, c: c, memfd: fd, ram: ram, mem: mem, rxBufs: map[uint16]uint64{}}
	for q := range numRings {
		f.kick[q] = newEventFD(t)
		f.call[q] = newEventFD(t)
	}
	return f
}

func newEventFD(t testing.TB) int {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	return fd
}

// must fails the test on err without testify's caller walk, which would
// dominate the benchmark's hot path.
func (f *frontend) must(err error) {
	if err != nil {
		f.t.Helper()
		require.NoError(f.t, err)
	}
}

func (f *frontend) close() {
	_ = unix.Munmap(f.ram)
	unix.Close(f.memfd)
	for q := range numRings {
		unix.Close(f.kick[q])
		unix.Close(f.call[q])
	}
}

// user is the made-up QEMU userspace address of guest-physical gpa.
func user(gpa uint64) uint64 { return userBase + gpa }

// frame encodes a message.
func frame(req, flags uint32, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, req)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// send writes a request with its descriptors (dups, so the caller keeps
// its own).
func (f *frontend) send(req uint32, payload []byte, fds ...int) {
	flags := uint32(flagVersion)
	if f.ack && needsAck(req) {
		flags |= flagNeedReply
	}
	f.sendRaw(frame(req, flags, payload), fds...)
	if flags&flagNeedReply != 0 {
		require.Equal(f.t, u64(0), f.reply(req), "REPLY_ACK of %s", RequestName(req))
	}
}

// needsAck: QEMU 7.2 asks for an ack on SET_MEM_TABLE and the vring setup
// when REPLY_ACK is negotiated; the test asks on every SET_* it sends.
func needsAck(req uint32) bool {
	switch req {
	case reqGetFeatures, reqGetProtocolFeatures, reqGetQueueNum, reqGetVringBase, reqGetConfig:
		return false
	}
	return true
}

func (f *frontend) sendRaw(b []byte, fds ...int) {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := f.c.WriteMsgUnix(b, oob, nil)
	require.NoError(f.t, err)
}

// reply reads the reply to req.
func (f *frontend) reply(req uint32) []byte {
	require.NoError(f.t, f.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	var hdr [headerLen]byte
	_, err := readFull(f.c, hdr[:])
	require.NoError(f.t, err, "reply to %s", RequestName(req))
	le := binary.LittleEndian
	require.Equal(f.t, req, le.Uint32(hdr[:]), "reply's request")
	require.Equal(f.t, uint32(flagVersion|flagReply), le.Uint32(hdr[4:]), "reply's flags")
	p := make([]byte, le.Uint32(hdr[8:]))
	_, err = readFull(f.c, p)
	require.NoError(f.t, err)
	return p
}

func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := c.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *frontend) get(req uint32, payload []byte) []byte {
	f.send(req, payload)
	return f.reply(req)
}

// handshake is what QEMU 7.2 sends when the device is realized, before the
// guest driver starts (docs/sources.md#qemu-vhost-user-vsock: GET_FEATURES ...
// GET_CONFIG).
func (f *frontend) handshake() {
	le := binary.LittleEndian
	require.Equal(f.t, offeredFeatures, le.Uint64(f.get(reqGetFeatures, nil)))
	require.Equal(f.t, offeredProtocol, le.Uint64(f.get(reqGetProtocolFeatures, nil)))
	f.send(reqSetProtocolFeatures, u64(offeredProtocol))
	f.ack = true
	require.Equal(f.t, uint64(2), le.Uint64(f.get(reqGetQueueNum, nil)))
	f.send(reqSetOwner, nil)
	f.get(reqGetFeatures, nil)
	for q := range numRings {
		f.send(reqSetVringCall, u64(uint64(q)), f.call[q])
		f.send(reqSetVringErr, u64(uint64(q)), f.call[q]) // any eventfd will do
	}
	cfg := f.get(reqGetConfig, configRequest(0, 8))
	require.Len(f.t, cfg, 20)
	require.Equal(f.t, uint32(8), le.Uint32(cfg[4:]))
	require.Equal(f.t, uint64(3), le.Uint64(cfg[12:]), "guest_cid")
}

// configRequest is GET_CONFIG's payload: le32 offset, size, flags, then
// size bytes.
func configRequest(off, size uint32) []byte {
	le := binary.LittleEndian
	p := le.AppendUint32(nil, off)
	p = le.AppendUint32(p, size)
	p = le.AppendUint32(p, 0)
	return append(p, make([]byte, size)...)
}

// memTable is SET_MEM_TABLE's payload for the two regions.
func memTablePayload() []byte {
	le := binary.LittleEndian
	p := le.AppendUint32(nil, 2)
	p = le.AppendUint32(p, 0)
	for _, r := range [][4]uint64{
		{0, hole, user(0), 0},
		{highStart, ramSize - highStart, user(highStart), highStart},
	} {
		for _, v := range r {
			p = le.AppendUint64(p, v)
		}
	}
	return p
}

// start is the guest driver's probe as QEMU passes it on: features, the
// memory table, then each ring, then enable. base is the rings' start.
func (f *frontend) start() {
	f.send(reqSetFeatures, u64(FeatureVersion1|FeatureProtocolFeatures))
	f.send(reqSetMemTable, memTablePayload(), f.memfd, f.memfd)
	for q, gpa := range [numRings]uint64{rxRingGPA, txRingGPA} {
		l, _ := virtio.ContiguousLayout(gpa, ringSize)
		d, err := virtio.NewDriver(f.mem, l, 0)
		require.NoError(f.t, err)
		f.drv[q] = d
		f.send(reqSetVringNum, vringState(uint32(q), ringSize))
		f.send(reqSetVringBase, vringState(uint32(q), 0))
		f.send(reqSetVringAddr, vringAddr(uint32(q), user(l.Desc), user(l.Used), user(l.Avail)))
		f.send(reqSetVringKick, u64(uint64(q)), f.kick[q])
		f.send(reqSetVringCall, u64(uint64(q)), f.call[q])
	}
	f.rxBufs = map[uint16]uint64{}
	f.txNext, f.rxGot = 0, 0
	for i := range 32 {
		f.postRX(rxArea + uint64(i)*rxSlot)
	}
	for q := range numRings {
		f.send(reqSetVringEnable, vringState(uint32(q), 1))
	}
	f.kickRing(virtio.QueueRX)
}

// stop is QEMU stopping the device: disable, then GET_VRING_BASE for each
// ring, which returns the next available index.
func (f *frontend) stop() [numRings]uint32 {
	for q := range numRings {
		f.send(reqSetVringEnable, vringState(uint32(q), 0))
	}
	var bases [numRings]uint32
	for q := range numRings {
		p := f.get(reqGetVringBase, vringState(uint32(q), 0))
		require.Len(f.t, p, 8)
		require.Equal(f.t, uint32(q), binary.LittleEndian.Uint32(p))
		bases[q] = binary.LittleEndian.Uint32(p[4:])
	}
	return bases
}

func vringAddr(q uint32, desc, used, avail uint64) []byte {
	le := binary.LittleEndian
	p := le.AppendUint32(nil, q)
	p = le.AppendUint32(p, 0)
	for _, v := range []uint64{desc, used, avail, 0} {
		p = le.AppendUint64(p, v)
	}
	return p
}

func (f *frontend) postRX(addr uint64) {
	head, err := f.drv[virtio.QueueRX].Add([]virtio.Buffer{{Addr: addr, Len: rxBufLen, Write: true}})
	f.must(err)
	f.rxBufs[head] = addr
}

func (f *frontend) kickRing(q int) {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	_, err := unix.Write(f.kick[q], one[:])
	require.NoError(f.t, err)
}

// waitCall waits for ring q's interrupt and reports whether it came.
func waitCall(fd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(max(time.Until(deadline), 0)/time.Millisecond))
		if err == unix.EINTR {
			continue // the runtime's preemption signal
		}
		if err != nil || n == 0 {
			return false
		}
		break
	}
	var b [8]byte
	_, _ = unix.Read(fd, b[:])
	return true
}

// reapTX takes back the TX chains the device finished.
func (f *frontend) reapTX() int {
	n := 0
	for {
		_, _, ok, err := f.drv[virtio.QueueTX].PopUsed()
		f.must(err)
		if !ok {
			return n
		}
		n++
	}
}

// sendPkt lays a packet out as Linux 6.1 does for data, header and payload
// in two descriptors (r44 rN), or the header alone, and kicks TX.
func (f *frontend) sendPkt(h virtio.Header, payload []byte) {
	f.sendShaped(h, payload, uint32(len(payload)))
}

// sendShaped lays the payload out in data descriptors of the given lengths
// after the header's, as a nonlinear skb's fragments.
func (f *frontend) sendShaped(h virtio.Header, payload []byte, lens ...uint32) {
	f.reapTX()
	h.Len = uint32(len(payload))
	addr := txArea + uint64(f.txNext%txSlots)*txSlot
	f.txNext++
	var hb [virtio.HeaderLen]byte
	f.must(h.Encode(hb[:]))
	f.must(f.mem.WriteAt(hb[:], addr))
	bufs := []virtio.Buffer{{Addr: addr, Len: virtio.HeaderLen}}
	if len(payload) > 0 {
		f.must(f.mem.WriteAt(payload, addr+0x100))
		at := addr + 0x100
		for _, n := range lens {
			bufs = append(bufs, virtio.Buffer{Addr: at, Len: n})
			at += uint64(n)
		}
	}
	_, err := f.drv[virtio.QueueTX].Add(bufs)
	f.must(err)
	f.kickRing(virtio.QueueTX)
}

// recvPkt returns the next packet the device wrote into an RX buffer,
// reposting the buffer.
func (f *frontend) recvPkt(timeout time.Duration) (virtio.Header, []byte) {
	deadline := time.Now().Add(timeout)
	for {
		head, n, ok, err := f.drv[virtio.QueueRX].PopUsed()
		require.NoError(f.t, err)
		if ok {
			addr := f.rxBufs[head]
			delete(f.rxBufs, head)
			f.rxGot++
			require.GreaterOrEqual(f.t, n, uint32(virtio.HeaderLen))
			b := make([]byte, n)
			require.NoError(f.t, f.mem.ReadAt(b, addr))
			h, err := virtio.DecodeHeader(b)
			require.NoError(f.t, err)
			require.Equal(f.t, int(h.Len), len(b)-virtio.HeaderLen, "used length against the header's")
			f.postRX(addr)
			f.kickRing(virtio.QueueRX)
			return h, b[virtio.HeaderLen:]
		}
		left := time.Until(deadline)
		if left <= 0 {
			require.FailNow(f.t, "no packet from the device", "within %s", timeout)
		}
		waitCall(f.call[virtio.QueueRX], min(left, 100*time.Millisecond))
	}
}

// expectNoPkt checks that the device writes nothing into RX for d.
func (f *frontend) expectNoPkt(d time.Duration) {
	time.Sleep(d)
	_, _, ok, err := f.drv[virtio.QueueRX].PopUsed()
	require.NoError(f.t, err)
	require.False(f.t, ok, "the device wrote a packet")
}

func hdr(src, dst uint32, op virtio.Op, bufAlloc, fwdCnt uint32) virtio.Header {
	return virtio.Header{
		SrcCID: 3, DstCID: virtio.CIDHost, SrcPort: src, DstPort: dst,
		Type: virtio.TypeStream, Op: op, BufAlloc: bufAlloc, FwdCnt: fwdCnt,
	}
}

func pktString(h virtio.Header) string { return fmt.Sprintf("%s", h) }
