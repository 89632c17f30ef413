package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind classifies a log record so that a consumer can keep only what it
// needs: a throughput benchmark does not want a line per packet.
type Kind uint16

// Kinds of records.
const (
	KindPacket    Kind = 1 << iota // a packet crossing the device
	KindConn                       // connection and socket lifecycle
	KindCredit                     // credit updates and requests
	KindHost                       // host-side endpoints
	KindProgram                    // what the programs in the world did
	KindFault                      // dropped packets, bad chains, resets
	KindInvariant                  // a built-in invariant failed
	KindWorld                      // suspend, resume, scenario steps

	KindAll Kind = 0xffff
)

// kindNames are the kinds' names in trace files and on command lines.
var kindNames = []struct {
	name string
	k    Kind
}{
	{"packet", KindPacket}, {"conn", KindConn}, {"credit", KindCredit}, {"host", KindHost},
	{"program", KindProgram}, {"fault", KindFault}, {"invariant", KindInvariant}, {"world", KindWorld},
}

// ParseKinds reads a comma-separated list of kind names ("packet,fault"),
// or "all".
func ParseKinds(list string) (Kind, error) {
	var k Kind
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "all" {
			k |= KindAll
			continue
		}
		found := false
		for _, n := range kindNames {
			if n.name == f {
				k |= n.k
				found = true
			}
		}
		if !found {
			names := make([]string, len(kindNames))
			for i, n := range kindNames {
				names[i] = n.name
			}
			return 0, fmt.Errorf("unknown log kind %q (known: %s, all)", f, strings.Join(names, ", "))
		}
	}
	return k, nil
}

// Record is one line of the event log.
type Record struct {
	At   time.Duration
	Kind Kind
	Comp string // component: "guest", "device", "host", "world", ...
	Text string
}

// String renders the record as its log line, without the newline:
// "    1.250000000 device  RW 3:1024->2:9 len=4096 ...".
func (r Record) String() string { return string(r.appendLine(nil)) }

// appendLine appends the record's line, as String renders it, to b:
// the time (FormatTime), the component left-aligned in 7 columns, the text.
func (r Record) appendLine(b []byte) []byte {
	b = appendTime(b, r.At)
	b = append(b, ' ')
	b = append(b, r.Comp...)
	for n := utf8.RuneCountInString(r.Comp); n < 7; n++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	return append(b, r.Text...)
}

// FormatTime renders a virtual time as seconds with nanosecond precision,
// right-aligned to 14 characters so that logs line up.
func FormatTime(d time.Duration) string { return string(appendTime(nil, d)) }

// appendTime appends FormatTime(d) to b. It renders every line of every
// log, so it does by hand what fmt.Sprintf("%14s", fmt.Sprintf("%s%d.%09d",
// sign, seconds, nanoseconds)) did, byte for byte.
func appendTime(b []byte, d time.Duration) []byte {
	if d == math.MinInt64 { // -d overflows: the old rendering, as it was
		return append(b, fmt.Sprintf("%14s", fmt.Sprintf("-%d.%09d", -d/time.Second, -d%time.Second))...)
	}
	var num [32]byte
	n := num[:0]
	if d < 0 {
		n, d = append(n, '-'), -d
	}
	n = strconv.AppendInt(n, int64(d/time.Second), 10)
	n = append(n, '.')
	ns := int64(d % time.Second)
	for div := int64(100_000_000); div > 0; div /= 10 {
		n = append(n, byte('0'+ns/div%10))
	}
	for i := len(n); i < 14; i++ {
		b = append(b, ' ')
	}
	return append(b, n...)
}

// Log is the ordered event log. It keeps the records it is asked to keep and
// hashes every kept record's line as it arrives.
//
// A long-running world (vsocklab serve, a vhost-user backend) sets a limit:
// the log then holds only the most recent records in a ring, so its memory
// stays flat however much traffic passes; the hash and the live hook still
// see every record.
type Log struct {
	keep    Kind
	retain  Kind   // kinds stored; the others are hashed and hooked only
	line    []byte // scratch for the line being hashed
	records []Record
	limit   int // 0: keep every record; otherwise the ring's size
	head    int // with a full ring: index of the oldest record
	dropped uint64
	h       hash.Hash // nil: not hashing (HashLines)
	hook    func(Record)
}

// NewLog returns a log keeping every kind.
func NewLog() *Log { return &Log{keep: KindAll, retain: KindAll, h: sha256.New()} }

// Keep sets which kinds are recorded; the others are dropped unrendered.
func (l *Log) Keep(k Kind) { l.keep = k }

// Enabled reports whether records of kind k are kept and read, by the
// hash, the live hook or the stored records, so callers can skip
// formatting a line nobody will read.
func (l *Log) Enabled(k Kind) bool {
	return l.keep&k != 0 && (l.h != nil || l.hook != nil || l.retain&k != 0)
}

// HashLines sets whether the log hashes its records' lines for Hash (on
// by default). Off, a kind the log does not retain and no live hook reads
// is read by nobody: Enabled says so, and its records are never
// formatted, which is most of a fuzz target's logging cost (the verdict
// needs no hash). Turning it on again starts a new hash.
func (l *Log) HashLines(on bool) {
	switch {
	case !on:
		l.h = nil
	case l.h == nil:
		l.h = sha256.New()
	}
}

// OnRecord installs a function called with every kept record, for live
// output.
func (l *Log) OnRecord(f func(Record)) { l.hook = f }

// Retain sets which of the kept kinds are also stored for Records and
// String; the others still count in the hash and reach the live hook. A
// replay that prints only some kinds stores only those, and its hash stays
// the same as with everything stored.
func (l *Log) Retain(k Kind) { l.retain = k }

// Forget drops the oldest n stored records (a reader that has printed them
// and will not look back). They count as dropped.
func (l *Log) Forget(n int) {
	recs := l.Records()
	n = min(max(n, 0), len(recs))
	l.records = slices.Clone(recs[n:])
	l.head = 0
	l.dropped += uint64(n)
}

// Limit makes the log keep only the last n records (n <= 0: all of them,
// the default). Records already kept beyond the limit are dropped, oldest
// first.
func (l *Log) Limit(n int) {
	recs := l.Records()
	l.limit, l.head = max(n, 0), 0
	if l.limit > 0 && len(recs) > l.limit {
		l.dropped += uint64(len(recs) - l.limit)
		recs = slices.Clone(recs[len(recs)-l.limit:])
	}
	l.records = recs
}

// Dropped returns how many stored records the limit or Forget has pushed
// out of the log.
func (l *Log) Dropped() uint64 { return l.dropped }

// Add appends a record.
func (l *Log) Add(at time.Duration, k Kind, comp, text string) {
	if !l.Enabled(k) {
		return
	}
	r := Record{At: at, Kind: k, Comp: comp, Text: text}
	switch {
	case l.retain&k == 0:
	case l.limit > 0 && len(l.records) == l.limit:
		l.records[l.head] = r
		l.head = (l.head + 1) % l.limit
		l.dropped++
	default:
		l.records = append(l.records, r)
	}
	if l.h != nil {
		l.line = append(r.appendLine(l.line[:0]), '\n')
		l.h.Write(l.line)
	}
	if l.hook != nil {
		l.hook(r)
	}
}

// Records returns the kept records in order. Without a limit it is the
// log's own slice; with a wrapped ring, a copy in order.
func (l *Log) Records() []Record {
	if l.head == 0 {
		return l.records
	}
	return slices.Concat(l.records[l.head:], l.records[:l.head])
}

// Len returns the number of kept records.
func (l *Log) Len() int { return len(l.records) }

// String renders the kept log, one line per record.
func (l *Log) String() string {
	var b strings.Builder
	for _, r := range l.Records() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Hash is the SHA-256 of every kept record's line as it arrived, in hex,
// computed incrementally: String() without a limit, and also the records
// a limit has since dropped. Empty when the log does not hash
// (HashLines).
func (l *Log) Hash() string {
	if l.h == nil {
		return ""
	}
	return hex.EncodeToString(l.h.Sum(nil))
}
