package device

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/virtio"
)

// lastFault returns the text after prefix of the last fault line starting
// with it, or "" when there is none.
func (r *rig) lastFault(prefix string) string {
	recs := r.eng.Log.Records()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Kind == engine.KindFault && strings.HasPrefix(recs[i].Text, prefix) {
			return strings.TrimPrefix(recs[i].Text, prefix)
		}
	}
	return ""
}

type txShape struct {
	name      string
	len       uint32   // hdr.len
	lens      []uint32 // descriptor lengths
	writeOnly []int    // descriptors flagged device-writable
}

var txShapes = []txShape{
	{name: "header+data", len: 4096, lens: []uint32{44, 4096}},
	{name: "write-only header desc", len: 4096, lens: []uint32{44, 4096}, writeOnly: []int{0}},
	{name: "43-byte header desc", len: 4096, lens: []uint32{43, 0}},
	{name: "zero length", len: 0, lens: []uint32{44}},
	{name: "len 65537", len: 65537, lens: []uint32{44, 4096}},
	{name: "missing data desc", len: 1024, lens: []uint32{44}},
	{name: "write-only data desc", len: 4096, lens: []uint32{44, 4096}, writeOnly: []int{1}},
	{name: "short data desc", len: 8192, lens: []uint32{44, 4096}},
	{name: "linear single desc", len: 4096, lens: []uint32{44 + 4096}},
	{name: "nonlinear 32K+32K", len: 65536, lens: []uint32{44, 32768, 32768}},
	{name: "three data descs, third unreadable", len: 100, lens: []uint32{44, 100, 8}, writeOnly: []int{2}},
}

// TestTXPacketAssembly pins each profile's TX chain rules and error names.
// FC@v1.16.1 packet.rs test_tx_packet_assembly (any shape: 43-byte header ->
// DescChainTooShortForHeader, missing data -> DescChainTooShortForPacket(44,
// 1024), 4 KiB for 8 KiB -> DescChainTooShortForPacket(4140, 8192), zero
// length accepted); FC@v1.5.1 packet.rs test_tx_packet_assembly (legacy
// names); CH@v50.0/v51.0 packet.rs from_tx_virtq_head; rust-vmm virtio-vsock
// from_tx_virtq_chain. "" means accepted.
func TestTXPacketAssembly(t *testing.T) {
	want := map[string]map[string]string{
		"firecracker-1.14": {
			"header+data":                        "",
			"write-only header desc":             "UnreadableDescriptor",
			"43-byte header desc":                "DescChainTooShortForHeader(43)",
			"zero length":                        "",
			"len 65537":                          "InvalidPktLen(65537)",
			"missing data desc":                  "DescChainTooShortForPacket(44, 1024)",
			"write-only data desc":               "UnreadableDescriptor",
			"short data desc":                    "DescChainTooShortForPacket(4140, 8192)",
			"linear single desc":                 "",
			"nonlinear 32K+32K":                  "",
			"three data descs, third unreadable": "UnreadableDescriptor",
		},
		"firecracker-1.5": {
			"header+data":                        "",
			"write-only header desc":             "UnreadableDescriptor",
			"43-byte header desc":                "HdrDescTooSmall(43)",
			"zero length":                        "",
			"len 65537":                          "InvalidPktLen(65537)",
			"missing data desc":                  "BufDescMissing",
			"write-only data desc":               "UnreadableDescriptor",
			"short data desc":                    "BufDescTooSmall",
			"linear single desc":                 "BufDescMissing",
			"nonlinear 32K+32K":                  "BufDescTooSmall",
			"three data descs, third unreadable": "",
		},
		"cloud-hypervisor-50": {
			"header+data":                        "",
			"write-only header desc":             "UnreadableDescriptor",
			"43-byte header desc":                "HdrDescTooSmall(43)",
			"zero length":                        "",
			"len 65537":                          "InvalidPktLen(65537)",
			"missing data desc":                  "", // accepted: the lone head is an overrun
			"write-only data desc":               "UnreadableDescriptor",
			"short data desc":                    "BufDescTooSmall",
			"linear single desc":                 "",
			"nonlinear 32K+32K":                  "BufDescTooSmall",
			"three data descs, third unreadable": "",
		},
		"cloud-hypervisor-51": {
			"header+data":                        "",
			"write-only header desc":             "UnreadableDescriptor",
			"43-byte header desc":                "HdrDescTooSmall(43)",
			"zero length":                        "",
			"len 65537":                          "InvalidPktLen(65537)",
			"missing data desc":                  "",
			"write-only data desc":               "UnreadableDescriptor",
			"short data desc":                    "BufDescTooSmall",
			"linear single desc":                 "",
			"nonlinear 32K+32K":                  "",
			"three data descs, third unreadable": "UnreadableDescriptor", // every data descriptor is walked
		},
		"cloud-hypervisor-52": {
			"missing data desc": "BufDescTooSmall", // 9f405a21a bounds check
			"nonlinear 32K+32K": "",
		},
		"vhost-device-vsock": {
			"header+data":                        "",
			"write-only header desc":             "UnexpectedWriteOnlyDescriptor",
			"43-byte header desc":                "DescriptorLengthTooSmall",
			"zero length":                        "",
			"len 65537":                          "InvalidHeaderLen(65537)",
			"missing data desc":                  "DescriptorChainTooShort",
			"write-only data desc":               "UnexpectedWriteOnlyDescriptor",
			"short data desc":                    "DescriptorLengthTooSmall",
			"linear single desc":                 "",
			"nonlinear 32K+32K":                  "DescriptorLengthTooSmall",
			"three data descs, third unreadable": "",
		},
	}
	for prof, cases := range want {
		for _, s := range txShapes {
			wantErr, ok := cases[s.name]
			if !ok {
				continue
			}
			t.Run(prof+"/"+s.name, func(t *testing.T) {
				r := newRig(t, prof, 4)
				h := hdr(virtio.OpRW, 1234, 5678)
				h.Len = s.len
				payload := bytes.Repeat([]byte{0xab}, int(s.len))
				r.sendChain(r.layTX(h, payload, s.lens, s.writeOnly...))
				st := r.stats()
				if wantErr == "" {
					require.Equal(t, uint64(1), st.TXPackets, r.log())
					require.Zero(t, st.BadTXChains)
				} else {
					require.Zero(t, st.TXPackets, r.log())
					require.Equal(t, uint64(1), st.BadTXChains)
					require.Equal(t, wantErr, r.lastFault("vsock: error reading TX packet: "))
				}
				if r.prof.LeakBadTXChains && wantErr != "" {
					require.Empty(t, r.txUsed, "the chain is never returned")
					require.Equal(t, uint64(1), st.LeakedChains)
				} else {
					require.Equal(t, []uint32{0}, r.txUsed, "used length 0 either way")
				}
				require.Zero(t, st.Violations, r.log())
			})
		}
	}
}

type rxShapeCase struct {
	name string
	bufs []virtio.Buffer
}

func w(n uint32) virtio.Buffer  { return virtio.Buffer{Len: n, Write: true} }
func ro(n uint32) virtio.Buffer { return virtio.Buffer{Len: n} }

var rxShapes = []rxShapeCase{
	{"single 4140", []virtio.Buffer{w(4140)}},
	{"44+4096", []virtio.Buffer{w(44), w(4096)}},
	{"read-only header", []virtio.Buffer{ro(44), w(4096)}},
	{"single 43", []virtio.Buffer{w(43)}},
	{"header only", []virtio.Buffer{w(44)}},
	{"44+2048+2048", []virtio.Buffer{w(44), w(2048), w(2048)}},
}

// TestRXPacketAssembly pins each profile's RX chain rules. FC@v1.16.1
// packet.rs test_rx_packet_assembly (read-only header -> UnwritableDescriptor,
// too short -> DescChainTooShortForHeader); FC@v1.5.1 (a lone descriptor ->
// BufDescMissing: the 6.1.63 breakage, issue #4284); CH@v50.0/v51.0
// from_rx_virtq_head (v51 rejects a data descriptor with a successor);
// rust-vmm from_rx_virtq_chain. A good buffer receives the RESPONSE to a
// guest REQUEST; a bad one is returned with used length 0.
func TestRXPacketAssembly(t *testing.T) {
	want := map[string]map[string]string{
		"firecracker-1.14": {
			"single 4140":      "",
			"44+4096":          "",
			"read-only header": "UnwritableDescriptor",
			"single 43":        "DescChainTooShortForHeader(43)",
			"header only":      "",
			"44+2048+2048":     "",
		},
		"firecracker-1.5": {
			"single 4140":      "BufDescMissing",
			"44+4096":          "",
			"read-only header": "UnwritableDescriptor",
			"single 43":        "HdrDescTooSmall(43)",
			"header only":      "BufDescMissing",
			"44+2048+2048":     "",
		},
		"cloud-hypervisor-50": {
			"single 4140":      "",
			"44+4096":          "",
			"read-only header": "UnwritableDescriptor",
			"single 43":        "HdrDescTooSmall(43)",
			"header only":      "",
			"44+2048+2048":     "",
		},
		"cloud-hypervisor-51": {
			"single 4140":  "",
			"44+4096":      "",
			"44+2048+2048": "BufDescTooSmall",
		},
		"vhost-device-vsock": {
			"single 4140":      "",
			"44+4096":          "",
			"read-only header": "UnexpectedReadOnlyDescriptor",
			"single 43":        "DescriptorLengthTooSmall",
			"header only":      "DescriptorChainTooShort",
			"44+2048+2048":     "",
		},
	}
	for prof, cases := range want {
		for _, s := range rxShapes {
			wantErr, ok := cases[s.name]
			if !ok {
				continue
			}
			t.Run(prof+"/"+s.name, func(t *testing.T) {
				r := newRig(t, prof, 1, withRXBuffers(s.bufs...))
				r.autoRepost = false
				r.listen(1024)
				r.send(hdr(virtio.OpRequest, 2000, 1024), nil)
				p := r.recvOne()
				if wantErr == "" {
					require.Equal(t, uint32(virtio.HeaderLen), p.used)
					require.Equal(t, virtio.OpResponse, p.hdr.Op)
					require.Zero(t, r.stats().BadRXChains)
				} else {
					require.Zero(t, p.used, "a bad RX chain is used with length 0")
					require.Equal(t, uint64(1), r.stats().BadRXChains)
					require.Equal(t, wantErr, strings.TrimSuffix(r.lastFault("vsock: RX queue error: "), ". Discarding the package."))
				}
			})
		}
	}
}

// TestRXErrorLineMatchesDevice: Firecracker appends ". Discarding the
// package." (FC@v1.16.1 device.rs process_rx), Cloud Hypervisor does not
// (CH@v50.0 device.rs process_rx).
func TestRXErrorLineMatchesDevice(t *testing.T) {
	for _, c := range []struct {
		prof  string
		shape uint32
		line  string
	}{
		{"firecracker-1.5", 4140, "vsock: RX queue error: BufDescMissing. Discarding the package."},
		{"cloud-hypervisor-50", 43, "vsock: RX queue error: HdrDescTooSmall(43)"},
		// CH@v34.0 packet.rs from_rx_virtq_head: a 6.3+ single-descriptor
		// buffer (issue #5691), fixed in v35.0 by a2752fe04 (PR #5692).
		{"cloud-hypervisor-34", 3776, "vsock: RX queue error: BufDescMissing"},
		{"cloud-hypervisor-50", 3776, ""},
	} {
		r := newRig(t, c.prof, 1, withRXShape(c.shape))
		r.autoRepost = false
		r.listen(1024)
		r.send(hdr(virtio.OpRequest, 2000, 1024), nil)
		r.recvOne()
		require.Equal(t, c.line, r.lastFault(""), c.prof)
	}
}

// TestRXCommitRefusesOversizedPacket: an RX chain longer than 65,580 bytes
// lets a read exceed 64 KiB; commit_hdr refuses it with InvalidPktLen and the
// buffer is used with length 0 (FC@v1.16.1 device.rs process_rx, packet.rs
// commit_hdr; notes 1.5, derived).
func TestRXCommitRefusesOversizedPacket(t *testing.T) {
	r := newRig(t, "firecracker-1.14", 1)
	r.autoRepost = false
	l := r.listen(1024)
	req := hdr(virtio.OpRequest, 2000, 1024)
	req.BufAlloc = 256 * 1024 // Linux's default socket buffer: credit above 64 KiB
	r.send(req, nil)
	r.expect(virtio.OpResponse, 1024, 2000)
	s, err := l.Accept()
	require.NoError(t, err)
	_, err = s.Write(bytes.Repeat([]byte{1}, 70000))
	require.NoError(t, err)
	// One RX chain of 44 + 70,000 bytes, placed in the TX arena's room.
	big := []virtio.Buffer{{Addr: txArena, Len: 44, Write: true}, {Addr: txArena + 64, Len: 70000, Write: true}}
	head, err := r.drv[virtio.QueueRX].Add(big)
	require.NoError(t, err)
	r.rxPosted[head] = big
	r.notify(virtio.QueueRX)
	p := r.recvOne()
	require.Zero(t, p.used)
	require.Contains(t, r.log(), "vsock: Error writing packet header to guest memory: InvalidPktLen(70000)")
	require.Equal(t, uint32(70000), r.conn(1024, 2000).RxCnt, "the bytes were taken from the host stream and are lost")
}
