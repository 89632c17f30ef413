package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"time"
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
func (r Record) String() string {
	return FormatTime(r.At) + " " + fmt.Sprintf("%-7s", r.Comp) + " " + r.Text
}

// FormatTime renders a virtual time as seconds with nanosecond precision,
// right-aligned to 14 characters so that logs line up.
func FormatTime(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%14s", fmt.Sprintf("%s%d.%09d", sign, d/time.Second, d%time.Second))
}

// Log is the ordered event log. It keeps the records it is asked to keep and
// hashes every kept record's line as it arrives.
type Log struct {
	keep    Kind
	records []Record
	h       hash.Hash
	hook    func(Record)
	discard bool // hash and hook only; see SetRetain
}

// NewLog returns a log keeping every kind.
func NewLog() *Log { return &Log{keep: KindAll, h: sha256.New()} }

// Keep sets which kinds are recorded; the others are dropped unrendered.
func (l *Log) Keep(k Kind) { l.keep = k }

// Enabled reports whether records of kind k are kept, so callers can skip
// formatting a line nobody will read.
func (l *Log) Enabled(k Kind) bool { return l.keep&k != 0 }

// SetRetain(false) stops the log from keeping records (Records and String
// then hold only what came before), while it still hashes them and passes
// them to the OnRecord hook: for worlds that run for as long as a real VM.
func (l *Log) SetRetain(on bool) { l.discard = !on }

// OnRecord installs a function called with every kept record, for live
// output.
func (l *Log) OnRecord(f func(Record)) { l.hook = f }

// Add appends a record.
func (l *Log) Add(at time.Duration, k Kind, comp, text string) {
	if l.keep&k == 0 {
		return
	}
	r := Record{At: at, Kind: k, Comp: comp, Text: text}
	if !l.discard {
		l.records = append(l.records, r)
	}
	l.h.Write([]byte(r.String()))
	l.h.Write([]byte{'\n'})
	if l.hook != nil {
		l.hook(r)
	}
}

// Records returns the kept records in order.
func (l *Log) Records() []Record { return l.records }

// Len returns the number of kept records.
func (l *Log) Len() int { return len(l.records) }

// String renders the whole log, one line per record.
func (l *Log) String() string {
	var b strings.Builder
	for _, r := range l.records {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Hash is the SHA-256 of String(), in hex, computed incrementally.
func (l *Log) Hash() string {
	return hex.EncodeToString(l.h.Sum(nil))
}
