package guest

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// rig drives one kernel against a scripted device: whatever the guest puts
// in the TX ring is recorded, and the test hands packets to the guest
// through real RX buffers.
type rig struct {
	t    *testing.T
	eng  *engine.Engine
	mem  *virtio.AddressSpace
	k    *Kernel
	dev  [3]*virtio.DeviceQueue
	sent []sentPkt
}

type sentPkt struct {
	hdr     virtio.Header
	payload []byte
	shape   string
}

const guestCID = 3

func newRig(t *testing.T, p Profile) *rig {
	t.Helper()
	r := &rig{t: t, eng: engine.New(7), mem: virtio.NewFlatMemory(0, 8<<20)}
	var layouts [3]virtio.Layout
	base := uint64(0)
	for q := range layouts {
		l, n := virtio.ContiguousLayout(base, 256)
		layouts[q] = l
		base = (base + n + 4095) &^ 4095
	}
	pending := false
	cfg := Config{
		CID: guestCID, Mem: r.mem, Queues: layouts, Arena: Range{Base: base, Size: 8<<20 - base},
		Notify: func(q int) {
			if !pending {
				pending = true
				r.eng.At(r.eng.Now(), func() { pending = false; r.pollTX() })
			}
		},
	}
	for q := range layouts {
		dq, err := virtio.NewDeviceQueue(r.mem, layouts[q], 0)
		require.NoError(t, err)
		r.dev[q] = dq
	}
	k, err := New(r.eng, p, cfg)
	require.NoError(t, err)
	r.k = k
	r.run()
	return r
}

func (r *rig) run() { r.eng.RunUntil(r.eng.Now()) }

func (r *rig) pollTX() {
	pushed := false
	for {
		c, ok, err := r.dev[virtio.QueueTX].Pop()
		require.NoError(r.t, err)
		if !ok {
			break
		}
		buf := make([]byte, c.ReadableLen())
		_, err = c.ReadOut(r.mem, 0, buf)
		require.NoError(r.t, err)
		h, err := virtio.DecodeHeader(buf)
		require.NoError(r.t, err)
		r.sent = append(r.sent, sentPkt{hdr: h, payload: buf[virtio.HeaderLen:], shape: c.Shape()})
		require.NoError(r.t, r.dev[virtio.QueueTX].Push(c.Head, 0))
		pushed = true
	}
	if pushed {
		r.k.Interrupt()
	}
}

// deliver writes a packet into the next RX buffer and interrupts the guest.
func (r *rig) deliver(h virtio.Header, payload ...byte) {
	r.t.Helper()
	h.Len = uint32(len(payload))
	r.deliverRaw(h, payload, uint32(virtio.HeaderLen+len(payload)))
}

func (r *rig) deliverRaw(h virtio.Header, payload []byte, used uint32) {
	r.t.Helper()
	c, ok, err := r.dev[virtio.QueueRX].Pop()
	require.NoError(r.t, err)
	require.True(r.t, ok, "no RX buffer posted")
	_, err = c.WriteIn(r.mem, 0, h.Append(nil))
	require.NoError(r.t, err)
	// The payload goes after the header, in whatever descriptors follow.
	_, err = c.WriteIn(r.mem, virtio.HeaderLen, payload)
	require.NoError(r.t, err)
	require.NoError(r.t, r.dev[virtio.QueueRX].Push(c.Head, used))
	r.k.Interrupt()
	r.run()
}

func (r *rig) transportReset() {
	c, ok, err := r.dev[virtio.QueueEvent].Pop()
	require.NoError(r.t, err)
	require.True(r.t, ok)
	_, err = c.WriteIn(r.mem, 0, []byte{0, 0, 0, 0})
	require.NoError(r.t, err)
	require.NoError(r.t, r.dev[virtio.QueueEvent].Push(c.Head, 4))
	r.k.Interrupt()
	r.run()
}

// take returns and forgets the packets sent so far.
func (r *rig) take() []sentPkt {
	out := r.sent
	r.sent = nil
	return out
}

func (r *rig) ops(ps []sentPkt) []virtio.Op {
	var out []virtio.Op
	for _, p := range ps {
		out = append(out, p.hdr.Op)
	}
	return out
}

// fromHost builds a header from the host side of a connection to s.
func fromHost(hostPort, guestPort uint32, op virtio.Op) virtio.Header {
	return virtio.Header{SrcCID: 2, DstCID: guestCID, SrcPort: hostPort, DstPort: guestPort, Type: virtio.TypeStream, Op: op, BufAlloc: 64 * 1024}
}

// established returns a connected client socket to host port 9000 with the
// host advertising buf_alloc 64 KiB, as Firecracker does.
func (r *rig) established() *Socket {
	s := r.k.Socket()
	require.ErrorIs(r.t, r.k.Connect(s, 2, 9000), syscall.EINPROGRESS)
	r.run()
	req := r.take()
	require.Len(r.t, req, 1)
	r.deliver(fromHost(9000, s.local.Port, virtio.OpResponse))
	done, err := r.k.ConnectResult(s)
	require.True(r.t, done)
	require.NoError(r.t, err)
	return s
}

// listening returns a listener on port with an accepted child for a host
// connection from hostPort.
func (r *rig) listening(port, hostPort uint32) (*Socket, *Socket) {
	l := r.k.Socket()
	require.NoError(r.t, r.k.Bind(l, virtio.CIDAny, port, true))
	require.NoError(r.t, r.k.Listen(l, 16))
	r.deliver(fromHost(hostPort, port, virtio.OpRequest))
	resp := r.take()
	require.Len(r.t, resp, 1)
	require.Equal(r.t, virtio.OpResponse, resp[0].hdr.Op)
	c, err := r.k.Accept(l)
	require.NoError(r.t, err)
	return l, c
}
