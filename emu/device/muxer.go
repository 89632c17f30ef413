package device

import (
	"errors"
	"slices"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
)

var errTooManyConnections = errors.New("TooManyConnections")

// localStream is an accepted host connection whose CONNECT line has not been
// read yet (FC EpollListener::LocalStream).
type localStream struct {
	s     *uds.Conn
	ready bool
}

// muxer routes guest packets to connections and connections' packets to
// the guest, and owns the host listener (FC@v1.14.0 unix/muxer.rs; docs/sources.md#fc-muxer).
type muxer struct {
	d     *Device
	conns map[connKey]*conn
	rxq   rxQueue
	killq killQueue
	ports portAllocator

	listener      *uds.Listener
	listenerReady bool
	locals        []*localStream

	// dirty holds connections whose host stream or interest changed: the
	// next backend pass delivers what level-triggered epoll would report.
	dirty, spare []*conn
	keys         []connKey // scratch for sorted walks
}

func newMuxer(d *Device, l *uds.Listener) *muxer {
	m := &muxer{
		d:        d,
		conns:    map[connKey]*conn{},
		ports:    newPortAllocator(d.prof.Ports, d.eng.Rand()),
		listener: l,
	}
	m.rxq.synced = true
	m.killq.synced = true
	l.OnReady = func() {
		m.listenerReady = true
		d.wake()
	}
	return m
}

// sortedKeys replaces FC's HashMap iteration wherever its order could reach
// behaviour (rx and kill queue rebuilds).
func (m *muxer) sortedKeys() []connKey {
	m.keys = m.keys[:0]
	for k := range m.conns {
		m.keys = append(m.keys, k)
	}
	slices.SortFunc(m.keys, func(a, b connKey) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	return m.keys
}

func (m *muxer) hasPendingRX() bool { return m.rxq.n > 0 || !m.rxq.synced }

func (m *muxer) markDirty(c *conn) {
	if !c.dirty && !c.removed {
		c.dirty = true
		m.dirty = append(m.dirty, c)
	}
}

// hasEvents reports whether a backend pass has anything to deliver.
func (m *muxer) hasEvents() bool {
	if m.listenerReady || len(m.dirty) > 0 {
		return true
	}
	for _, ls := range m.locals {
		if ls.ready {
			return true
		}
	}
	return false
}

// handleEvents is one backend notification: what the nested epoll would
// report, delivered in a fixed order (listener, CONNECT lines in accept
// order, connections in the order they became ready).
func (m *muxer) handleEvents() {
	if m.listenerReady {
		m.listenerReady = false
		m.acceptAll()
	}
	if len(m.locals) > 0 {
		kept := m.locals[:0]
		for _, ls := range m.locals {
			if ls.ready && (ls.s.Buffered() > 0 || ls.s.PeerClosed()) {
				m.handleLocal(ls)
				continue
			}
			ls.ready = false
			kept = append(kept, ls)
		}
		clear(m.locals[len(kept):])
		m.locals = kept
	}
	batch := m.dirty
	m.dirty = m.spare[:0]
	for _, c := range batch {
		c.dirty = false
		m.pump(c)
	}
	clear(batch)
	m.spare = batch[:0]
}

// pump delivers level-triggered readiness to a connection: EPOLLIN while it
// wants to read and the host stream has data or EOF, EPOLLOUT while its TX
// buffer holds data and the stream can take some.
func (m *muxer) pump(c *conn) {
	if c.removed {
		return
	}
	in := c.wantsIn() && c.pending&pendRw == 0 && c.hostReadable()
	out := c.wantsOut() && c.hostWritable()
	if !in && !out {
		return
	}
	m.mutate(c, func() {
		if in {
			c.pending |= pendRw
		}
		if out {
			c.notifyOut()
		}
	})
}

// addConnection sweeps the kill queue, then adds c (FC add_connection).
func (m *muxer) addConnection(c *conn) error {
	d := m.d
	m.sweepKillq()
	if limit := d.prof.maxConns(); len(m.conns) >= limit {
		d.logf(engine.KindFault, "vsock: muxer connection limit reached (%d)", limit)
		return errTooManyConnections
	}
	c.stream.OnReady = func() {
		m.markDirty(c)
		d.wake()
	}
	if c.pending != 0 {
		m.rxq.push(rxEntry{key: c.key})
	}
	if old := m.conns[c.key]; old != nil {
		// conn_map.insert replaces a connection with the same key and
		// drops it: its host stream closes, the guest hears nothing
		// (FC@v1.14.0 unix/muxer.rs add_connection). A host CONNECT whose
		// new local port is the host port of a guest-initiated
		// connection gets there: the allocator does not know that port.
		old.removed = true
		old.stream.OnReady = nil
		old.stream.Close()
		d.logf(engine.KindFault, "vsock: conn %d<->%d replaced by a new %s connection with the same key; the old one dropped", c.key.local, c.key.peer, c.stateName())
	}
	m.conns[c.key] = c
	d.stats.ConnsAdded++
	if d.eng.Log.Enabled(engine.KindConn) {
		d.logf(engine.KindConn, "conn %d<->%d new %s", c.key.local, c.key.peer, c.stateName())
	}
	m.markDirty(c) // the stream may already be readable
	return nil
}

// removeConnection drops the connection and closes its host stream, and
// frees the local port whether or not a connection existed (FC
// remove_connection).
func (m *muxer) removeConnection(k connKey) {
	d := m.d
	if c := m.conns[k]; c != nil {
		delete(m.conns, k)
		c.removed = true
		c.stream.OnReady = nil
		c.stream.Close()
		d.stats.ConnsRemoved++
		if d.eng.Log.Enabled(engine.KindConn) {
			d.logf(engine.KindConn, "conn %d<->%d %s->removed", k.local, k.peer, c.stateName())
		}
	}
	m.ports.free(k.local)
}

// killConnection schedules an RST for the connection (FC kill_connection).
func (m *muxer) killConnection(k connKey) {
	d := m.d
	hadRX := false
	if c := m.conns[k]; c != nil {
		hadRX = c.pending != 0
		prev := c.stateName()
		c.kill()
		if d.eng.Log.Enabled(engine.KindConn) {
			d.logf(engine.KindConn, "conn %d<->%d %s->Killed", k.local, k.peer, prev)
		}
	}
	if !hadRX {
		m.rxq.push(rxEntry{key: k})
	}
}

// sweepKillq kills every queued connection whose timer expired, rebuilding
// the queue once when it ran dry out of sync (FC sweep_killq; docs/sources.md#fc-rxq-killq).
// It runs only from addConnection: there is no periodic timer.
func (m *muxer) sweepKillq() {
	now := m.d.eng.Now()
	for {
		k, ok := m.killq.pop(now)
		if !ok {
			break
		}
		if c := m.conns[k]; c != nil && c.hasExpired(now) {
			m.killConnection(k)
		}
	}
	if m.killq.n == 0 && !m.killq.synced {
		m.killq.rebuild(m, now)
		m.d.stats.KillqResyncs++
		m.sweepKillq()
	}
}

// mutate runs f on c and does the muxer's bookkeeping after it: the OK
// acknowledgement, RX and kill queue registration, and a readiness re-check
// (FC apply_conn_mutation).
func (m *muxer) mutate(c *conn, f func()) {
	d := m.d
	now := d.eng.Now()
	hadRX := c.pending != 0
	wasExpiring := c.willExpire(now)
	prevState, prevRcv, prevSend := c.state, c.rcvOff, c.sendOff
	f()
	if d.halted {
		return
	}
	if (c.state != prevState || c.rcvOff != prevRcv || c.sendOff != prevSend) && d.eng.Log.Enabled(engine.KindConn) {
		prev := conn{state: prevState, rcvOff: prevRcv, sendOff: prevSend}
		d.logf(engine.KindConn, "conn %d<->%d %s->%s", c.key.local, c.key.peer, prev.stateName(), c.stateName())
	}
	if prevState == stateLocalInit && c.state == stateEstablished {
		m.ack(c)
	}
	if !hadRX && c.pending != 0 {
		m.rxq.push(rxEntry{key: c.key})
	}
	if !wasExpiring && c.willExpire(now) {
		m.killq.push(c.key, c.expiry)
	}
	m.d.checkBytes(c)
}

// exit closes every host socket, as the process's exit would.
func (m *muxer) exit() {
	m.dropConnections()
	m.listener.OnReady = nil
	m.listener.Close()
}

// dropConnections closes the host stream of every connection, and of every
// host stream still sending its CONNECT line, and forgets them all; the
// listener stays.
func (m *muxer) dropConnections() {
	for _, k := range m.sortedKeys() {
		c := m.conns[k]
		c.removed = true
		c.stream.OnReady = nil
		c.stream.Close()
	}
	clear(m.conns)
	for _, ls := range m.locals {
		ls.s.OnReady = nil
		ls.s.Close()
	}
	m.locals = nil
}
