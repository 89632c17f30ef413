package replay

import (
	"encoding/binary"
	"io"
	"time"

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
