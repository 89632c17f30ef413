package vhostuser

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Every malformed, inconsistent or unsupported message gets an error that
// names the request, and the connection is closed; the back-end goes on.
func TestMalformedMessagesCloseTheConnection(t *testing.T) {
	le := binary.LittleEndian
	u32 := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = le.AppendUint32(b, v)
		}
		return b
	}
	memTable := func(regions ...[4]uint64) []byte {
		p := u32(uint32(len(regions)), 0)
		for _, r := range regions {
			for _, v := range r {
				p = le.AppendUint64(p, v)
			}
		}
		return p
	}
	type setup int
	const (
		fresh     setup = iota // nothing sent before
		handshook              // QEMU's realize sequence
		mapped                 // and features and the memory table
	)
	for _, tc := range []struct {
		name  string
		setup setup
		msg   []byte
		fds   func(f *frontend) []int
		want  string
	}{
		{"unknown request", fresh, frame(99, flagVersion, nil), nil, "vhost-user request 99: not supported"},
		{"defined but unsupported request", handshook, frame(25, flagVersion, make([]byte, 12)), nil, "vhost-user SET_CONFIG: not supported"},
		{"short header", fresh, []byte{1, 0, 0, 0, 1}, nil, "vhost-user header: stream ends 5 bytes into a 12-byte header"},
		{"truncated payload", fresh, frame(reqSetFeatures, flagVersion, u64(1))[:15], nil, "vhost-user SET_FEATURES: stream ends inside a 8-byte payload"},
		{"version 2", fresh, frame(reqGetFeatures, 2, nil), nil, "vhost-user GET_FEATURES: flags 0x2: version 2, want 1"},
		{"reply flag on a request", fresh, frame(reqGetFeatures, flagVersion|flagReply, nil), nil, "a reply where a request belongs"},
		{"oversized payload", fresh, frame(reqSetMemTable, flagVersion, make([]byte, maxPayload+1)), nil, "vhost-user SET_MEM_TABLE: payload of 4097 bytes, more than 4096"},
		{"short SET_FEATURES", fresh, frame(reqSetFeatures, flagVersion, u32(1)), nil, "vhost-user SET_FEATURES: payload of 4 bytes, want 8"},
		{"features never offered", fresh, frame(reqSetFeatures, flagVersion, u64(1<<29)), nil, "include 0x20000000, never offered"},
		{"protocol features never offered", fresh, frame(reqSetProtocolFeatures, flagVersion, u64(1<<15)), nil, "vhost-user SET_PROTOCOL_FEATURES: protocol features 0x8000 include 0x8000, never offered"},
		{"GET_FEATURES with an fd", fresh, frame(reqGetFeatures, flagVersion, nil), func(f *frontend) []int { return []int{f.call[0]} }, "vhost-user GET_FEATURES: 1 file descriptors, want 0"},
		{"ring out of range", handshook, frame(reqSetVringNum, flagVersion, u32(2, 128)), nil, "vhost-user SET_VRING_NUM: ring 2 out of range (the back-end has 2)"},
		{"ring size not a power of two", handshook, frame(reqSetVringNum, flagVersion, u32(0, 100)), nil, "vhost-user SET_VRING_NUM: ring 0: size 100 is not a power of two"},
		{"ring base beyond 16 bits", handshook, frame(reqSetVringBase, flagVersion, u32(1, 1<<16)), nil, "vhost-user SET_VRING_BASE: ring 1: base 65536 does not fit"},
		{"no regions", handshook, frame(reqSetMemTable, flagVersion, memTable()), nil, "vhost-user SET_MEM_TABLE: 0 regions, want 1 to 8"},
		{"region count against payload", handshook, frame(reqSetMemTable, flagVersion, memTable([4]uint64{0, 4096, user(0), 0})[:30]), nil, "vhost-user SET_MEM_TABLE: payload of 30 bytes for 1 regions, want 40"},
		{"missing region fd", handshook, frame(reqSetMemTable, flagVersion, memTablePayload()), func(f *frontend) []int { return []int{f.memfd} }, "vhost-user SET_MEM_TABLE: 2 regions with 1 file descriptors"},
		{"region beyond its file", handshook, frame(reqSetMemTable, flagVersion, memTable([4]uint64{0, ramSize, user(0), 4096})),
			func(f *frontend) []int { return []int{f.memfd} }, "region 0 (guest 0x0, 4194304 bytes, user 0x7f3a00000000, offset 0x1000): file of 4194304 bytes is shorter than offset+size 4198400"},
		{"region fd not a file", handshook, frame(reqSetMemTable, flagVersion, memTable([4]uint64{0, 4096, user(0), 0})),
			func(f *frontend) []int { return []int{f.call[0]} }, "file descriptor is not a regular file"},
		{"overlapping regions", handshook, frame(reqSetMemTable, flagVersion, memTable([4]uint64{0, 8192, user(0), 0}, [4]uint64{4096, 8192, user(0x10000), 0})),
			func(f *frontend) []int { return []int{f.memfd, f.memfd} }, "vhost-user SET_MEM_TABLE: virtio: region at 0x1000 overlaps region at 0x0"},
		{"ring address before the memory table", handshook, frame(reqSetVringAddr, flagVersion, vringAddr(0, user(rxRingGPA), user(rxRingGPA+0x1000), user(rxRingGPA+0x800))), nil, "vhost-user SET_VRING_ADDR: ring 0: no memory table yet"},
		{"ring address outside every region", mapped, frame(reqSetVringAddr, flagVersion, vringAddr(1, user(rxRingGPA), 0x1000, user(rxRingGPA+0x800))), nil, "vhost-user SET_VRING_ADDR: ring 1: used ring at user address 0x1000 is outside every region"},
		{"ring address in the hole", mapped, frame(reqSetVringAddr, flagVersion, vringAddr(0, user(hole+16), user(rxRingGPA), user(rxRingGPA))), nil, "descriptor table at user address 0x7f3a000a0010 is outside every region"},
		{"kick without fd", handshook, frame(reqSetVringKick, flagVersion, u64(0)), nil, "vhost-user SET_VRING_KICK: ring 0: 0 file descriptors, want 1"},
		{"kick polling", handshook, frame(reqSetVringKick, flagVersion, u64(vringNoFD)), nil, "polling without a kick eventfd is not supported"},
		{"call for ring 3", handshook, frame(reqSetVringCall, flagVersion, u64(3)), func(f *frontend) []int { return []int{f.call[0]} }, "vhost-user SET_VRING_CALL: ring 3 out of range"},
		{"call with stray bits", handshook, frame(reqSetVringCall, flagVersion, u64(1<<12)), nil, "value 0x1000 has bits beyond the ring index and NOFD"},
		{"config beyond guest_cid", handshook, frame(reqGetConfig, flagVersion, configRequest(4, 8)), nil, "vhost-user GET_CONFIG: offset 4, size 8: the vsock config space has 8 bytes"},
		{"config size against payload", handshook, frame(reqGetConfig, flagVersion, configRequest(0, 8)[:16]), nil, "vhost-user GET_CONFIG: config size 8 in a payload of 16 bytes"},
		{"config without CONFIG", fresh, frame(reqGetConfig, flagVersion, configRequest(0, 8)), nil, "VHOST_USER_PROTOCOL_F_CONFIG not negotiated"},
		{"enable without PROTOCOL_FEATURES", fresh, frame(reqSetVringEnable, flagVersion, u32(0, 1)), nil, "vhost-user SET_VRING_ENABLE: VHOST_USER_F_PROTOCOL_FEATURES not negotiated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "firecracker-1.14")
			switch tc.setup {
			case handshook:
				h.handshake()
			case mapped:
				h.handshake()
				h.send(reqSetFeatures, u64(FeatureVersion1|FeatureProtocolFeatures))
				h.send(reqSetMemTable, memTablePayload(), h.memfd, h.memfd)
			}
			var fds []int
			if tc.fds != nil {
				fds = tc.fds(h.frontend)
			}
			h.sendRaw(tc.msg, fds...)
			if len(tc.msg) < headerLen || len(tc.msg) < headerLen+int(le.Uint32(tc.msg[8:])) {
				require.NoError(t, h.c.CloseWrite()) // the stream ends inside the message
			}
			var err error
			select {
			case err = <-h.served:
				h.served <- nil // for the cleanup
			case <-time.After(wait):
				t.Fatal("the back-end did not close the connection")
			}
			var pe *ProtocolError
			require.True(t, errors.As(err, &pe), "want a *ProtocolError, got %v", err)
			require.Contains(t, err.Error(), tc.want)
			require.NoError(t, h.c.SetReadDeadline(time.Now().Add(wait)))
			_, rerr := h.c.Read(make([]byte, 64))
			requireClosed(t, rerr)
		})
	}
}

// requireClosed: the peer closed, with (ECONNRESET) or without unread
// bytes of ours (EOF).
func requireClosed(t *testing.T, err error) {
	if !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("the connection is not closed: %v", err)
	}
}

// A refused front-end leaves the back-end able to serve the next one, with
// no descriptor of the first left open.
func TestBackendServesAgainAfterAProtocolError(t *testing.T) {
	h := newHarness(t, "firecracker-1.14")
	before := openFDs(t)
	h.handshake()
	h.send(reqSetFeatures, u64(FeatureVersion1|FeatureProtocolFeatures))
	h.send(reqSetMemTable, memTablePayload(), h.memfd, h.memfd)
	h.sendRaw(frame(99, flagVersion, nil))
	err := <-h.served
	go func() { h.served <- h.b.Serve(t.Context()) }()
	require.ErrorContains(t, err, "request 99")
	require.Equal(t, before, openFDs(t), "every descriptor the front-end passed is closed")
	c := dialBackend(t, h)
	f2 := newFrontend(t, c)
	defer f2.close()
	f2.handshake()
	f2.start()
	h.frontend.c.Close()
	h.frontend = f2 // the cleanup closes this one
}

// openFDs lists the process's descriptors other than sockets (whose count
// depends on when the back-end accepts) with what they are: memfds and
// eventfds, the descriptors a front-end passes.
func openFDs(t testing.TB) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "socket:") {
			continue // the directory's own descriptor is gone already
		}
		out = append(out, e.Name()+" "+target)
	}
	return out
}
