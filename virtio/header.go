// Package virtio is the wire and the rings of a virtio-vsock device: the
// 44-byte packet header, the event and config structures, guest memory with
// checked access, the split virtqueue seen from the driver and from the
// device, and vsock credit arithmetic.
//
// The package is pure: no goroutines, no clock, no I/O. Every function that
// looks at guest-controlled bytes returns an error instead of panicking, so a
// fuzzer can throw anything at it.
//
// Layouts and constants follow include/uapi/linux/virtio_vsock.h and the
// virtio 1.x specification ("Socket Device" and "Split Virtqueues").
package virtio

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// HeaderLen is sizeof(struct virtio_vsock_hdr): the header is packed.
const HeaderLen = 44

// MaxPktBufSize is VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, the largest payload Linux
// puts in one packet and the largest a Firecracker-derived device accepts.
const MaxPktBufSize = 64 * 1024

// Op is the le16 op field of the header.
type Op uint16

// Ops, in the numbering of include/uapi/linux/virtio_vsock.h.
const (
	OpInvalid       Op = 0
	OpRequest       Op = 1
	OpResponse      Op = 2
	OpRST           Op = 3
	OpShutdown      Op = 4
	OpRW            Op = 5
	OpCreditUpdate  Op = 6
	OpCreditRequest Op = 7
)

var opNames = [...]string{"INVALID", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE", "CREDIT_REQUEST"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "OP(" + strconv.Itoa(int(o)) + ")"
}

// Known reports whether o is one of the ops the specification defines.
func (o Op) Known() bool { return o >= OpRequest && o <= OpCreditRequest }

// Type is the le16 socket type field of the header.
type Type uint16

// Socket types. TypeDgram exists only in an unmerged proposal; it is named so
// that devices can reject it by name, as Firecracker's muxer does.
const (
	TypeStream    Type = 1
	TypeSeqpacket Type = 2
	TypeDgram     Type = 3
)

func (t Type) String() string {
	switch t {
	case TypeStream:
		return "STREAM"
	case TypeSeqpacket:
		return "SEQPACKET"
	case TypeDgram:
		return "DGRAM"
	}
	return "TYPE(" + strconv.Itoa(int(t)) + ")"
}

// Flags of a SHUTDOWN packet. Once received they are sticky.
const (
	ShutdownRcv  uint32 = 1
	ShutdownSend uint32 = 2
)

// Flags of a SEQPACKET RW packet (5.17 and later; 5.14 to 5.16 had only EOR=1
// meaning end of message).
const (
	SeqEOM uint32 = 1
	SeqEOR uint32 = 2
)

// Feature bits of the vsock device, and the transport bits this package
// knows about. No vsock bit negotiated means STREAM only.
const (
	FeatureStream          uint64 = 1 << 0
	FeatureSeqpacket       uint64 = 1 << 1
	FeatureNoImpliedStream uint64 = 1 << 2
	FeatureIndirectDesc    uint64 = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx        uint64 = 1 << 29 // VIRTIO_F_EVENT_IDX: not modelled
	FeatureVersion1        uint64 = 1 << 32 // VIRTIO_F_VERSION_1
)

// Well-known context IDs and ports.
const (
	CIDHypervisor    uint64 = 0
	CIDLocal         uint64 = 1
	CIDHost          uint64 = 2
	CIDAny           uint64 = 0xffffffff
	PortAny          uint32 = 0xffffffff
	LastReservedPort uint32 = 1023 // binding at or below needs CAP_NET_BIND_SERVICE
)

// Queue indexes and the device ID of a vsock device.
const (
	QueueRX    = 0
	QueueTX    = 1
	QueueEvent = 2
	DeviceID   = 19
)

// Header is struct virtio_vsock_hdr, decoded.
type Header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     Type
	Op       Op
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

// ShortError says a buffer was too short for the structure being decoded or
// encoded.
type ShortError struct {
	What string // "header", "event", "config"
	Need int
	Got  int
}

func (e *ShortError) Error() string {
	return fmt.Sprintf("virtio: %s needs %d bytes, got %d", e.What, e.Need, e.Got)
}

// DecodeHeader reads a header from the first HeaderLen bytes of b. It checks
// only the length; Validate applies the semantic rules.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, &ShortError{What: "header", Need: HeaderLen, Got: len(b)}
	}
	le := binary.LittleEndian
	return Header{
		SrcCID:   le.Uint64(b[0:]),
		DstCID:   le.Uint64(b[8:]),
		SrcPort:  le.Uint32(b[16:]),
		DstPort:  le.Uint32(b[20:]),
		Len:      le.Uint32(b[24:]),
		Type:     Type(le.Uint16(b[28:])),
		Op:       Op(le.Uint16(b[30:])),
		Flags:    le.Uint32(b[32:]),
		BufAlloc: le.Uint32(b[36:]),
		FwdCnt:   le.Uint32(b[40:]),
	}, nil
}

// Encode writes h into the first HeaderLen bytes of b.
func (h *Header) Encode(b []byte) error {
	if len(b) < HeaderLen {
		return &ShortError{What: "header", Need: HeaderLen, Got: len(b)}
	}
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], uint16(h.Type))
	le.PutUint16(b[30:], uint16(h.Op))
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
	return nil
}

// Append appends the encoded header to b.
func (h *Header) Append(b []byte) []byte {
	n := len(b)
	b = append(b, make([]byte, HeaderLen)...)
	_ = h.Encode(b[n:]) // cannot fail: the slice has room
	return b
}

// HeaderError is a semantic defect of a decoded header.
type HeaderError struct {
	Field  string
	Value  uint64
	Reason string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("virtio: header %s=%d: %s", e.Field, e.Value, e.Reason)
}

// Validate applies the specification's rules that every reader agrees on:
// reserved CID bits zero, a known op and type, and a payload no larger than
// MaxPktBufSize. Devices differ in what else they check (Firecracker drops a
// packet for an unknown dst_cid, answers a DGRAM with RST), so those checks
// belong to the device model, not here.
func (h *Header) Validate() error {
	switch {
	case h.SrcCID>>32 != 0:
		return &HeaderError{"src_cid", h.SrcCID, "upper 32 bits are reserved"}
	case h.DstCID>>32 != 0:
		return &HeaderError{"dst_cid", h.DstCID, "upper 32 bits are reserved"}
	case !h.Op.Known():
		return &HeaderError{"op", uint64(h.Op), "unknown op"}
	case h.Type != TypeStream && h.Type != TypeSeqpacket:
		return &HeaderError{"type", uint64(h.Type), "unknown socket type"}
	case h.Len > MaxPktBufSize:
		return &HeaderError{"len", uint64(h.Len), "payload over 64 KiB"}
	}
	return nil
}

// String renders the header on one line for event logs, for example
// "RW 3:1024->2:1073741824 len=4096 buf_alloc=262144 fwd_cnt=0".
func (h Header) String() string {
	var b strings.Builder
	b.Grow(96)
	b.WriteString(h.Op.String())
	if h.Type != TypeStream {
		b.WriteByte(' ')
		b.WriteString(h.Type.String())
	}
	fmt.Fprintf(&b, " %d:%d->%d:%d", h.SrcCID, h.SrcPort, h.DstCID, h.DstPort)
	if h.Len != 0 || h.Op == OpRW {
		fmt.Fprintf(&b, " len=%d", h.Len)
	}
	if h.Flags != 0 {
		fmt.Fprintf(&b, " flags=%s", h.flagString())
	}
	fmt.Fprintf(&b, " buf_alloc=%d fwd_cnt=%d", h.BufAlloc, h.FwdCnt)
	return b.String()
}

func (h Header) flagString() string {
	if h.Op == OpShutdown {
		var parts []string
		if h.Flags&ShutdownRcv != 0 {
			parts = append(parts, "RCV")
		}
		if h.Flags&ShutdownSend != 0 {
			parts = append(parts, "SEND")
		}
		if rest := h.Flags &^ (ShutdownRcv | ShutdownSend); rest != 0 || len(parts) == 0 {
			parts = append(parts, "0x"+strconv.FormatUint(uint64(rest), 16))
		}
		return strings.Join(parts, "|")
	}
	return "0x" + strconv.FormatUint(uint64(h.Flags), 16)
}

// EventID is the le32 id of struct virtio_vsock_event.
type EventID uint32

// EventTransportReset tells the driver that every connection is gone, as a
// device does on snapshot or migration.
const EventTransportReset EventID = 0

// EventLen is sizeof(struct virtio_vsock_event). Linux ignores a used event
// buffer whose used length is anything else.
const EventLen = 4

func (id EventID) String() string {
	if id == EventTransportReset {
		return "TRANSPORT_RESET"
	}
	return "EVENT(" + strconv.FormatUint(uint64(id), 10) + ")"
}

// DecodeEvent reads struct virtio_vsock_event.
func DecodeEvent(b []byte) (EventID, error) {
	if len(b) < EventLen {
		return 0, &ShortError{What: "event", Need: EventLen, Got: len(b)}
	}
	return EventID(binary.LittleEndian.Uint32(b)), nil
}

// EncodeEvent writes struct virtio_vsock_event.
func EncodeEvent(b []byte, id EventID) error {
	if len(b) < EventLen {
		return &ShortError{What: "event", Need: EventLen, Got: len(b)}
	}
	binary.LittleEndian.PutUint32(b, uint32(id))
	return nil
}

// ConfigLen is the size of struct virtio_vsock_config: one le64 guest_cid.
const ConfigLen = 8

// DecodeConfig reads the device config space.
func DecodeConfig(b []byte) (guestCID uint64, err error) {
	if len(b) < ConfigLen {
		return 0, &ShortError{What: "config", Need: ConfigLen, Got: len(b)}
	}
	return binary.LittleEndian.Uint64(b), nil
}

// EncodeConfig writes the device config space.
func EncodeConfig(b []byte, guestCID uint64) error {
	if len(b) < ConfigLen {
		return &ShortError{What: "config", Need: ConfigLen, Got: len(b)}
	}
	binary.LittleEndian.PutUint64(b, guestCID)
	return nil
}
