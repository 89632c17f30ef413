package conform

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/replay"
	"github.com/vsocklab/vsocklab/virtio"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Case
		err  string
	}{
		{in: "w1,h65536,n", want: []Case{{Write, 1, 0}, {HalfClose, 65536, 0}, {NoListener, 0, 0}}},
		{in: "w0", err: `case 0 "w0": size must be 1 to 65536`},
		{in: "w1,w65537", err: `case 1 "w65537": size must be 1 to 65536`},
		{in: "n5", err: `case 0 "n5": n takes no size`},
		{in: "y1", err: `case 0 "y1": unknown kind 'y' (w, h, n, r, b, c, o, u, x, l, k, t, p, f, a)`},
		{in: "a262144,a1048577", err: `case 1 "a1048577": write must be 1 to 1048576 bytes`},
		{in: "x1", err: `case 0 "x1": x takes no size`},
		{in: "o,u,x,l0,l1,k,tc,tl,ts,tr,p65,f12x129", want: []Case{
			{HostNoListener, 0, 0}, {HostBound, 0, 0}, {CloseFirst, 0, 0}, {Linger, 0, 0}, {Linger, 1, 0}, {ConnectTimeout, 0, 0},
			{ResetConnected, 0, 0}, {ResetListener, 0, 0}, {ResetConnecting, 0, 0}, {ResetLeak, 0, 0}, {Refill, 65, 0}, {Flood, 12, 129},
		}},
		{in: "tq", err: `case 0 "tq": reset cases are tc, tl, ts, tr and tv`},
		{in: "l11", err: `case 0 "l11": linger must be 0 to 10 seconds`},
		{in: "p0", err: `case 0 "p0": packets must be 1 to 200`},
		{in: "f200x3732", err: `case 0 "f200x3732": want fNxR, N 1 to 200 packets of R 1 to 3732 bytes, N*R at most 4096`},
		{in: "r100x7,b262144", want: []Case{{Read, 100, 7}, {BufferSize, 262144, 0}}},
		{in: "r100", err: `case 0 "r100": want rNxR, N and R 1 to 65536`},
		{in: "r1x0", err: `case 0 "r1x0": want rNxR, N and R 1 to 65536`},
		{in: "b0", err: `case 0 "b0": buffer size must be 1 to 1073741824`},
		{in: "w1,,n", err: "case 1: empty"},
		{in: "wz", err: `case 0 "wz": size must be 1 to 65536`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in, Format(got))
		})
	}
}

func TestSuiteIsFixedAndRoundTrips(t *testing.T) {
	a, b := Suite(200), Suite(200)
	require.Equal(t, a, b, "the drawn sizes come from a fixed seed")
	require.Len(t, a, len(BoundarySizes)+200+4+2+21+7+6+2+4+5+2+3)
	require.Equal(t, "o,u,x,l0,l1,k,tc,tl,ts,tr,tv,p1,p70,f30x1,f30x128,f12x129", Format(a[253:]))
	back, err := Parse(Format(a))
	require.NoError(t, err)
	require.Equal(t, a, back)
	for _, c := range a {
		if c.Kind == Write || c.Kind == HalfClose || c.Kind == Read {
			require.True(t, c.N >= 1 && c.N <= MaxN, "case %s", c)
		}
	}
}

func TestByCaseSplitsByHostPortAndHidesTheGuestPort(t *testing.T) {
	log := []string{
		"      1.000000000 device  tx REQUEST 3:1444459446->2:7001 buf_alloc=262144 fwd_cnt=0 chain r44",
		"   1.1s    1.100000000 device  rx RESPONSE 2:7001->3:1444459446 buf_alloc=65536 fwd_cnt=0",
		"      1.200000000 device  tx REQUEST 3:99->2:7000 buf_alloc=262144 fwd_cnt=0 chain r44",
		"      1.300000000 device  tx REQUEST 3:99->2:5000 buf_alloc=262144 fwd_cnt=0 chain r44",
		"      1.400000000 guest   something else",
	}
	start, got := ByCase(Packets(log), 7000, 2)
	require.Empty(t, start)
	require.Equal(t, [][]string{
		{"tx REQUEST 3:G1->2:7000 buf_alloc=262144 fwd_cnt=0 chain r44"},
		{"tx REQUEST 3:G1->2:7001 buf_alloc=262144 fwd_cnt=0 chain r44", "rx RESPONSE 2:7001->3:G1 buf_alloc=65536 fwd_cnt=0"},
	}, got)
	require.Empty(t, Diff(got[0], got[0]))
	require.Equal(t, `packet 1: model "rx RESPONSE 2:7001->3:G1 buf_alloc=65536 fwd_cnt=0", real "(none)"`, Diff(got[1], got[1][:1]))
}

func TestByCaseFollowsHostConnectsGroupsConnectionsAndSumsPostedBuffers(t *testing.T) {
	log := []string{
		"      0.1 device  rx buffers posted: 100 x w3776",
		"      0.2 device  rx buffers posted: 28 x w3776",
		"      1.0 device  tx REQUEST 3:5555->2:7001 buf_alloc=262144 fwd_cnt=0 chain r44",
		"      1.1 device  rx RESPONSE 2:7001->3:5555 buf_alloc=65536 fwd_cnt=0",
		"      1.2 device  rx REQUEST 2:1073741824->3:7001 buf_alloc=65536 fwd_cnt=0",
		"      1.3 device  rx RW 2:7001->3:5555 len=1 buf_alloc=65536 fwd_cnt=0",
		"      1.4 device  tx RST 3:7001->2:1073741824 buf_alloc=0 fwd_cnt=0 chain r44",
		"      1.5 device  rx buffers posted: 65 x w3776",
		"      1.6 device  tx REQUEST 3:6666->4:7000 buf_alloc=262144 fwd_cnt=0 chain r44",
		"      1.7 device  rx buffers posted: 1 x w3776",
	}
	start, got := ByCase(Packets(log), 7000, 2)
	require.Equal(t, []string{"rx buffers posted: 128 x w3776"}, start)
	require.Equal(t, [][]string{
		{"tx REQUEST 3:G1->4:G2 buf_alloc=262144 fwd_cnt=0 chain r44", "rx buffers posted: 1 x w3776"},
		{
			"tx REQUEST 3:G1->2:7001 buf_alloc=262144 fwd_cnt=0 chain r44",
			"rx RESPONSE 2:7001->3:G1 buf_alloc=65536 fwd_cnt=0",
			"rx RW 2:7001->3:G1 len=1 buf_alloc=65536 fwd_cnt=0",
			"rx REQUEST 2:1073741824->3:G2 buf_alloc=65536 fwd_cnt=0",
			"tx RST 3:G2->2:1073741824 buf_alloc=0 fwd_cnt=0 chain r44",
			"rx buffers posted: 65 x w3776",
		},
	}, got)
}

func TestMergeRXJoinsConsecutiveRXPacketsOfAConnection(t *testing.T) {
	in := []string{
		"rx RW 2:7000->3:G1 len=128 buf_alloc=65536 fwd_cnt=0",
		"rx RW 2:7000->3:G1 len=256 buf_alloc=65536 fwd_cnt=0",
		"rx RW 2:7000->3:G2 len=1 buf_alloc=65536 fwd_cnt=0",
		"tx CREDIT_UPDATE 3:G1->2:7000 buf_alloc=4096 fwd_cnt=384 chain r44",
		"rx RW 2:7000->3:G1 len=1 buf_alloc=65536 fwd_cnt=0",
		"rx RW 2:7000->3:G1 len=1 buf_alloc=65536 fwd_cnt=5",
	}
	require.Equal(t, []string{
		"rx RW 2:7000->3:G1 len=384 buf_alloc=65536 fwd_cnt=0",
		"rx RW 2:7000->3:G2 len=1 buf_alloc=65536 fwd_cnt=0",
		"tx CREDIT_UPDATE 3:G1->2:7000 buf_alloc=4096 fwd_cnt=384 chain r44",
		"rx RW 2:7000->3:G1 len=1 buf_alloc=65536 fwd_cnt=0",
		"rx RW 2:7000->3:G1 len=1 buf_alloc=65536 fwd_cnt=5",
	}, MergeRX(in))
}

func pkt(src, dst uint32, op virtio.Op, fromGuest bool, payload string) replay.Packet {
	h := virtio.Header{SrcCID: 2, DstCID: 3, SrcPort: src, DstPort: dst, Op: op, Type: virtio.TypeStream, Len: uint32(len(payload))}
	if fromGuest {
		h.SrcCID, h.DstCID = 3, 2
	}
	return replay.Packet{Hdr: h, Payload: []byte(payload)}
}

func TestCaptureDiffNormalisesGuestPortsAndFindsTheFirstDifference(t *testing.T) {
	real := []replay.Packet{
		pkt(40001, 7000, virtio.OpRequest, true, ""),
		pkt(7000, 40001, virtio.OpResponse, false, ""),
		pkt(40001, 7000, virtio.OpRW, true, "abc"),
	}
	lab := []replay.Packet{
		pkt(1024, 7000, virtio.OpRequest, true, ""),
		pkt(7000, 1024, virtio.OpResponse, false, ""),
		pkt(1024, 7000, virtio.OpRW, true, "abc"),
	}
	var buf bytes.Buffer
	require.NoError(t, replay.WritePcap(&buf, real))
	back, err := replay.ReadPcap(&buf)
	require.NoError(t, err)
	i, d := FirstDifference(Normalise(back, false), Normalise(lab, false))
	require.Equal(t, -1, i, d)

	lab[2].Payload = []byte("abd")
	i, d = FirstDifference(Normalise(real, false), Normalise(lab, false))
	require.Equal(t, 2, i)
	require.Contains(t, d, "payloads differ")

	lab = lab[:2]
	i, d = FirstDifference(Normalise(real, false), Normalise(lab, false))
	require.Equal(t, 2, i)
	require.Equal(t, "packet 2: only in A: tx RW 3:G1->2:7000 len=3 buf_alloc=0 fwd_cnt=0 payload 3 bytes", d)
}

func TestCaptureDiffPerConnectionIgnoresInterleaving(t *testing.T) {
	a := []replay.Packet{
		pkt(1, 7000, virtio.OpRequest, true, ""),
		pkt(2, 7001, virtio.OpRequest, true, ""),
		pkt(7000, 1, virtio.OpResponse, false, ""),
	}
	b := []replay.Packet{a[0], a[2], a[1]}
	i, _ := FirstDifference(Normalise(a, false), Normalise(b, false))
	require.Equal(t, 1, i)
	i, d := FirstDifference(Normalise(a, true), Normalise(b, true))
	require.Equal(t, -1, i, d)
}

func TestReadPcapRejectsBadInput(t *testing.T) {
	_, err := replay.ReadPcap(bytes.NewReader([]byte("not a pcap file at all!!")))
	require.ErrorContains(t, err, "not a pcap file")
	var buf bytes.Buffer
	require.NoError(t, replay.WritePcap(&buf, []replay.Packet{pkt(1, 2, virtio.OpRW, true, "xyz")}))
	_, err = replay.ReadPcap(bytes.NewReader(buf.Bytes()[:buf.Len()-1]))
	require.ErrorContains(t, err, "pcap: record 0")
}
