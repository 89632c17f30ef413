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
var endpoints = regexp.MustCompile(`\b(\d+:G?\d+)->(\d+:G?\d+)\b`)

// postedPrefix starts the device's lines for receive buffers the driver
// posted (device.Config.LogRXBuffers): "rx buffers posted: 65 x w3776".
const postedPrefix = "rx buffers posted: "

// ByCase splits packet lines by case. A line belongs to case i when its
// host-side (CID 2) port is base+i, or else when its other side's port is
// (the guest's port of a host CONNECT; the port of a REQUEST to another
// CID). The guest's port of each line, which the kernel picks at random,
// becomes G1, G2, ... by first appearance in the case; lines of no case (other ports) are left out. Within a case,
// the lines are grouped by connection, connections in the order they first
// appear, since a case with two connections (a control connection and a
// host CONNECT) may interleave them differently from run to run. The
// device's receive-buffer lines belong to no connection: they go to the
// case of the packet before them, or to start before the device's first
// RX packet (it looks at the ring only when it has one to write), and
// each case's are
// summed up by buffer shape in one line at its end, since when the device
// looks at the ring, not when the driver posts, decides where they fall.
func ByCase(packets []string, base uint32, n int) (start []string, cases [][]string) {
	cases = make([][]string, n)
	posted := make([][]string, n+1) // posted[n]: before any case
	cur := n                        // the start, until the first packet the device writes
	written := false
	inCase := func(p uint64) bool { return p >= uint64(base) && p < uint64(base)+uint64(n) }
	for _, l := range packets {
		if strings.HasPrefix(l, postedPrefix) {
			posted[cur] = append(posted[cur], l)
			continue
		}
		written = written || strings.HasPrefix(l, "rx ")
		p, ok := caseOf(l, inCase)
		if !ok {
			continue
		}
		i := int(p - uint64(base))
		if written {
			cur = i
		}
		cases[i] = append(cases[i], l)
	}
	for i := range cases {
		cases[i] = append(byConnection(normaliseGuestPorts(cases[i])), sumPosted(posted[i])...)
	}
	return sumPosted(posted[n]), cases
}

// WithoutPosted drops the receive-buffer lines.
func WithoutPosted(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, postedPrefix) {
			out = append(out, l)
		}
	}
	return out
}

var rxRWLen = regexp.MustCompile(`^(rx RW \S+) len=(\d+) (.*)$`)

// MergeRX joins consecutive RX RW packets of a connection whose other
// fields agree into one, their lengths summed: where the host writes small
// pieces some time apart, the device sends one packet per piece unless two
// pieces reach it together, which wall time decides.
func MergeRX(lines []string) []string {
	var out []string
	var prev []string // the last line's rxRWLen match, if it was one
	for _, l := range lines {
		m := rxRWLen.FindStringSubmatch(l)
		if m != nil && prev != nil && m[1] == prev[1] && m[3] == prev[3] {
			a, _ := strconv.Atoi(prev[2])
			b, _ := strconv.Atoi(m[2])
			prev[2] = strconv.Itoa(a + b)
			out[len(out)-1] = prev[1] + " len=" + prev[2] + " " + prev[3]
			continue
		}
		out = append(out, l)
		prev = m
	}
	return out
}

// caseOf finds the port of the case a line belongs to.
func caseOf(l string, inCase func(uint64) bool) (uint64, bool) {
	if m := hostPort.FindStringSubmatch(l); m != nil {
		if p, err := strconv.ParseUint(m[1], 10, 32); err == nil && inCase(p) {
			return p, true
		}
	}
	for _, m := range guestPort.FindAllStringSubmatch(l, -1) {
		if m[1] == "2" {
			continue
		}
		if p, err := strconv.ParseUint(m[2], 10, 32); err == nil && inCase(p) {
			return p, true
		}
	}
	return 0, false
}

// byConnection orders lines by connection (the unordered pair of
// addresses), connections in order of first appearance, keeping each
// connection's own order.
func byConnection(lines []string) []string {
	var order []string
	groups := map[string][]string{}
	for _, l := range lines {
		key := l
		if m := endpoints.FindStringSubmatch(l); m != nil {
			a, b := m[1], m[2]
			if a > b {
				a, b = b, a
			}
			key = a + " " + b
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], l)
	}
	out := make([]string, 0, len(lines))
	for _, k := range order {
		out = append(out, groups[k]...)
	}
	return out
}

// sumPosted sums receive-buffer lines by shape: "rx buffers posted: 65 x
// w3776", shapes in order of first appearance.
func sumPosted(lines []string) []string {
	var order []string
	count := map[string]int{}
	for _, l := range lines {
		n, shape, ok := strings.Cut(strings.TrimPrefix(l, postedPrefix), " x ")
		k, err := strconv.Atoi(n)
		if !ok || err != nil {
			shape, k = "unparsed "+l, 1
		}
		if _, seen := count[shape]; !seen {
			order = append(order, shape)
		}
		count[shape] += k
	}
	var out []string
	for _, s := range order {
		out = append(out, postedPrefix+strconv.Itoa(count[s])+" x "+s)
	}
	return out
}

// normaliseGuestPorts replaces the port of each side whose CID is not the
// host's (2) with G1, G2, ... in the order the ports first appear, so that
// a case's connections stay apart whatever ports the kernel picked.
func normaliseGuestPorts(lines []string) []string {
	rank := map[string]string{}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = guestPort.ReplaceAllStringFunc(l, func(s string) string {
			m := guestPort.FindStringSubmatch(s)
			if m[1] == "2" {
				return s
			}
			g, ok := rank[m[2]]
			if !ok {
				g = "G" + strconv.Itoa(len(rank)+1)
				rank[m[2]] = g
			}
			return m[1] + ":" + g + m[3]
		})
	}
	return out
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
	switch c.Kind {
	case HostNoListener, HostBound, ResetLeak, ResetLive, Flood, ResetConnected, CloseFirst, Linger:
		for _, l := range packets {
			if strings.HasPrefix(l, "tx RST ") {
				return s + ", " + l
			}
		}
		return s + ", no RST from the guest"
	case ConnectTimeout, ResetConnecting:
		if len(packets) > 0 {
			return s + ", " + packets[0]
		}
	case Refill, ResetListener:
		for _, l := range packets {
			if strings.HasPrefix(l, postedPrefix) {
				return s + ", " + l
			}
		}
		return s + ", no buffers posted"
	}
	if c.Kind == CreditCap || c.Kind == Advertised {
		// What the guest sent before the send timeout.
		first, sent := "", uint64(0)
		for _, l := range packets {
			if strings.HasPrefix(l, "tx RW ") {
				if first == "" {
					first = ", " + afterPorts(l)
				}
				sent += fieldUint(l, "len=")
			}
		}
		return fmt.Sprintf("%s%s, %d bytes sent", s, first, sent)
	}
	for _, l := range packets {
		switch {
		case (c.Kind == Write || c.Kind == HalfClose) && strings.HasPrefix(l, "tx RW "):
			return s + ", " + afterPorts(l)
		case c.Kind == Read && strings.HasPrefix(l, "rx RW "):
			s += ", first " + afterPorts(l)
			c.Kind = 0
		case c.Kind == BufferSize && strings.HasPrefix(l, "tx CREDIT_UPDATE "):
			return s + ", " + l
		}
	}
	if c.Kind == BufferSize {
		return s + ", no CREDIT_UPDATE"
	}
	return s
}

// fieldUint is the number after key in a packet line, or 0.
func fieldUint(l, key string) uint64 {
	i := strings.Index(l, " "+key)
	if i < 0 {
		return 0
	}
	v := l[i+1+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// afterPorts drops the op and the addresses of a packet line.
func afterPorts(l string) string {
	f := strings.SplitN(l, " ", 4)
	if len(f) < 4 {
		return l
	}
	return f[0] + " " + f[1] + " " + f[3]
}
