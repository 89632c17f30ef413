package conform

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Packets picks the device's packet lines out of an event log (the lab's,
// or the vhost-user back-end's output, which prints the same records):
// "tx ..." and "rx ..." after the device component, without their time.
func Packets(log []string) []string {
	var out []string
	for _, l := range log {
		i := strings.Index(l, " device  ")
		if i < 0 {
			continue
		}
		l = strings.TrimSpace(l[i+len(" device  "):])
		if strings.HasPrefix(l, "tx ") || strings.HasPrefix(l, "rx ") {
			out = append(out, l)
		}
	}
	return out
}

var hostPort = regexp.MustCompile(`\b2:(\d+)\b`)
var guestPort = regexp.MustCompile(`\b(\d+):(\d+)(->| )`)

// ByCase splits packet lines by the host port they carry: case i's are
// those of port base+i. The guest's port of each line, which the kernel
// picks at random, becomes "G"; lines of no case (the device's
// TRANSPORT_RESET events, other ports) are left out.
func ByCase(packets []string, base uint32, n int) [][]string {
	out := make([][]string, n)
	for _, l := range packets {
		m := hostPort.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		p, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil || p < uint64(base) || p >= uint64(base)+uint64(n) {
			continue
		}
		out[p-uint64(base)] = append(out[p-uint64(base)], normaliseGuestPort(l))
	}
	return out
}

// normaliseGuestPort replaces the port of the side whose CID is not the
// host's (2) with G.
func normaliseGuestPort(l string) string {
	return guestPort.ReplaceAllStringFunc(l, func(s string) string {
		m := guestPort.FindStringSubmatch(s)
		if m[1] == "2" {
			return s
		}
		return m[1] + ":G" + m[3]
	})
}

// Diff is the first line where two packet lists part, or "" when they
// agree.
func Diff(model, real []string) string {
	for i := range max(len(model), len(real)) {
		var m, r string
		if i < len(model) {
			m = model[i]
		}
		if i < len(real) {
			r = real[i]
		}
		if m != r {
			return fmt.Sprintf("packet %d: model %q, real %q", i, orNone(m), orNone(r))
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Summary is one cell of the conformance table: how many packets a case
// saw, a digest of them all, and the line that says most about the case
// (the guest's RW chain, or the first RX RW and the guest's last credit
// update).
func Summary(c Case, packets []string) string {
	sum := sha256.Sum256([]byte(strings.Join(packets, "\n")))
	s := fmt.Sprintf("%d packets, sha256 %x", len(packets), sum[:4])
	for _, l := range packets {
		switch {
		case (c.Kind == Write || c.Kind == HalfClose) && strings.HasPrefix(l, "tx RW "):
			return s + ", " + afterPorts(l)
		case c.Kind == Read && strings.HasPrefix(l, "rx RW "):
			s += ", first " + afterPorts(l)
			c.Kind = 0
		case c.Kind == BufferSize && strings.HasPrefix(l, "tx CREDIT_UPDATE "):
			return s + ", " + l
		case c.Kind == CreditCap && strings.HasPrefix(l, "tx RW "):
			return s + ", " + afterPorts(l)
		}
	}
	if c.Kind == BufferSize {
		return s + ", no CREDIT_UPDATE"
	}
	return s
}

// afterPorts drops the op and the addresses of a packet line.
func afterPorts(l string) string {
	f := strings.SplitN(l, " ", 4)
	if len(f) < 4 {
		return l
	}
	return f[0] + " " + f[1] + " " + f[3]
}
