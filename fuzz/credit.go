package fuzz

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/internal/pattern"
	"github.com/vsocklab/vsocklab/virtio"
)

// creditDevices and creditKernels are profile pairs that are meant to work
// together: the oracles of CheckCredit hold for every combination. Every
// pair is RX-compatible (emu.RXCompatible, checked by a test); the devices
// are the fixed builds, so the known TX breakages (cloud-hypervisor-50 with
// a nonlinear-TX kernel, the v1.6..v1.13 iovec duplication) are not among
// them: those wedge by design and belong to scenario tests. Fuzz input
// selects from the lists by index modulo their lengths: changing either
// list changes what the corpus means.
var (
	creditDevices = []string{"firecracker-1.14", "firecracker-main", "cloud-hypervisor-51"}
	creditKernels = []string{"linux-6.12.68", "linux-6.6"}
)

// Operation kinds of CheckCredit, the low three bits of an op byte.
const (
	opGuestSend = iota
	opHostWrite
	opGuestRead
	opHostRead
	opGuestBuffer
	opRunTime
	opClose
	opBothWrite
)

// Sub-kinds of opClose, the size modulo 4.
const (
	closeHostWrite = iota // the host program shuts its socket down for writing
	closeGuestSend        // shutdown(SHUT_WR) in the guest
	closeGuestRecv        // shutdown(SHUT_RD) in the guest
	closeNothing
)

const (
	creditPort   = 5000
	creditMaxOps = 48
	// creditBudget bounds the bytes one input may offer to Send and Write
	// (later writes are skipped), so that no input costs more than a few
	// milliseconds: random inputs would otherwise ask for 48 x 512 KiB.
	creditBudget = 2 << 20
)

// CheckCredit runs one established guest<->host stream connection through
// a sequence of operations decoded from data and checks the stream and
// credit oracles.
//
// Layout of data: byte 0 picks the device profile (modulo 3 of
// creditDevices), the kernel (the quotient modulo 2 of creditKernels) and
// who connects (the quotient by 6, bit 0: the host through the device's
// Unix socket, else the guest). Then up to 48 operations of three bytes: a
// kind in bits 0-2, a scale s in bits 3-4, and a u16 v giving the size
// n = v << s (up to 512 KiB). Kinds: guest send n bytes, host write n,
// guest read up to n, host read up to n, guest SO_VM_SOCKETS_BUFFER_SIZE
// n, run n milliseconds, a close (n mod 4: host shutdown(SHUT_WR), guest
// SHUT_WR, guest SHUT_RD, nothing) and both sides writing n at once. A
// write or read runs the world between attempts until it is done or
// blocked. Writes stop being offered after 2 MiB in all (creditBudget).
//
// Oracles, after every operation: the bytes each side received are a
// prefix of what the other side sent, in order, none twice; the guest's
// free credit never exceeds the device's buffer (no u32 underflow), the
// guest never has more than the device's buffer in flight and the device
// never has more than the guest's buf_alloc in flight; the device's
// invariants hold (Violations 0); the guest kernel drops nothing. A buffer
// size change that could strand bytes the device already believes it may
// send (a shrink below what is in flight, or while the guest's TX ring is
// backlogged) is not applied: that loss is real Firecracker and Linux
// behaviour (docs/sources.md#fc-credit-update), not a lab bug. At the end both sides keep reading
// while time runs: every byte a Send or Write accepted must arrive, unless
// an operation closed that direction (a host shutdown(SHUT_WR) ends the
// guest-to-host direction in the device, a guest SHUT_RD the other).
func CheckCredit(data []byte) error {
	in := &input{b: data}
	sel := int(in.u8())
	devName := creditDevices[sel%len(creditDevices)]
	kernName := creditKernels[sel/len(creditDevices)%len(creditKernels)]
	hostInit := sel/(len(creditDevices)*len(creditKernels))%2 == 1
	c, err := newCreditRig(devName, kernName, hostInit)
	if err != nil {
		return err
	}
	for i := 0; i < creditMaxOps && !in.done(); i++ {
		op := in.u8()
		n := int(in.u16()) << ((op >> 3) & 3)
		if err := c.do(op&7, n); err != nil {
			return fmt.Errorf("%s/%s, op %d (kind %d, n %d): %w\n%s", devName, kernName, i, op&7, n, err, c.status())
		}
		if err := c.check(); err != nil {
			return fmt.Errorf("%s/%s, after op %d (kind %d, n %d): %w\n%s", devName, kernName, i, op&7, n, err, c.status())
		}
	}
	if err := c.drain(); err != nil {
		return fmt.Errorf("%s/%s, drain: %w\n%s", devName, kernName, err, c.status())
	}
	return nil
}

type creditRig struct {
	w    *emu.World
	k    *guest.Kernel
	s    *guest.Socket
	host *uds.Conn

	guestSent, hostRecv  uint64 // guest -> host stream
	hostSent, guestRecv  uint64 // host -> guest stream
	hostShutWr           bool   // host shutdown(SHUT_WR)
	guestShutWr          bool   // guest SHUT_WR
	guestShutRd          bool   // guest SHUT_RD
	guestEOF, hostEOF    bool
	hostErr, guestErr    error // a read or write error that is not EAGAIN
	localPort, peerPort  uint32
	invariants           int
	buf                  []byte
	shrinks, shrinksSkip int
	offered              int // bytes offered to Send and Write, against creditBudget
}

func newCreditRig(devName, kernName string, hostInit bool) (*creditRig, error) {
	// 1 MiB: the guest's TX arena hands out naturally aligned power-of-two
	// blocks (128 KiB for a linear 64 KiB packet) and never merges them, so
	// a smaller world runs out of TX memory (ArenaExhausted) after a few
	// packet sizes. Its allocation is most of a short run's cost.
	w, err := emu.New(emu.Config{Seed: 1, Device: devName, Kernel: kernName, MemSize: 1 << 20, QueueSize: 64})
	if err != nil {
		return nil, err
	}
	w.Eng.Log.Keep(engine.KindInvariant)
	c := &creditRig{w: w, k: w.Guest}
	k := w.Guest
	if hostInit {
		l := k.Socket()
		if err := k.Bind(l, virtio.CIDAny, creditPort, false); err != nil {
			return nil, err
		}
		if err := k.Listen(l, 16); err != nil {
			return nil, err
		}
		if c.host, err = w.Host.Connect(w.Config().UDSPath); err != nil {
			return nil, err
		}
		if _, err := c.host.Write([]byte("CONNECT " + strconv.Itoa(creditPort) + "\n")); err != nil {
			return nil, err
		}
		if err := settle(w.Eng); err != nil {
			return nil, err
		}
		if c.s, err = k.Accept(l); err != nil {
			return nil, fmt.Errorf("guest accept: %w", err)
		}
		var line []byte
		var b [1]byte
		for len(line) == 0 || line[len(line)-1] != '\n' {
			if _, err := c.host.Read(b[:]); err != nil {
				return nil, fmt.Errorf("reading the OK line after %q: %w", line, err)
			}
			line = append(line, b[0])
		}
		port, err := strconv.ParseUint(string(line[3:len(line)-1]), 10, 32)
		if string(line[:3]) != "OK " || err != nil {
			return nil, fmt.Errorf("ack line %q", line)
		}
		c.localPort, c.peerPort = uint32(port), creditPort
	} else {
		path := w.Config().UDSPath + "_" + strconv.Itoa(creditPort)
		l, err := w.Host.Listen(path, 16)
		if err != nil {
			return nil, err
		}
		c.s = k.Socket()
		if err := k.Connect(c.s, virtio.CIDHost, creditPort); !errors.Is(err, syscall.EINPROGRESS) {
			return nil, fmt.Errorf("guest connect: %v", err)
		}
		if err := settle(w.Eng); err != nil {
			return nil, err
		}
		if done, err := k.ConnectResult(c.s); !done || err != nil {
			return nil, fmt.Errorf("guest connect: done %v, %v", done, err)
		}
		if c.host, err = l.Accept(); err != nil {
			return nil, fmt.Errorf("host accept: %w", err)
		}
		c.localPort, c.peerPort = creditPort, c.s.Local().Port
	}
	return c, nil
}

func (c *creditRig) scratch(n int) []byte {
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	return c.buf[:n]
}

// do runs one operation.
func (c *creditRig) do(kind byte, n int) error {
	switch kind {
	case opGuestSend:
		return c.guestSend(n)
	case opHostWrite:
		return c.hostWrite(n)
	case opGuestRead:
		_, err := c.guestRead(n)
		return err
	case opHostRead:
		_, err := c.hostRead(n)
		return err
	case opGuestBuffer:
		return c.setBuffer(uint64(n))
	case opRunTime:
		return runUntil(c.w.Eng, c.w.Eng.Now()+time.Duration(n)*time.Millisecond)
	case opClose:
		switch n % 4 {
		case closeHostWrite:
			if err := c.host.CloseWrite(); err != nil {
				return fmt.Errorf("host CloseWrite: %w", err)
			}
			c.hostShutWr = true
		case closeGuestSend:
			if c.k.Shutdown(c.s, guest.ShutSend) == nil {
				c.guestShutWr = true
			}
		case closeGuestRecv:
			if c.k.Shutdown(c.s, guest.ShutRcv) == nil {
				c.guestShutRd = true
			}
		}
		return settle(c.w.Eng)
	default: // opBothWrite: one call on each side, the world not running in between
		p := c.scratch(max(0, min(n, creditChunk, creditBudget-c.offered)))
		c.offered += 2 * len(p)
		pattern.Fill(p, c.guestSent)
		if k, err := c.k.Send(c.s, p, false); err == nil {
			c.guestSent += uint64(k)
		}
		pattern.Fill(p, c.hostSent)
		if k, err := c.host.Write(p); err == nil {
			c.hostSent += uint64(k)
		}
		return settle(c.w.Eng)
	}
}

// creditChunk is how much of a write the harness lays out at a time: more
// than any single call can accept from a blocked state is wasted pattern
// filling (a send takes at most the 64 KiB credit).
const creditChunk = 64 << 10

// guestSend is a blocking send of n bytes that gives up when the world is
// idle and nothing more is accepted (the program would block).
func (c *creditRig) guestSend(n int) error {
	return c.write(n, &c.guestSent, func(p []byte) (int, error) { return c.k.Send(c.s, p, false) })
}

func (c *creditRig) hostWrite(n int) error {
	return c.write(n, &c.hostSent, c.host.Write)
}

// write offers n pattern bytes from offset *sent, running the world between
// calls, until all are taken or a call takes nothing (blocked: EAGAIN) or
// fails (EPIPE, ...): all legal outcomes.
func (c *creditRig) write(n int, sent *uint64, call func([]byte) (int, error)) error {
	n = min(n, creditBudget-c.offered)
	for n > 0 {
		p := c.scratch(min(n, creditChunk))
		c.offered += len(p)
		pattern.Fill(p, *sent)
		k, err := call(p)
		*sent += uint64(k)
		n -= k
		if err := settle(c.w.Eng); err != nil {
			return err
		}
		if err != nil || k == 0 {
			return nil
		}
	}
	return nil
}

// guestRead reads up to n bytes, running the world while data comes.
func (c *creditRig) guestRead(n int) (int, error) {
	total := 0
	p := c.scratch(min(n, creditChunk))
	for total < n {
		k, err := c.k.Recv(c.s, p[:min(len(p), n-total)], false)
		if k > 0 {
			if perr := pattern.Check(p[:k], c.guestRecv); perr != nil {
				return total, fmt.Errorf("guest received: %w", perr)
			}
			c.guestRecv += uint64(k)
			total += k
		}
		if serr := settle(c.w.Eng); serr != nil {
			return total, serr
		}
		switch {
		case err == nil && k == 0:
			c.guestEOF = true
			return total, nil
		case errors.Is(err, syscall.EAGAIN):
			return total, nil
		case err != nil:
			c.guestErr = err
			return total, nil
		}
	}
	return total, nil
}

func (c *creditRig) hostRead(n int) (int, error) {
	total := 0
	p := c.scratch(min(n, creditChunk))
	for total < n {
		k, err := c.host.Read(p[:min(len(p), n-total)])
		if k > 0 {
			if perr := pattern.Check(p[:k], c.hostRecv); perr != nil {
				return total, fmt.Errorf("host received: %w", perr)
			}
			c.hostRecv += uint64(k)
			total += k
		}
		if serr := settle(c.w.Eng); serr != nil {
			return total, serr
		}
		switch {
		case isEOF(err):
			c.hostEOF = true
			return total, nil
		case errors.Is(err, syscall.EAGAIN):
			return total, nil
		case err != nil:
			c.hostErr = err
			return total, nil
		}
	}
	return total, nil
}

// devConn returns the device's view of the connection.
func (c *creditRig) devConn() (device.ConnInfo, bool) {
	for _, ci := range c.w.Dev.Conns() {
		if ci.LocalPort == c.localPort && ci.PeerPort == c.peerPort {
			return ci, true
		}
	}
	return device.ConnInfo{}, false
}

// setBuffer changes the guest socket's buffer size, unless a shrink could
// strand bytes: the device may send up to the buf_alloc it last heard of,
// so the new size must cover what is in flight now, and the CREDIT_UPDATE
// must reach the device before it sends more (the guest's TX ring empty).
func (c *creditRig) setBuffer(n uint64) error {
	_, cur := c.s.BufferSize()
	if n < uint64(cur) {
		dc, ok := c.devConn()
		info := c.k.Info(c.s)
		inFlight := uint64(dc.RxCnt - info.FwdCnt)
		if !ok || c.k.TXInFlight() != 0 || n < inFlight {
			c.shrinksSkip++
			return nil
		}
		c.shrinks++
	}
	c.k.SetBufferSize(c.s, n)
	return settle(c.w.Eng)
}

// check applies the oracles that hold after every operation.
func (c *creditRig) check() error {
	if c.hostRecv > c.guestSent || c.guestRecv > c.hostSent {
		return errors.New("a side received more than the other sent")
	}
	st := c.w.Dev.Stats()
	if v := c.w.Dev.Violations(); len(v) > 0 {
		return fmt.Errorf("device invariant: %s", v[0])
	}
	if st.Violations != 0 || st.Halts != 0 || st.BadTXChains != 0 || st.BadRXChains != 0 || st.LeakedChains != 0 {
		return fmt.Errorf("device stats: violations %d, halts %d, bad TX %d, bad RX %d, leaked %d",
			st.Violations, st.Halts, st.BadTXChains, st.BadRXChains, st.LeakedChains)
	}
	ks := c.k.Stats()
	if ks.RWDropped != 0 || ks.OverflowResets != 0 || ks.RXDropped != 0 || ks.UsedRingErrors != 0 || ks.ArenaExhausted != 0 {
		return fmt.Errorf("guest stats: RW dropped %d, overflow resets %d, RX dropped %d, used ring errors %d, arena exhausted %d",
			ks.RWDropped, ks.OverflowResets, ks.RXDropped, ks.UsedRingErrors, ks.ArenaExhausted)
	}
	info := c.k.Info(c.s)
	if info.PeerFree > device.TxBufSize {
		return fmt.Errorf("guest credit %d exceeds the device's buffer %d: underflow", info.PeerFree, device.TxBufSize)
	}
	if dc, ok := c.devConn(); ok {
		if fl := info.TxCnt - dc.FwdCnt; fl > device.TxBufSize && !dc.Killed {
			return fmt.Errorf("guest has %d bytes in flight, more than the device's buffer %d", fl, device.TxBufSize)
		}
		if _, ba := c.s.BufferSize(); dc.RxCnt-info.FwdCnt > ba && info.State == guest.StateEstablished {
			return fmt.Errorf("device has %d bytes in flight, more than the guest's buf_alloc %d", dc.RxCnt-info.FwdCnt, ba)
		}
	}
	return nil
}

// drain keeps reading on both ends while time runs, then checks that
// every accepted byte arrived.
func (c *creditRig) drain() error {
	idle := 0
	for i := 0; idle < 3; i++ {
		if i > 4096 {
			return errors.New("drain does not end: data keeps coming")
		}
		g, err := c.guestRead(1 << 30)
		if err != nil {
			return err
		}
		h, err := c.hostRead(1 << 30)
		if err != nil {
			return err
		}
		if err := c.check(); err != nil {
			return err
		}
		if g == 0 && h == 0 {
			idle++
			if err := runUntil(c.w.Eng, c.w.Eng.Now()+time.Second); err != nil {
				return err
			}
		} else {
			idle = 0
		}
	}
	if !c.hostShutWr && c.hostRecv != c.guestSent {
		return fmt.Errorf("wedged: the guest sent %d bytes, the host received %d", c.guestSent, c.hostRecv)
	}
	if !c.guestShutRd && c.guestRecv != c.hostSent {
		return fmt.Errorf("wedged: the host wrote %d bytes, the guest received %d", c.hostSent, c.guestRecv)
	}
	return nil
}

func (c *creditRig) status() string {
	info := c.k.Info(c.s)
	size, ba := c.s.BufferSize()
	dc, ok := c.devConn()
	return fmt.Sprintf("  guest->host: sent %d, received %d; host->guest: sent %d, received %d\n"+
		"  closes: host SHUT_WR %v, guest SHUT_WR %v, guest SHUT_RD %v; EOF guest %v host %v; errors guest %v host %v\n"+
		"  guest socket: %+v buffer %d/%d, shrinks %d (skipped %d)\n  device conn (%v): %+v\n  device stats: %+v\n  guest stats: %+v",
		c.guestSent, c.hostRecv, c.hostSent, c.guestRecv,
		c.hostShutWr, c.guestShutWr, c.guestShutRd, c.guestEOF, c.hostEOF, c.guestErr, c.hostErr,
		info, size, ba, c.shrinks, c.shrinksSkip, ok, dc, c.w.Dev.Stats(), c.k.Stats())
}
