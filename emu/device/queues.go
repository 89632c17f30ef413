package device

import (
	"slices"
	"time"
)

// Muxer limits (FC unix/mod.rs, every version; docs/sources.md#fc-muxer).
const (
	maxConnections = 1023 // MAX_CONNECTIONS
	rxqSize        = 256  // MUXER_RXQ_SIZE
	killqSize      = 128  // MUXER_KILLQ_SIZE
)

// rxEntry is one muxer RX queue item: ask connection key, or emit an RST.
type rxEntry struct {
	rst bool
	key connKey
}

// rxQueue is the muxer's RX queue (FC@v1.14.0 unix/muxer_rxq.rs; see
// docs/sources.md#fc-rxq-killq): a FIFO of 256 entries plus a synced flag. Once out of sync it
// refuses connection entries (and lets an RST evict the newest connection
// entry) until it is rebuilt from the connection map.
type rxQueue struct {
	buf    [rxqSize]rxEntry
	head   int
	n      int
	synced bool
}

func (q *rxQueue) full() bool { return q.n == rxqSize }

// push reports whether e was queued.
func (q *rxQueue) push(e rxEntry) bool {
	if q.synced && !q.full() {
		q.buf[(q.head+q.n)%rxqSize] = e
		q.n++
		return true
	}
	if e.rst {
		for i := q.n - 1; i >= 0; i-- {
			slot := &q.buf[(q.head+i)%rxqSize]
			if !slot.rst {
				*slot = e
				q.synced = false
				return true
			}
		}
		return false
	}
	q.synced = false
	return false
}

func (q *rxQueue) peek() rxEntry { return q.buf[q.head] }

func (q *rxQueue) pop() {
	q.head = (q.head + 1) % rxqSize
	q.n--
}

// rebuild refills the queue from the connections with pending RX. FC walks
// its HashMap in arbitrary order; the lab walks keys in sorted order.
func (q *rxQueue) rebuild(m *muxer) {
	q.head, q.n, q.synced = 0, 0, true
	for _, k := range m.sortedKeys() {
		if m.conns[k].pending == 0 {
			continue
		}
		if q.n >= rxqSize {
			q.synced = false
			break
		}
		q.buf[q.n] = rxEntry{key: k}
		q.n++
	}
}

type killItem struct {
	key connKey
	at  time.Duration
}

// killQueue is the muxer's kill queue (FC@v1.14.0 unix/muxer_killq.rs;
// docs/sources.md#fc-rxq-killq): a FIFO of 128 (key, expiry) with a synced flag.
type killQueue struct {
	buf    [killqSize]killItem
	head   int
	n      int
	synced bool
}

func (q *killQueue) push(k connKey, at time.Duration) {
	if !q.synced || q.n == killqSize {
		q.synced = false
		return
	}
	q.buf[(q.head+q.n)%killqSize] = killItem{k, at}
	q.n++
}

// pop returns the front key only once now is past its expiry (strictly).
func (q *killQueue) pop(now time.Duration) (connKey, bool) {
	if q.n == 0 || !(now > q.buf[q.head].at) {
		return connKey{}, false
	}
	k := q.buf[q.head].key
	q.head = (q.head + 1) % killqSize
	q.n--
	return k, true
}

// rebuild refills the queue from connections whose expiry is still in the
// future, sorted by expiry; FC's HashMap order is replaced by key order, and
// its unstable sort by a stable one.
func (q *killQueue) rebuild(m *muxer, now time.Duration) {
	items := make([]killItem, 0, killqSize)
	q.synced = true
	for _, k := range m.sortedKeys() {
		c := m.conns[k]
		if !c.willExpire(now) {
			continue
		}
		if len(items) >= killqSize {
			q.synced = false
			break
		}
		items = append(items, killItem{k, c.expiry})
	}
	slices.SortStableFunc(items, func(a, b killItem) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	q.head, q.n = 0, copy(q.buf[:], items)
}
