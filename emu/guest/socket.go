package guest

import (
	"fmt"
	"syscall"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// State is a socket's sk_state, with Linux's names.
type State uint8

// The TCP_* states vsock uses.
const (
	StateClose       State = iota // TCP_CLOSE: fresh, failed, or reset by the transport
	StateListen                   // TCP_LISTEN
	StateSynSent                  // TCP_SYN_SENT: REQUEST sent, waiting for RESPONSE
	StateEstablished              // TCP_ESTABLISHED
	StateClosing                  // TCP_CLOSING: the peer reset or shut down and nothing is unread
)

func (s State) String() string {
	return [...]string{"CLOSE", "LISTEN", "SYN_SENT", "ESTABLISHED", "CLOSING"}[s]
}

// Shutdown bits, in the kernel's sk_shutdown sense.
const (
	ShutRcv  = 1 // RCV_SHUTDOWN
	ShutSend = 2 // SEND_SHUTDOWN
	ShutBoth = ShutRcv | ShutSend
)

// Buffer size limits of SO_VM_SOCKETS_BUFFER_SIZE (af_vsock.c).
const (
	DefaultBufferSize = 256 * 1024
	MinBufferSize     = 128
	MaxBufferSize     = 256 * 1024
)

// ConnectTimeout is VSOCK_DEFAULT_CONNECT_TIMEOUT.
const ConnectTimeout = 2_000_000_000 // 2 s, in time.Duration units

// CloseTimeout is VSOCK_CLOSE_TIMEOUT: how long a closed socket lingers
// waiting for the peer's RST.
const CloseTimeout = 8_000_000_000 // 8 s

// Addr is a vsock address.
type Addr struct {
	CID  uint64
	Port uint32
}

func (a Addr) String() string { return fmt.Sprintf("%d:%d", a.CID, a.Port) }

// skb is one received packet's payload, as the socket queues it.
type skb struct {
	data []byte // payload, including bytes of small packets merged into it
	off  int    // bytes already read
}

// popSkbs drops the first n skbs of the receive queue. The rest moves to the
// front of the array, which is kept for the next packets rather than
// reallocated per packet; a drained queue lets a large array go so that idle
// sockets stay small.
func (s *Socket) popSkbs(n int) {
	if n == 0 {
		return
	}
	m := copy(s.rxq, s.rxq[n:])
	clear(s.rxq[m:])
	s.rxq = s.rxq[:m]
	if m == 0 && cap(s.rxq) > skbQueueKeep {
		s.rxq = nil
	}
}

// skbQueueKeep is the largest receive queue array a drained socket keeps.
const skbQueueKeep = 128

// Socket is a vsock stream socket in the guest kernel.
type Socket struct {
	ID    int
	k     *Kernel
	state State

	local, remote Addr
	bound         bool // holds its local port in the bound table
	connected     bool // in the connected table
	released      bool // the owner closed it; it may still linger
	err           syscall.Errno
	done          bool // SOCK_DONE
	shut          uint8
	peerShut      uint8
	ssConnected   bool // sock->state is SS_CONNECTED or SS_DISCONNECTING
	// transport: vsk->transport is assigned (connect, or a child made by
	// a listener); it stays until the owner closes the socket.
	transport bool
	rcvlowat  uint32 // sk_rcvlowat, 1 by default (sock_init_data)
	// linger: SO_LINGER is on (SOCK_LINGER), for lingerTime.
	linger     bool
	lingerTime time.Duration

	// Credit (struct virtio_vsock_sock).
	bufSize, bufMin, bufMax uint32
	bufAlloc                uint32
	fwdCnt, lastFwdCnt      uint32
	txCnt                   uint32
	peerBufAlloc            uint32
	peerFwdCnt              uint32
	rxBytes                 uint32 // unread
	bufUsed                 uint32 // held by skbs not fully consumed
	rxq                     []skb

	// Listener.
	backlog    int
	ackBacklog int
	acceptq    []*Socket

	connectTimer *kTimer
	closeTimer   *kTimer
}

// State returns sk_state.
func (s *Socket) State() State { return s.state }

// Local returns the bound address.
func (s *Socket) Local() Addr { return s.local }

// Remote returns the peer address.
func (s *Socket) Remote() Addr { return s.remote }

// Err returns the pending socket error (sk_err), without clearing it.
func (s *Socket) Err() syscall.Errno { return s.err }

// TakeErr is SO_ERROR: it returns sk_err and clears it.
func (s *Socket) TakeErr() syscall.Errno {
	e := s.err
	s.err = 0
	return e
}

func (s *Socket) String() string {
	return fmt.Sprintf("sock %d", s.ID)
}

// Socket creates a stream socket (socket(AF_VSOCK, SOCK_STREAM, 0)).
func (k *Kernel) Socket() *Socket {
	k.nextID++
	s := &Socket{ID: k.nextID, k: k, state: StateClose, bufSize: DefaultBufferSize, bufMin: MinBufferSize, bufMax: MaxBufferSize, rcvlowat: 1}
	k.sockets = append(k.sockets, s)
	return s
}

// Bind binds s to port on the guest's CID (or CID_ANY). Ports at or below
// 1023 need CAP_NET_BIND_SERVICE, which privileged stands for.
func (k *Kernel) Bind(s *Socket, cid uint64, port uint32, privileged bool) error {
	if s.bound {
		return syscall.EINVAL
	}
	if cid != virtio.CIDAny && cid != k.cid {
		return syscall.EADDRNOTAVAIL
	}
	k.seedPorts()
	if port == virtio.PortAny {
		return k.autobind(s, cid)
	}
	if port <= virtio.LastReservedPort && !privileged {
		return syscall.EACCES
	}
	if _, taken := k.bound[port]; taken {
		return syscall.EADDRINUSE
	}
	k.bindPort(s, cid, port)
	return nil
}

func (k *Kernel) bindPort(s *Socket, cid uint64, port uint32) {
	s.local = Addr{CID: cid, Port: port}
	s.bound = true
	k.bound[port] = s
}

// seedPorts seeds the ephemeral port counter on the first bind of any kind,
// with a random value in [1024, 0xffffffff] (get_random_u32_above(1023),
// Linux 6.2+; docs/sources.md#linux-ephemeral-port).
func (k *Kernel) seedPorts() {
	if k.portCounter == 0 {
		k.portCounter = 1024 + uint32(k.eng.Rand().Uint64N(1<<32-1024))
	}
}

// maxPortRetries is MAX_PORT_RETRIES in af_vsock.c.
const maxPortRetries = 24

func (k *Kernel) autobind(s *Socket, cid uint64) error {
	for i := 0; i < maxPortRetries; i++ {
		if k.portCounter <= virtio.LastReservedPort || k.portCounter == virtio.PortAny {
			k.portCounter = virtio.LastReservedPort + 1
		}
		port := k.portCounter
		k.portCounter++
		if _, taken := k.bound[port]; !taken {
			k.bindPort(s, cid, port)
			return nil
		}
	}
	return syscall.EADDRNOTAVAIL
}

// Listen puts a bound socket in TCP_LISTEN with the given accept backlog.
func (k *Kernel) Listen(s *Socket, backlog int) error {
	if !s.bound || s.state != StateClose && s.state != StateListen {
		return syscall.EINVAL
	}
	s.state = StateListen
	s.backlog = backlog
	k.logConn("%s listen on %s backlog %d", s, s.local, backlog)
	return nil
}

// Accept takes the oldest child from the accept queue, or EAGAIN. Children
// reset before accept are handed out all the same (docs/sources.md#linux-dispatch).
func (k *Kernel) Accept(l *Socket) (*Socket, error) {
	if l.state != StateListen {
		return nil, syscall.EINVAL
	}
	if len(l.acceptq) == 0 {
		return nil, syscall.EAGAIN
	}
	c := l.acceptq[0]
	l.acceptq[0] = nil
	l.acceptq = l.acceptq[1:]
	l.ackBacklog--
	return c, nil
}

// Connect starts connecting s to (cid, port) and returns EINPROGRESS; the
// outcome arrives through ConnectResult and the wake hook: RESPONSE ->
// established, RST -> ECONNRESET, an unexpected op -> EPROTO, no answer
// within ConnectTimeout -> ETIMEDOUT (af_vsock.c vsock_connect).
func (k *Kernel) Connect(s *Socket, cid uint64, port uint32) error {
	switch s.state {
	case StateEstablished, StateClosing:
		return syscall.EISCONN
	case StateSynSent:
		return syscall.EALREADY
	case StateListen:
		return syscall.EINVAL
	}
	if cid == k.cid || cid == virtio.CIDLocal {
		return syscall.ENODEV // loopback transport: not modelled
	}
	if !s.bound {
		k.seedPorts()
		if err := k.autobind(s, virtio.CIDAny); err != nil {
			return err
		}
	}
	s.remote = Addr{CID: cid, Port: port}
	s.err = 0
	s.done = false
	s.shut, s.peerShut = 0, 0
	s.bufAlloc = s.bufSize
	s.transport = true
	s.fwdCnt, s.lastFwdCnt, s.txCnt, s.peerBufAlloc, s.peerFwdCnt = 0, 0, 0, 0, 0
	s.state = StateSynSent
	k.logConn("%s connect %s from port %d", s, s.remote, s.local.Port)
	k.sendCtl(s, virtio.OpRequest, 0)
	s.connectTimer = k.after(ConnectTimeout, func() {
		s.connectTimer = nil
		if s.state != StateSynSent {
			return
		}
		s.state = StateClose
		s.err = syscall.ETIMEDOUT
		k.purgeSendQueue(s)
		k.logConn("%s connect to %s timed out", s, s.remote)
		k.wake(s)
	})
	return syscall.EINPROGRESS
}

// ConnectResult reports whether a connect finished and how: nil once
// established, sk_err otherwise.
func (k *Kernel) ConnectResult(s *Socket) (done bool, err error) {
	switch {
	case s.state == StateSynSent:
		return false, nil
	case s.state == StateEstablished:
		return true, nil
	case s.err != 0:
		return true, s.err
	}
	return true, syscall.ECONNREFUSED
}

// free is the sender's credit toward the peer, per the profile's formula.
func (k *Kernel) free(s *Socket) uint32 {
	switch k.p.Credit {
	case CreditU32:
		return virtio.SpecFree(s.peerBufAlloc, s.txCnt, s.peerFwdCnt)
	case CreditS64:
		return virtio.S64Free(s.peerBufAlloc, s.txCnt, s.peerFwdCnt)
	default:
		return virtio.LinuxFree(s.peerBufAlloc, s.bufAlloc, s.txCnt, s.peerFwdCnt)
	}
}

// Credit returns the free credit toward the peer as the profile computes it.
func (k *Kernel) Credit(s *Socket) uint32 { return k.free(s) }

// Send writes as much of p as the credit allows and returns the count
// (vsock_connectible_sendmsg's loop body). With no credit it returns EAGAIN
// and the caller blocks; cont says this is the retry of a call that blocked,
// whose entry checks already passed: a transport reset then shows as
// ECONNRESET (sk_err) rather than the ENOTCONN a fresh call gets.
func (k *Kernel) Send(s *Socket, p []byte, cont bool) (int, error) {
	if !cont {
		if s.shut&ShutSend != 0 || s.peerShut&ShutRcv != 0 {
			if s.err != 0 { // sk_stream_error: a pending error replaces EPIPE
				return 0, s.TakeErr()
			}
			return 0, syscall.EPIPE
		}
		if s.state != StateEstablished {
			return 0, syscall.ENOTCONN
		}
	}
	if s.err != 0 {
		return 0, s.err
	}
	if s.shut&ShutSend != 0 || s.peerShut&ShutRcv != 0 {
		return 0, syscall.EPIPE
	}
	if len(p) == 0 {
		return 0, nil
	}
	space := k.free(s)
	if space == 0 {
		return 0, syscall.EAGAIN
	}
	n := uint32(min(uint64(len(p)), uint64(space)))
	s.txCnt += n // virtio_transport_get_credit reserves before sending
	sent := uint32(0)
	for sent < n {
		chunk := min(n-sent, virtio.MaxPktBufSize)
		if !k.sendRW(s, p[sent:sent+chunk]) {
			s.txCnt -= n - sent // the unsent rest goes back to credit
			if sent == 0 {
				return 0, syscall.ENOMEM
			}
			break
		}
		sent += chunk
	}
	k.creditChanged(s)
	return int(sent), nil
}

// Recv reads queued bytes into p (vsock_connectible_recvmsg). It returns
// 0, nil at end of stream, EAGAIN when the caller should block; cont is as
// for Send.
func (k *Kernel) Recv(s *Socket, p []byte, cont bool) (int, error) {
	if !cont {
		if s.state != StateEstablished {
			if s.done {
				return 0, nil
			}
			return 0, syscall.ENOTCONN
		}
		if s.shut&ShutRcv != 0 {
			return 0, nil
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	// A program that found nothing waits in epoll, which reports EPOLLIN
	// only once SO_RCVLOWAT bytes are queued (dataReady); read(2) itself
	// takes whatever is there (vsock_connectible_wait_data stops at any
	// data). So a retry after blocking waits for the threshold, a first
	// attempt does not. Errors and end of stream wake it as before.
	if s.rxBytes > 0 && (!cont || k.dataReady(s) || s.err != 0 || s.shut&ShutRcv != 0 || s.peerShut&ShutSend != 0 || s.done) {
		return k.dequeue(s, p), nil
	}
	if s.err != 0 {
		return 0, s.err
	}
	if s.shut&ShutRcv != 0 || s.peerShut&ShutSend != 0 || s.done {
		return 0, nil
	}
	return 0, syscall.EAGAIN
}

// Buffered returns the unread bytes queued on s.
func (s *Socket) Buffered() int { return int(s.rxBytes) }

// dequeue is virtio_transport_stream_do_dequeue: fwd_cnt moves by a whole
// packet only when that packet is fully read, and a CREDIT_UPDATE follows
// when the profile's rule says so.
func (k *Kernel) dequeue(s *Socket, p []byte) int {
	n, done := 0, 0
	for n < len(p) && done < len(s.rxq) {
		head := &s.rxq[done]
		c := copy(p[n:], head.data[head.off:])
		head.off += c
		n += c
		if head.off == len(head.data) {
			s.fwdCnt += uint32(len(head.data))
			s.bufUsed -= uint32(len(head.data))
			k.putSkbBuf(head.data)
			done++
		}
	}
	s.rxBytes -= uint32(n)
	s.popSkbs(done)
	if done > 0 {
		k.creditChanged(s)
	}
	// virtio_transport_stream_do_dequeue: with 93b808876682 an update also
	// goes out when fwd_cnt moved and fewer bytes are queued than
	// sock_rcvlowat, the amount that would wake the reader.
	delta := s.fwdCnt - s.lastFwdCnt
	freeSpace := int64(s.bufAlloc) - int64(delta)
	update := freeSpace < virtio.MaxPktBufSize
	if k.p.CreditUpdateOnDrain {
		update = delta != 0 && (update || s.rxBytes < s.rcvlowat)
	}
	if update && s.state == StateEstablished {
		k.sendCtl(s, virtio.OpCreditUpdate, 0)
	}
	return n
}

// SetBufferSize is SO_VM_SOCKETS_BUFFER_SIZE: clamped to [min, max]; when the
// size changes and the socket has a transport, whatever its state, the new
// size becomes buf_alloc at once and a CREDIT_UPDATE tells the peer (Linux
// net/vmw_vsock/af_vsock.c vsock_update_buffer_size and
// virtio_transport_common.c virtio_transport_notify_buffer_size, v6.12;
// neither looks at sk_state). Without a transport only the size is kept;
// connect or accept makes it buf_alloc.
func (k *Kernel) SetBufferSize(s *Socket, n uint64) {
	v := min(n, uint64(s.bufMax))
	v = max(v, uint64(s.bufMin))
	if uint32(v) == s.bufSize {
		return
	}
	s.bufSize = uint32(v)
	if s.transport {
		s.bufAlloc = s.bufSize
		k.sendCtl(s, virtio.OpCreditUpdate, 0)
	}
}

// SetRcvlowat is SO_RCVLOWAT (Linux net/vmw_vsock/af_vsock.c
// vsock_set_rcvlowat, v6.12): a value above the buffer size is EINVAL (a
// negative one is INT_MAX to sock_setsockopt, so EINVAL too); 0 means 1.
// With 0fe1798968115 (v6.8, Profile.CreditUpdateOnSetRcvlowat) a socket
// with a transport first sends a CREDIT_UPDATE when fewer bytes are queued
// than the new value and the peer has not heard of the last bytes read
// (virtio_transport_notify_set_rcvlowat): the sender may be waiting for
// credit the reader will not free until the new threshold is met.
func (k *Kernel) SetRcvlowat(s *Socket, val int) error {
	if val < 0 || uint64(val) > uint64(s.bufSize) {
		return syscall.EINVAL
	}
	if s.transport && k.p.CreditUpdateOnSetRcvlowat && s.rxBytes < uint32(val) && s.fwdCnt != s.lastFwdCnt {
		k.sendCtl(s, virtio.OpCreditUpdate, 0)
	}
	s.rcvlowat = max(uint32(val), 1)
	return nil
}

// SetLinger is setsockopt(SO_LINGER). A lingering close(2) of an
// established socket waits, after its SHUTDOWN, until the peer's RST or
// the linger time (Linux net/vmw_vsock/virtio_transport_common.c,
// virtio_transport_close and virtio_transport_wait_close, v6.1; in
// af_vsock.c vsock_linger from v6.15, as backported): it changes when
// close returns, not what is sent, which realkernel's TestConformance
// checks (cases l0, l1). The model's Close returns at once and logs the
// linger.
func (k *Kernel) SetLinger(s *Socket, on bool, d time.Duration) {
	s.linger, s.lingerTime = on, d
}

// Rcvlowat returns sk_rcvlowat.
func (s *Socket) Rcvlowat() int { return int(s.rcvlowat) }

// SetBufferLimits sets SO_VM_SOCKETS_BUFFER_MIN_SIZE and _MAX_SIZE and
// re-clamps the size.
func (k *Kernel) SetBufferLimits(s *Socket, lo, hi uint32) {
	s.bufMin, s.bufMax = lo, hi
	k.SetBufferSize(s, uint64(s.bufSize))
}

// BufferSize returns the socket's buffer size and its current buf_alloc.
func (s *Socket) BufferSize() (size, bufAlloc uint32) { return s.bufSize, s.bufAlloc }

// Shutdown is shutdown(2): the bits are ORed into sk_shutdown, SOCK_DONE is
// cleared and one SHUTDOWN carrying only this call's bits goes out.
func (k *Kernel) Shutdown(s *Socket, how uint8) error {
	if !s.ssConnected {
		return syscall.ENOTCONN
	}
	s.shut |= how
	s.done = false
	k.wake(s)
	k.sendCtl(s, virtio.OpShutdown, uint32(how))
	return nil
}

// Close is close(2) on a vsock socket (virtio_transport_release and
// virtio_transport_close).
func (k *Kernel) Close(s *Socket) {
	if s.released {
		return
	}
	s.released = true
	if s.state == StateListen {
		k.logConn("%s listener closed", s)
		for _, c := range s.acceptq {
			k.Close(c)
		}
		s.acceptq = nil
		s.state = StateClose
		k.removeSock(s)
		return
	}
	if s.linger && s.state == StateEstablished {
		k.logConn("%s close with SO_LINGER %s: the caller would wait for the peer's RST", s, engine.FormatTime(s.lingerTime))
	}
	if k.closeTransport(s) {
		k.removeSock(s)
	}
}

// closeTransport returns true when the socket can go at once, false when it
// lingers waiting for the peer.
func (k *Kernel) closeTransport(s *Socket) bool {
	if s.state != StateEstablished && s.state != StateClosing {
		return true
	}
	if s.peerShut == ShutBoth {
		k.sendCtl(s, virtio.OpRST, 0)
		return true
	}
	if s.shut != ShutBoth {
		k.sendCtl(s, virtio.OpShutdown, ShutBoth)
		s.shut = ShutBoth
	}
	if s.done {
		return true
	}
	k.logConn("%s closed, lingering up to %s", s, engine.FormatTime(CloseTimeout))
	s.closeTimer = k.after(CloseTimeout, func() {
		s.closeTimer = nil
		if !s.done {
			k.sendCtl(s, virtio.OpRST, 0)
			k.doClose(s, false)
		}
		k.removeSock(s)
	})
	return false
}

// doClose is virtio_transport_do_close: the peer is gone.
func (k *Kernel) doClose(s *Socket, cancelTimeout bool) {
	s.done = true
	s.peerShut = ShutBoth
	if s.rxBytes == 0 {
		s.state = StateClosing
	}
	k.wake(s)
	if s.closeTimer != nil && cancelTimeout {
		k.stopTimer(s.closeTimer)
		s.closeTimer = nil
		k.removeSock(s)
	}
}

// removeSock is virtio_transport_remove_sock: out of the connected table,
// queue purged; out of the bound table too once the owner has released it
// (fcdd2242c023 keeps a client's port until close()).
func (k *Kernel) removeSock(s *Socket) {
	for _, b := range s.rxq {
		k.putSkbBuf(b.data)
	}
	s.rxq, s.rxBytes, s.bufUsed = nil, 0, 0
	k.unhashConnected(s)
	if s.released && s.bound {
		if k.bound[s.local.Port] == s {
			delete(k.bound, s.local.Port)
		}
		s.bound = false
	}
	if s.released && !s.bound && !s.connected {
		k.forget(s)
	}
}

// Readable reports whether a blocked reader of s would wake: data, an error
// or end of stream.
func (k *Kernel) Readable(s *Socket) bool {
	if s.state == StateListen {
		return len(s.acceptq) > 0
	}
	return k.dataReady(s) || s.err != 0 || s.shut&ShutRcv != 0 || s.peerShut&ShutSend != 0 || s.done ||
		s.state != StateEstablished && s.state != StateSynSent
}

// dataReady is EPOLLIN for queued data: since e7a3266c9167 (v6.1) the
// transport compares has_data with sock_rcvlowat (Linux af_vsock.c
// vsock_poll, virtio_transport_common.c virtio_transport_notify_poll_in);
// before, any byte was enough.
func (k *Kernel) dataReady(s *Socket) bool {
	if k.p.PollHonoursRcvlowat {
		return s.rxBytes >= s.rcvlowat
	}
	return s.rxBytes > 0
}

// Writable reports whether a blocked writer of s would wake: credit, an
// error or a shutdown.
func (k *Kernel) Writable(s *Socket) bool {
	return k.free(s) > 0 || s.err != 0 || s.shut&ShutSend != 0 || s.peerShut&ShutRcv != 0 ||
		s.state != StateEstablished
}

// SocketInfo describes a socket for inspection.
type SocketInfo struct {
	ID        int
	State     State
	Local     Addr
	Remote    Addr
	Bound     bool
	Connected bool // in the connected table
	Released  bool // closed by its owner
	Err       syscall.Errno
	Done      bool
	RxBytes   uint32
	TxCnt     uint32
	FwdCnt    uint32
	PeerFree  uint32
}

// Info describes s.
func (k *Kernel) Info(s *Socket) SocketInfo {
	return SocketInfo{
		ID: s.ID, State: s.state, Local: s.local, Remote: s.remote, Bound: s.bound, Connected: s.connected,
		Released: s.released, Err: s.err, Done: s.done, RxBytes: s.rxBytes, TxCnt: s.txCnt, FwdCnt: s.fwdCnt,
		PeerFree: k.free(s),
	}
}

// SendEnds reports whether a send on s would return at once with an error,
// touching nothing: the shutdown, state and error checks that come before
// any credit is taken. The runtime adapter completes such calls without
// ordering them against other programs' operations, as they change nothing
// anyone else can see.
func (k *Kernel) SendEnds(s *Socket) bool {
	return s.shut&ShutSend != 0 || s.peerShut&ShutRcv != 0 || s.state != StateEstablished || s.err != 0
}

// RecvEnds reports whether a receive on s would return at once without
// data, with end of stream or an error, touching nothing.
func (k *Kernel) RecvEnds(s *Socket) bool {
	if s.state != StateEstablished || s.shut&ShutRcv != 0 {
		return true
	}
	return s.rxBytes == 0 && (s.err != 0 || s.peerShut&ShutSend != 0 || s.done)
}
