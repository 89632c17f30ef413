package vhostuser

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/virtio"
)

// numRings is how many rings reach the back-end: RX (0) and TX (1). QEMU
// keeps the vsock event queue itself (hw/virtio/vhost-vsock-common.c,
// vhost_vsock_common_realize, v7.2.0: the vhost device has 2 virtqueues).
const numRings = 2

// vring is what the front-end told the back-end about one ring. The
// session goroutine owns every field except those under signals.mu.
type vring struct {
	num               uint16 // 0: not set
	base              uint16 // next available index, SET_VRING_BASE or the last stop
	desc, used, avail uint64 // front-end userspace addresses
	addrSet           bool
	kick              *os.File // nil: stopped
	kickDone          chan struct{}
	layout            virtio.Layout // guest-physical, fixed at start
}

// signals holds what the world's goroutine reads to raise interrupts.
type signals struct {
	mu      sync.Mutex
	call    [numRings]int // call eventfds, -1 when none
	enabled [numRings]bool
	missed  [numRings]bool // an interrupt held while the ring was disabled
}

func newSignals() *signals {
	s := &signals{}
	for i := range s.call {
		s.call[i] = -1
	}
	return s
}

// raise signals ring q's call eventfd. Without VIRTIO_F_EVENT_IDX every
// used buffer may be signalled (rust-vmm vhost-user-backend, Queue
// needs_notification, is always true without it); the driver's
// VRING_AVAIL_F_NO_INTERRUPT hint is not honoured, which the virtio spec
// allows (split "Used Buffer Notification Suppression": SHOULD NOT).
func (s *signals) raise(q int) {
	if q < 0 || q >= numRings {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.enabled[q] {
		s.missed[q] = true
		return
	}
	signalFD(s.call[q])
}

func signalFD(fd int) {
	if fd < 0 {
		return
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(fd, one[:]) // EAGAIN only when the counter is full: already signalled
}

func (s *signals) setCall(q, fd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.call[q] >= 0 {
		unix.Close(s.call[q])
	}
	s.call[q] = fd
}

// setEnabled records SET_VRING_ENABLE; an interrupt held while disabled is
// raised on enable.
func (s *signals) setEnabled(q int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enabled[q] = on
	if on && s.missed[q] {
		s.missed[q] = false
		signalFD(s.call[q])
	}
}

func (s *signals) isEnabled(q int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enabled[q]
}

func (s *signals) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, fd := range s.call {
		if fd >= 0 {
			unix.Close(fd)
		}
		s.call[i] = -1
	}
}

// watchKick forwards the kicks of ring q to the world until the kick file
// is closed. Each read drains the eventfd's counter, so kicks that arrive
// while the device works coalesce, as the device's own Notify does.
func (b *Backend) watchKick(q int, f *os.File, done chan struct{}) {
	defer close(done)
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				b.logf("ring %d: kick eventfd: %v; ring no longer kicked", q, err)
			}
			return
		}
		if !b.sig.isEnabled(q) {
			continue // a disabled ring is not processed; enabling kicks it
		}
		_ = b.lab.Do(func(w *emu.World) error { w.Kick(q); return nil })
	}
}

// kickFile wraps a kick eventfd for the runtime's poller, so that closing
// the file wakes a pending read.
func kickFile(fd int) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "kick"), nil
}
