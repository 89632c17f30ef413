package vhostuser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vsocklab/vsocklab/emu"
)

// FuzzMessages feeds a front-end's message stream to the back-end. The
// input is read as frames (a 12-byte header, then as much of the payload
// as the input still holds); descriptors are attached where the request
// expects them (a memfd per SET_MEM_TABLE region, an eventfd for
// SET_VRING_KICK, CALL and ERR without NOFD), so that inputs reach the
// memory table, the rings and a running device. The oracle: no panic, no
// hang, the connection ends cleanly or with a *ProtocolError, and every
// descriptor passed in is closed again.
func FuzzMessages(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(s)
	}
	fz := newFuzzRig(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := openFDs(t)
		err := fz.serve(t, data)
		var pe *ProtocolError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("the back-end failed with %v, not a *ProtocolError", err)
		}
		if after := openFDs(t); !slices.Equal(before, after) {
			t.Fatalf("descriptors left open:\nbefore %v\nafter  %v", before, after)
		}
	})
}

const (
	fuzzRAM      = 1 << 20
	fuzzUser     = 0x7f0000000000
	fuzzRingSize = 8
)

type fuzzRig struct {
	b     *Backend
	memfd int
	evfd  int
}

var (
	fuzzOnce sync.Once
	fuzzB    *Backend
)

func newFuzzRig(f testing.TB) *fuzzRig {
	fuzzOnce.Do(func() {
		var err error
		fuzzB, err = Listen(Config{Device: "firecracker-1.14"})
		require.NoError(f, err)
	})
	memfd, err := unix.MemfdCreate("fuzz-ram", unix.MFD_CLOEXEC)
	require.NoError(f, err)
	require.NoError(f, unix.Ftruncate(memfd, fuzzRAM))
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(f, err)
	f.Cleanup(func() { unix.Close(memfd); unix.Close(evfd) })
	return &fuzzRig{b: fuzzB, memfd: memfd, evfd: evfd}
}

// serve runs one connection over a socket pair and returns ServeConn's
// result.
func (fz *fuzzRig) serve(t *testing.T, data []byte) error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	server, client := unixConn(t, pair[0]), unixConn(t, pair[1])
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- fz.b.ServeConn(context.Background(), server) }()
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, client); close(drained) }()
	for _, fr := range splitFrames(data) {
		var oob []byte
		if fds := fz.fdsFor(fr); len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := client.WriteMsgUnix(fr, oob, nil); err != nil {
			break // the back-end closed the connection
		}
	}
	_ = client.CloseWrite()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the back-end hangs on this stream")
	}
	<-drained
	return err
}

func unixConn(t *testing.T, fd int) *net.UnixConn {
	f := os.NewFile(uintptr(fd), "pair")
	c, err := net.FileConn(f)
	f.Close()
	require.NoError(t, err)
	return c.(*net.UnixConn)
}

// splitFrames cuts data into messages: each header's size says how much
// payload follows, and the last may be cut short.
func splitFrames(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := len(data)
		if n >= headerLen {
			n = min(n, headerLen+int(min(binary.LittleEndian.Uint32(data[8:]), maxPayload+1)))
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// fdsFor is the descriptors a front-end would send with frame fr. The
// kernel duplicates them into the receiver; the sender keeps its own.
func (fz *fuzzRig) fdsFor(fr []byte) []int {
	if len(fr) < headerLen+8 {
		return nil
	}
	le := binary.LittleEndian
	p := fr[headerLen:]
	switch le.Uint32(fr) {
	case reqSetMemTable:
		n := min(le.Uint32(p), maxFDs)
		fds := make([]int, n)
		for i := range fds {
			fds[i] = fz.memfd
		}
		return fds
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		if le.Uint64(p)&vringNoFD == 0 {
			return []int{fz.evfd}
		}
	}
	return nil
}

// seedStreams are QEMU 7.2's sequences over the fuzz rig's memory: the
// realize handshake, the driver's start, a stop and restart, power-off.
func seedStreams() [][]byte {
	le := binary.LittleEndian
	msg := func(req uint32, payload []byte) []byte { return frame(req, flagVersion, payload) }
	state := func(q, n uint32) []byte { return vringState(q, n) }
	mem := le.AppendUint32(nil, 1)
	mem = le.AppendUint32(mem, 0)
	for _, v := range []uint64{0, fuzzRAM, fuzzUser, 0} {
		mem = le.AppendUint64(mem, v)
	}
	handshake := slices.Concat(
		msg(reqGetFeatures, nil), msg(reqGetProtocolFeatures, nil),
		msg(reqSetProtocolFeatures, u64(offeredProtocol)), msg(reqGetQueueNum, nil),
		msg(reqSetOwner, nil), msg(reqGetFeatures, nil),
		msg(reqSetVringCall, u64(0)), msg(reqSetVringCall, u64(1)),
		msg(reqSetVringErr, u64(0)), msg(reqSetVringErr, u64(1)),
		msg(reqGetConfig, configRequest(0, 8)),
	)
	start := slices.Concat(msg(reqSetFeatures, u64(FeatureVersion1|FeatureProtocolFeatures)), msg(reqSetMemTable, mem))
	for q := range uint32(numRings) {
		base := uint64(0x1000 + 0x2000*q)
		start = slices.Concat(start,
			msg(reqSetVringNum, state(q, fuzzRingSize)), msg(reqSetVringBase, state(q, 0)),
			msg(reqSetVringAddr, vringAddr(q, fuzzUser+base, fuzzUser+base+0x200, fuzzUser+base+0x100)),
			msg(reqSetVringKick, u64(uint64(q))), msg(reqSetVringCall, u64(uint64(q))))
	}
	start = slices.Concat(start, msg(reqSetVringEnable, state(0, 1)), msg(reqSetVringEnable, state(1, 1)))
	stop := slices.Concat(
		msg(reqSetVringEnable, state(0, 0)), msg(reqSetVringEnable, state(1, 0)),
		msg(reqGetVringBase, state(0, 0)), msg(reqGetVringBase, state(1, 0)))
	acked := frame(reqSetVringNum, flagVersion|flagNeedReply, state(0, 4))
	return [][]byte{
		handshake,
		slices.Concat(handshake, start),
		slices.Concat(handshake, start, stop),
		slices.Concat(handshake, start, stop, start, stop),
		slices.Concat(handshake, acked, msg(reqResetOwner, nil)),
	}
}

// The seeds are streams QEMU could send: each is served without an error,
// and the ones that start the rings start the device.
func TestFuzzSeedsAreValid(t *testing.T) {
	fz := newFuzzRig(t)
	for i, s := range seedStreams() {
		require.NoError(t, fz.serve(t, s), "seed %d", i)
	}
	restarts := fz.b.Lab().Do(func(w *emu.World) error {
		if w.Cycles() == 0 {
			return errors.New("no seed restarted the rings")
		}
		return nil
	})
	require.NoError(t, restarts)
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzMessages from
// seedStreams (VSOCKLAB_WRITE_CORPUS=1), for drivers that do not run the
// f.Add seeds.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VSOCKLAB_WRITE_CORPUS") == "" {
		t.Skip("set VSOCKLAB_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzMessages")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzMessages")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, s := range seedStreams() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("qemu-7.2-%d", i)), []byte(body), 0o644))
	}
}
