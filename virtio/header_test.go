package virtio

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// hexBytes turns a spaced hex string, written out by hand field by field, into
// bytes.
func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	var cur byte
	digits := 0
	for _, r := range s {
		var v byte
		switch {
		case r >= '0' && r <= '9':
			v = byte(r - '0')
		case r >= 'a' && r <= 'f':
			v = byte(r-'a') + 10
		case r == ' ' || r == '\n' || r == '|':
			continue
		default:
			t.Fatalf("bad hex digit %q", r)
		}
		cur = cur<<4 | v
		digits++
		if digits == 2 {
			out = append(out, cur)
			cur, digits = 0, 0
		}
	}
	require.Zero(t, digits, "odd number of hex digits")
	return out
}

// The byte layouts below follow struct virtio_vsock_hdr in
// include/uapi/linux/virtio_vsock.h (docs/sources.md#linux-header): packed, little-endian,
//
//	src_cid le64 | dst_cid le64 | src_port le32 | dst_port le32 | len le32 |
//	type le16 | op le16 | flags le32 | buf_alloc le32 | fwd_cnt le32
func TestHeaderCodec(t *testing.T) {
	tests := []struct {
		name  string
		bytes string
		hdr   Header
		str   string
	}{
		{
			name: "guest REQUEST to the host",
			bytes: "03 00 00 00 00 00 00 00 | 02 00 00 00 00 00 00 00 | 00 04 00 00 | 00 00 00 40 | 00 00 00 00 |" +
				"01 00 | 01 00 | 00 00 00 00 | 00 00 04 00 | 00 00 00 00",
			hdr: Header{SrcCID: 3, DstCID: 2, SrcPort: 1024, DstPort: 1 << 30, Type: TypeStream, Op: OpRequest, BufAlloc: 256 * 1024},
			str: "REQUEST 3:1024->2:1073741824 buf_alloc=262144 fwd_cnt=0",
		},
		{
			name: "device RW with 4096 bytes",
			bytes: "02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00 | 00 00 00 40 | 10 27 00 00 | 00 10 00 00 |" +
				"01 00 | 05 00 | 00 00 00 00 | 00 00 01 00 | 78 56 34 12",
			hdr: Header{SrcCID: 2, DstCID: 3, SrcPort: 1 << 30, DstPort: 10000, Len: 4096, Type: TypeStream, Op: OpRW, BufAlloc: 64 * 1024, FwdCnt: 0x12345678},
			str: "RW 2:1073741824->3:10000 len=4096 buf_alloc=65536 fwd_cnt=305419896",
		},
		{
			name: "SHUTDOWN with both flags",
			bytes: "03 00 00 00 00 00 00 00 | 02 00 00 00 00 00 00 00 | 01 00 00 00 | 02 00 00 00 | 00 00 00 00 |" +
				"01 00 | 04 00 | 03 00 00 00 | 00 00 04 00 | ff ff ff ff",
			hdr: Header{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpShutdown, Flags: ShutdownRcv | ShutdownSend, BufAlloc: 256 * 1024, FwdCnt: 0xffffffff},
			str: "SHUTDOWN 3:1->2:2 flags=RCV|SEND buf_alloc=262144 fwd_cnt=4294967295",
		},
		{
			name: "SEQPACKET RW with EOM|EOR, every byte of every field distinct",
			bytes: "01 02 03 04 05 06 07 08 | 11 12 13 14 15 16 17 18 | 21 22 23 24 | 31 32 33 34 | 00 00 01 00 |" +
				"02 00 | 05 00 | 03 00 00 00 | 41 42 43 44 | 51 52 53 54",
			hdr: Header{SrcCID: 0x0807060504030201, DstCID: 0x1817161514131211, SrcPort: 0x24232221, DstPort: 0x34333231,
				Len: 65536, Type: TypeSeqpacket, Op: OpRW, Flags: SeqEOM | SeqEOR, BufAlloc: 0x44434241, FwdCnt: 0x54535251},
			str: "RW SEQPACKET 578437695752307201:606282273->1735880461161533969:875770417 len=65536 flags=0x3 buf_alloc=1145258561 fwd_cnt=1414746705",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hexBytes(t, tc.bytes)
			require.Len(t, b, HeaderLen)
			got, err := DecodeHeader(b)
			require.NoError(t, err)
			require.Equal(t, tc.hdr, got)

			out := make([]byte, HeaderLen)
			require.NoError(t, tc.hdr.Encode(out))
			require.Equal(t, b, out)
			require.Equal(t, b, tc.hdr.Append(nil))
			require.Equal(t, tc.str, tc.hdr.String())
		})
	}
}

func TestDecodeHeaderShort(t *testing.T) {
	for _, n := range []int{0, 1, 43} {
		_, err := DecodeHeader(make([]byte, n))
		var se *ShortError
		require.ErrorAs(t, err, &se)
		require.Equal(t, ShortError{What: "header", Need: 44, Got: n}, *se)
	}
	var h Header
	require.Error(t, h.Encode(make([]byte, 43)))
	// A longer buffer is fine: the payload follows the header.
	_, err := DecodeHeader(make([]byte, 100))
	require.NoError(t, err)
}

func TestHeaderValidate(t *testing.T) {
	ok := Header{SrcCID: 3, DstCID: 2, Type: TypeStream, Op: OpRW, Len: MaxPktBufSize}
	require.NoError(t, ok.Validate())
	tests := []struct {
		name  string
		mod   func(*Header)
		field string
	}{
		{"reserved src_cid bits (spec: upper 32 bits reserved)", func(h *Header) { h.SrcCID = 1<<32 | 3 }, "src_cid"},
		{"reserved dst_cid bits", func(h *Header) { h.DstCID = 1 << 40 }, "dst_cid"},
		{"op INVALID", func(h *Header) { h.Op = OpInvalid }, "op"},
		{"op 8", func(h *Header) { h.Op = 8 }, "op"},
		{"type 0", func(h *Header) { h.Type = 0 }, "type"},
		{"type DGRAM (unmerged proposal only)", func(h *Header) { h.Type = TypeDgram }, "type"},
		{"len over 64 KiB (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE)", func(h *Header) { h.Len = MaxPktBufSize + 1 }, "len"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := ok
			tc.mod(&h)
			err := h.Validate()
			var he *HeaderError
			require.ErrorAs(t, err, &he)
			require.Equal(t, tc.field, he.Field)
		})
	}
}

func TestOpAndTypeNames(t *testing.T) {
	// Numbering from include/uapi/linux/virtio_vsock.h.
	names := map[Op]string{0: "INVALID", 1: "REQUEST", 2: "RESPONSE", 3: "RST", 4: "SHUTDOWN", 5: "RW", 6: "CREDIT_UPDATE", 7: "CREDIT_REQUEST", 9: "OP(9)"}
	for op, want := range names {
		require.Equal(t, want, op.String())
	}
	require.Equal(t, "STREAM", TypeStream.String())
	require.Equal(t, "SEQPACKET", TypeSeqpacket.String())
	require.Equal(t, "TYPE(7)", Type(7).String())
	require.Equal(t, "SHUTDOWN 1:1->2:2 flags=0x4 buf_alloc=0 fwd_cnt=0",
		Header{SrcCID: 1, SrcPort: 1, DstCID: 2, DstPort: 2, Type: TypeStream, Op: OpShutdown, Flags: 4}.String())
}

// struct virtio_vsock_event { le32 id } and struct virtio_vsock_config
// { le64 guest_cid } (include/uapi/linux/virtio_vsock.h).
func TestEventAndConfig(t *testing.T) {
	b := hexBytes(t, "00 00 00 00")
	id, err := DecodeEvent(b)
	require.NoError(t, err)
	require.Equal(t, EventTransportReset, id)
	require.Equal(t, "TRANSPORT_RESET", id.String())
	out := make([]byte, 4)
	require.NoError(t, EncodeEvent(out, 7))
	require.Equal(t, hexBytes(t, "07 00 00 00"), out)
	_, err = DecodeEvent(b[:3])
	require.Error(t, err)
	require.Error(t, EncodeEvent(out[:3], 0))

	cfg := hexBytes(t, "2a 00 00 00 00 00 00 00")
	cid, err := DecodeConfig(cfg)
	require.NoError(t, err)
	require.Equal(t, uint64(42), cid)
	out = make([]byte, 8)
	require.NoError(t, EncodeConfig(out, 42))
	require.Equal(t, cfg, out)
	_, err = DecodeConfig(cfg[:7])
	var se *ShortError
	require.True(t, errors.As(err, &se))
	require.Error(t, EncodeConfig(out[:7], 1))
}
