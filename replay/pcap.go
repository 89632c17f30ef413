package replay

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/virtio"
)

// LinkTypeVsock is LINKTYPE_VSOCK: an af_vsockmon_hdr, the transport
// header, then the payload (include/uapi/linux/vsockmon.h).
const LinkTypeVsock = 271

// vsockmon ops and transports (enum af_vsockmon_op, af_vsockmon_transport).
const (
	monOpUnknown    = 0
	monOpConnect    = 1
	monOpDisconnect = 2
	monOpControl    = 3
	monOpPayload    = 4
	monTransVirtio  = 2
	monHdrLen       = 32
)

// monOp maps a virtio op to the vsockmon op the kernel's tap would record
// (virtio_transport_build_skb).
func monOp(op virtio.Op) uint16 {
	switch op {
	case virtio.OpRequest, virtio.OpResponse:
		return monOpConnect
	case virtio.OpRST, virtio.OpShutdown:
		return monOpDisconnect
	case virtio.OpCreditUpdate, virtio.OpCreditRequest:
		return monOpControl
	case virtio.OpRW:
		return monOpPayload
	}
	return monOpUnknown
}

// pcapEpoch is where virtual time zero lands in a capture: the same instant
// synctest's clock starts from, so captures are byte-for-byte repeatable.
var pcapEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// WritePcap writes packets as a classic pcap file with nanosecond
// timestamps and link type LINKTYPE_VSOCK. The format is small and fixed
// enough that a writer of our own is simpler than a dependency.
func WritePcap(w io.Writer, packets []Packet) error {
	pw, err := NewPcapWriter(w)
	if err != nil {
		return err
	}
	for _, p := range packets {
		if err := pw.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// PcapWriter streams packets into a capture, for runs that do not end
// (the vhost-user back-end).
type PcapWriter struct {
	w   io.Writer
	rec []byte
}

// NewPcapWriter writes the file header of a LINKTYPE_VSOCK capture.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b23c4d) // nanosecond-resolution magic
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 262144) // snaplen
	le.PutUint32(hdr[20:], LinkTypeVsock)
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return &PcapWriter{w: w, rec: make([]byte, 16+monHdrLen+virtio.HeaderLen)}, nil
}

// Write appends one packet record; its time is p.At after the capture
// epoch (2000-01-01 UTC, where synctest's clock starts).
func (pw *PcapWriter) Write(p Packet) error {
	le := binary.LittleEndian
	rec := pw.rec
	ts := pcapEpoch.Add(p.At)
	n := monHdrLen + virtio.HeaderLen + len(p.Payload)
	le.PutUint32(rec[0:], uint32(ts.Unix()))
	le.PutUint32(rec[4:], uint32(ts.Nanosecond()))
	le.PutUint32(rec[8:], uint32(n))
	le.PutUint32(rec[12:], uint32(n))
	m := rec[16:]
	le.PutUint64(m[0:], p.Hdr.SrcCID)
	le.PutUint64(m[8:], p.Hdr.DstCID)
	le.PutUint32(m[16:], p.Hdr.SrcPort)
	le.PutUint32(m[20:], p.Hdr.DstPort)
	le.PutUint16(m[24:], monOp(p.Hdr.Op))
	le.PutUint16(m[26:], monTransVirtio)
	le.PutUint16(m[28:], virtio.HeaderLen)
	m[30], m[31] = 0, 0
	h := p.Hdr
	_ = h.Encode(m[monHdrLen:])
	if _, err := pw.w.Write(rec); err != nil {
		return err
	}
	_, err := pw.w.Write(p.Payload)
	return err
}

// ReadPcap reads a LINKTYPE_VSOCK capture as WritePcap and PcapWriter
// write it (either byte order, micro- or nanosecond timestamps). A
// packet's Dir is GuestToHost when its source CID is not the host's (2).
// A truncated or foreign file is an error naming the record.
func ReadPcap(r io.Reader) ([]Packet, error) {
	hdr := make([]byte, 24)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("pcap: file header: %w", err)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	nano := false
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b23c4d:
		nano = true
	case 0xa1b2c3d4:
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: not a pcap file (magic %#x)", binary.LittleEndian.Uint32(hdr))
	}
	if lt := bo.Uint32(hdr[20:]) & 0x0fffffff; lt != LinkTypeVsock {
		return nil, fmt.Errorf("pcap: link type %d, want LINKTYPE_VSOCK (%d)", lt, LinkTypeVsock)
	}
	var out []Packet
	rec := make([]byte, 16)
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("pcap: record %d header: %w", i, err)
		}
		n := bo.Uint32(rec[8:])
		if n < monHdrLen+virtio.HeaderLen || n > 1<<20 {
			return nil, fmt.Errorf("pcap: record %d: captured length %d is not a vsockmon header, a virtio-vsock header and at most 1 MiB", i, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("pcap: record %d: %w", i, err)
		}
		frac := time.Duration(bo.Uint32(rec[4:]))
		if !nano {
			frac *= time.Microsecond
		}
		at := time.Unix(int64(bo.Uint32(rec[0:])), int64(frac)).Sub(pcapEpoch)
		h, err := virtio.DecodeHeader(data[monHdrLen:])
		if err != nil {
			return nil, fmt.Errorf("pcap: record %d: %w", i, err)
		}
		dir := device.GuestToHost
		if h.SrcCID == virtio.CIDHost {
			dir = device.HostToGuest
		}
		out = append(out, Packet{At: at, Dir: dir, Hdr: h, Payload: data[monHdrLen+virtio.HeaderLen:]})
	}
}
