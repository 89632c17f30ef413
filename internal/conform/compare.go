package conform

import (
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
