package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// The wire, from QEMU docs/interop/vhost-user.rst (v7.2.0): a 12-byte
// header (le32 request, le32 flags, le32 size), then size bytes of payload;
// file descriptors travel as SCM_RIGHTS with the message.

const headerLen = 12

// Header flags.
const (
	flagVersionMask = 0x3
	flagVersion     = 0x1 // the protocol version, the only one defined
	flagReply       = 0x4 // a reply from the back-end
	flagNeedReply   = 0x8 // REPLY_ACK asked for
)

// maxPayload bounds a message's payload. The largest message this back-end
// accepts is GET_CONFIG with 256 bytes of config space (12 + 256); any
// larger size is refused before it is read.
const maxPayload = 4096

// maxFDs is the most descriptors one message carries: SET_MEM_TABLE with
// VHOST_MEMORY_BASELINE_NREGIONS regions.
const maxFDs = 8

// Front-end requests (vhost-user.rst, "Front-end message types").
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqResetOwner          = 4
	reqSetMemTable         = 5
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqSetVringErr         = 14
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqGetConfig           = 24
)

var requestNames = map[uint32]string{
	1: "GET_FEATURES", 2: "SET_FEATURES", 3: "SET_OWNER", 4: "RESET_OWNER",
	5: "SET_MEM_TABLE", 6: "SET_LOG_BASE", 7: "SET_LOG_FD", 8: "SET_VRING_NUM",
	9: "SET_VRING_ADDR", 10: "SET_VRING_BASE", 11: "GET_VRING_BASE",
	12: "SET_VRING_KICK", 13: "SET_VRING_CALL", 14: "SET_VRING_ERR",
	15: "GET_PROTOCOL_FEATURES", 16: "SET_PROTOCOL_FEATURES", 17: "GET_QUEUE_NUM",
	18: "SET_VRING_ENABLE", 19: "SEND_RARP", 20: "NET_SET_MTU",
	21: "SET_BACKEND_REQ_FD", 22: "IOTLB_MSG", 23: "SET_VRING_ENDIAN",
	24: "GET_CONFIG", 25: "SET_CONFIG", 26: "CREATE_CRYPTO_SESSION",
	27: "CLOSE_CRYPTO_SESSION", 28: "POSTCOPY_ADVISE", 29: "POSTCOPY_LISTEN",
	30: "POSTCOPY_END", 31: "GET_INFLIGHT_FD", 32: "SET_INFLIGHT_FD",
	33: "GPU_SET_SOCKET", 34: "RESET_DEVICE", 35: "VRING_KICK",
	36: "GET_MAX_MEM_SLOTS", 37: "ADD_MEM_REG", 38: "REM_MEM_REG",
	39: "SET_STATUS", 40: "GET_STATUS",
}

// RequestName is the name of a front-end request, or "request N" for a
// number the protocol does not define.
func RequestName(req uint32) string {
	if n, ok := requestNames[req]; ok {
		return n
	}
	return fmt.Sprintf("request %d", req)
}

// Virtio feature bits this back-end offers (GET_FEATURES).
const (
	// FeatureProtocolFeatures is VHOST_USER_F_PROTOCOL_FEATURES.
	FeatureProtocolFeatures uint64 = 1 << 30
	// FeatureVersion1 is VIRTIO_F_VERSION_1.
	FeatureVersion1 uint64 = 1 << 32
)

// Protocol feature bits (GET_PROTOCOL_FEATURES).
const (
	ProtocolMQ       uint64 = 1 << 0
	ProtocolReplyAck uint64 = 1 << 3
	ProtocolConfig   uint64 = 1 << 9
)

// vringNoFD is VHOST_USER_VRING_NOFD_MASK in the u64 of SET_VRING_KICK,
// CALL and ERR; the low byte is the ring index.
const (
	vringIndexMask = 0xff
	vringNoFD      = 1 << 8
)

// maxRegions is VHOST_MEMORY_BASELINE_NREGIONS, SET_MEM_TABLE's limit.
const maxRegions = 8

// maxConfigSize is VHOST_USER_MAX_CONFIG_SIZE.
const maxConfigSize = 256

// message is one front-end message with the descriptors that came with it.
// The receiver owns fds and must close each one it does not keep.
type message struct {
	req     uint32
	flags   uint32
	payload []byte
	fds     []int
}

func (m *message) name() string { return RequestName(m.req) }

func (m *message) closeFDs() {
	for _, fd := range m.fds {
		unix.Close(fd)
	}
	m.fds = nil
}

// takeFD hands the message's only descriptor to the caller.
func (m *message) takeFD() int {
	fd := m.fds[0]
	m.fds = m.fds[1:]
	return fd
}

// ProtocolError is a malformed, inconsistent or unsupported front-end
// message. The back-end closes the connection after one.
type ProtocolError struct {
	Request string // the request's name, "request N", or "header"
	Err     error
}

func (e *ProtocolError) Error() string { return "vhost-user " + e.Request + ": " + e.Err.Error() }

func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(req string, format string, args ...any) error {
	return &ProtocolError{Request: req, Err: fmt.Errorf(format, args...)}
}

// errDisconnected is the front-end gone between messages: end of stream,
// or a reset when it was killed.
var errDisconnected = errors.New("front-end disconnected")

// msgReader reads messages from a Unix stream socket, with their
// descriptors.
type msgReader struct {
	c   *net.UnixConn
	oob []byte
}

func newMsgReader(c *net.UnixConn) *msgReader {
	return &msgReader{c: c, oob: make([]byte, unix.CmsgSpace(4*maxFDs))}
}

// read returns the next message. At end of stream between messages it
// returns errDisconnected.
func (r *msgReader) read() (*message, error) {
	var hdr [headerLen]byte
	var fds []int
	got := 0
	for got < headerLen {
		n, oobn, flags, _, err := r.c.ReadMsgUnix(hdr[got:], r.oob)
		if oobn > 0 {
			more, perr := parseRights(r.oob[:oobn])
			fds = append(fds, more...)
			if perr != nil {
				closeAll(fds)
				return nil, protoErr("header", "%v", perr)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			closeAll(fds)
			return nil, protoErr("header", "more than %d file descriptors with one message", maxFDs)
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			closeAll(fds)
			if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
				if got == 0 {
					return nil, errDisconnected
				}
				return nil, protoErr("header", "stream ends %d bytes into a 12-byte header", got)
			}
			return nil, err
		}
		got += n
	}
	m := &message{
		req:   binary.LittleEndian.Uint32(hdr[0:]),
		flags: binary.LittleEndian.Uint32(hdr[4:]),
		fds:   fds,
	}
	size := binary.LittleEndian.Uint32(hdr[8:])
	if err := checkHeader(m, size); err != nil {
		m.closeFDs()
		return nil, err
	}
	m.payload = make([]byte, size)
	if _, err := io.ReadFull(r.c, m.payload); err != nil {
		m.closeFDs()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, protoErr(m.name(), "stream ends inside a %d-byte payload", size)
		}
		return nil, err
	}
	return m, nil
}

// checkHeader refuses what no request may have: another version, the
// reply bit, a payload larger than any this back-end takes.
func checkHeader(m *message, size uint32) error {
	if v := m.flags & flagVersionMask; v != flagVersion {
		return protoErr(m.name(), "flags %#x: version %d, want %d", m.flags, v, flagVersion)
	}
	if m.flags&flagReply != 0 {
		return protoErr(m.name(), "flags %#x: a reply where a request belongs", m.flags)
	}
	if size > maxPayload {
		return protoErr(m.name(), "payload of %d bytes, more than %d", size, maxPayload)
	}
	return nil
}

func parseRights(oob []byte) ([]int, error) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %v", err)
	}
	var fds []int
	for i := range cmsgs {
		got, err := unix.ParseUnixRights(&cmsgs[i])
		if err != nil {
			closeAll(fds)
			return nil, fmt.Errorf("control message: %v", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// reply encodes a back-end reply to m: the same request, version and the
// reply flag, then payload.
func reply(m *message, payload []byte) []byte {
	b := make([]byte, headerLen+len(payload))
	binary.LittleEndian.PutUint32(b[0:], m.req)
	binary.LittleEndian.PutUint32(b[4:], flagVersion|flagReply)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	copy(b[headerLen:], payload)
	return b
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// vringState is struct vhost_vring_state: le32 index, le32 num.
func vringState(index, num uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, index)
	return binary.LittleEndian.AppendUint32(b, num)
}
