package device

import "errors"

// TxBufSize is CONN_TX_BUF_SIZE (FC csm/mod.rs, every version): a
// connection's TX buffer capacity and the buf_alloc every modelled device
// advertises to the guest.
const TxBufSize = 64 * 1024

const txBufSize = TxBufSize // the package's short name for it

// The range of Config.BufAlloc: at least a page, at most 1 GiB.
const (
	MinBufAlloc = 4096
	MaxBufAlloc = 1 << 30
)

var errTxBufFull = errors.New("TxBufFull")

// txBuf is the per-connection ring that holds guest data the host stream
// would not take yet (FC@v1.14.0 csm/txbuf.rs; docs/sources.md#fc-txbuf). head and tail are
// wrapping byte counters; the storage is allocated on the first push.
type txBuf struct {
	data       []byte
	head, tail uint32
	size       uint32 // capacity; 0 is txBufSize
}

func (b *txBuf) capacity() int {
	if b.size == 0 {
		return txBufSize
	}
	return int(b.size)
}

func (b *txBuf) len() int        { return int(b.head - b.tail) }
func (b *txBuf) empty() bool     { return b.head == b.tail }
func (b *txBuf) free() int       { return b.capacity() - b.len() }
func (b *txBuf) clear()          { b.data, b.head, b.tail = nil, 0, 0 }
func (b *txBuf) allocated() bool { return b.data != nil }

// push stores all of p or nothing (TxBufFull).
func (b *txBuf) push(p []byte) error {
	size := b.capacity()
	if b.len()+len(p) > size {
		return errTxBufFull
	}
	if b.data == nil {
		b.data = make([]byte, size)
	}
	off := int(b.head % uint32(size))
	n := copy(b.data[off:], p)
	copy(b.data, p[n:])
	b.head += uint32(len(p))
	return nil
}

// flushTo writes the contiguous part from tail, and the wrapped part only if
// the first went out whole. An error on the first write is returned; one on
// the wrapped write is swallowed and the first part's count returned
// (FC@v1.14.0 csm/txbuf.rs flush_to).
func (b *txBuf) flushTo(write func([]byte) (int, error)) (int, error) {
	if b.empty() {
		return 0, nil
	}
	size := b.capacity()
	off := int(b.tail % uint32(size))
	first := min(size-off, b.len())
	n, err := write(b.data[off : off+first])
	if err != nil {
		return 0, err
	}
	b.tail += uint32(n)
	if n < first || b.empty() {
		return n, nil
	}
	m, err := write(b.data[:b.len()])
	if err != nil {
		return n, nil
	}
	b.tail += uint32(m)
	return n + m, nil
}
