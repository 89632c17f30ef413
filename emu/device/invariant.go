package device

import (
	"fmt"
	"time"
)

// The device checks three invariants of its own as it runs (checkChains,
// checkBytes, checkCredit). A failure is counted (Stats.Violations), logged
// as a KindInvariant record, and kept as a Violation, so that oracles judge
// typed values instead of parsing the log.

// ViolationKind names a built-in invariant.
type ViolationKind uint8

const (
	// ChainsOutstanding: an idle device holds chains it popped from a
	// queue and neither returned nor counted leaked.
	ChainsOutstanding ViolationKind = iota + 1
	// BytesSkewed: on a connection, bytes forwarded to the host plus those
	// still buffered differ from the RW payload it accepted (a duplication
	// or a silent loss). Reported once per change of the difference.
	BytesSkewed
	// CreditExceeded: after an RW the guest's buffer holds more than it
	// advertised (buf_alloc), and the guest did not shrink it itself.
	CreditExceeded
)

// Violation is one failed invariant, with the numbers that failed it.
type Violation struct {
	Kind ViolationKind
	At   time.Duration // virtual time

	Queue  string // ChainsOutstanding: "rx", "tx" or "event"
	Chains uint64 // ChainsOutstanding: chains outstanding

	LocalPort, PeerPort uint32 // BytesSkewed, CreditExceeded: the connection

	Forwarded, Buffered, Accepted uint64 // BytesSkewed
	Delta                         int64  // BytesSkewed: change of forwarded+buffered-accepted since the last report

	InFlight, BufAlloc uint32 // CreditExceeded
}

// String is the violation as the event log states it, after "invariant: ".
func (v Violation) String() string {
	switch v.Kind {
	case ChainsOutstanding:
		return fmt.Sprintf("%s queue: %d popped chains neither returned nor leaked", v.Queue, v.Chains)
	case BytesSkewed:
		return fmt.Sprintf("conn %d<->%d: forwarded %d + buffered %d != accepted %d (%+d bytes)",
			v.LocalPort, v.PeerPort, v.Forwarded, v.Buffered, v.Accepted, v.Delta)
	case CreditExceeded:
		return fmt.Sprintf("conn %d<->%d: %d bytes in flight exceed the guest's buf_alloc %d",
			v.LocalPort, v.PeerPort, v.InFlight, v.BufAlloc)
	}
	return fmt.Sprintf("violation kind %d", v.Kind)
}

// Violations returns every invariant failure so far, in order. The slice is
// the device's: callers must not change it.
func (d *Device) Violations() []Violation { return d.violations }
