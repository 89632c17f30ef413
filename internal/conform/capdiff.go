package conform

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

// Normalised is one captured packet with what must differ between a real
// run and a lab run taken out: no time, and the guest's port (the kernel
// picks it at random) replaced by its rank among the guest ports of the
// capture, in order of first appearance (G1, G2, ...).
type Normalised struct {
	Dir     string
	Hdr     string
	Payload []byte
}

func (n Normalised) String() string {
	return n.Dir + " " + n.Hdr + " payload " + strconv.Itoa(len(n.Payload)) + " bytes"
}

// Normalise normalises a capture. With perConnection, packets are grouped
// by connection (the host port, in order of first appearance), keeping
// their order within each: a real run interleaves connections by wall
// time, the lab by virtual time.
func Normalise(ps []replay.Packet, perConnection bool) []Normalised {
	ranks := map[uint32]int{}
	rank := func(p uint32) string {
		r, ok := ranks[p]
		if !ok {
			r = len(ranks) + 1
			ranks[p] = r
		}
		return "G" + strconv.Itoa(r)
	}
	if perConnection {
		first := map[uint32]int{}
		for i, p := range ps {
			if _, ok := first[hostPortOf(p.Hdr)]; !ok {
				first[hostPortOf(p.Hdr)] = i
			}
		}
		ps = slices.Clone(ps)
		slices.SortStableFunc(ps, func(a, b replay.Packet) int {
			return first[hostPortOf(a.Hdr)] - first[hostPortOf(b.Hdr)]
		})
	}
	out := make([]Normalised, len(ps))
	for i, p := range ps {
		h := p.Hdr
		dir := "rx"
		src, dst := strconv.FormatUint(uint64(h.SrcPort), 10), strconv.FormatUint(uint64(h.DstPort), 10)
		if h.SrcCID != virtio.CIDHost {
			dir, src = "tx", rank(h.SrcPort)
		} else {
			dst = rank(h.DstPort)
		}
		s := h.String()
		// Header.String prints "src:port->dst:port"; put the normalised
		// ports in its place.
		old := fmt.Sprintf("%d:%d->%d:%d", h.SrcCID, h.SrcPort, h.DstCID, h.DstPort)
		s = string(bytes.Replace([]byte(s), []byte(old), []byte(fmt.Sprintf("%d:%s->%d:%s", h.SrcCID, src, h.DstCID, dst)), 1))
		out[i] = Normalised{Dir: dir, Hdr: s, Payload: p.Payload}
	}
	return out
}

func hostPortOf(h virtio.Header) uint32 {
	if h.SrcCID == virtio.CIDHost {
		return h.SrcPort
	}
	return h.DstPort
}

// FirstDifference returns the index of the first packet where two
// normalised captures part and a description, or -1 and "" when they
// agree.
func FirstDifference(a, b []Normalised) (int, string) {
	for i := range max(len(a), len(b)) {
		switch {
		case i >= len(a):
			return i, fmt.Sprintf("packet %d: only in B: %s", i, b[i])
		case i >= len(b):
			return i, fmt.Sprintf("packet %d: only in A: %s", i, a[i])
		case a[i].Dir+a[i].Hdr != b[i].Dir+b[i].Hdr:
			return i, fmt.Sprintf("packet %d:\n  A: %s\n  B: %s", i, a[i], b[i])
		case !bytes.Equal(a[i].Payload, b[i].Payload):
			return i, fmt.Sprintf("packet %d: same header, payloads differ (%s)", i, a[i])
		}
	}
	return -1, ""
}
