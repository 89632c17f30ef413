package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/device"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/uds"
	"github.com/vsocklab/vsocklab/virtio"
)

// hybridPorts are the guest ports CheckHybridConnect can listen on: small,
// privileged, zero (the shortest valid line is "connect 0\n", exactly the
// ten bytes Firecracker reads at once), the top of the u32 range (2^32-1 is
// VMADDR_PORT_ANY and cannot be bound) and ordinary ones.
var hybridPorts = [8]uint32{52, 1024, 0, 4294967294, 1073741824, 5000, 7, 65535}

// Flag bits of CheckHybridConnect's second byte (bits 0-2 pick the port).
const (
	flagHybridPieces     = 1 << 3 // write in three pieces, the world running in between
	flagHybridCloseWrite = 1 << 4 // the host shuts its socket down for writing after the bytes
	flagHybridNoListener = 1 << 5 // no guest listener at all
)

// hybridMaxBytes bounds the host program's bytes.
const hybridMaxBytes = 4096

// CheckHybridConnect plays a host program that connects to the device's
// Unix socket and writes arbitrary bytes, with a guest listener on one
// port, and compares the device's answer with an independent reading of
// Firecracker's CONNECT rules (docs/sources.md#fc-connect-line).
//
// Layout of data: byte 0 picks a device profile among those that read the
// line the Firecracker way; byte 1 picks the listener port (bits 0-2, from
// hybridPorts) and holds flags (bit 3 write in three pieces with the world
// running in between, split at bytes 2 and 3; bit 4 shut the socket down
// for writing afterwards; bit 5 no listener); bytes 2-3 are the split
// points; the rest (up to 4 KiB) is what the host writes.
//
// Oracles: no panic, no device invariant or halt; the host reads "OK
// <port>\n" (a decimal host port in [2^30, 2^31)) exactly when the
// reference parser accepts the line formed by the bytes the device could
// read at its first readiness and a guest listener exists on the port it
// names; the guest then receives, as stream data, exactly the bytes after
// the line. Otherwise the host reads nothing and the stream is closed (or
// still open and unread, when no byte and no EOF ever reached the device).
// Afterwards a well-formed CONNECT on a new host connection is still
// answered with OK.
func CheckHybridConnect(data []byte) error {
	in := &input{b: data}
	profs := hybridProfiles()
	prof := profs[int(in.u8())%len(profs)]
	flags := in.u8()
	port := hybridPorts[flags&7]
	split1, split2 := int(in.u8()), int(in.u8())
	msg := in.bytes(hybridMaxBytes)

	// A kernel whose receive buffers the device takes: with any other the
	// guest and device trade the same buffers forever at one instant.
	kernel, ok := emu.KernelFor(prof)
	if !ok {
		return fmt.Errorf("no kernel profile posts receive buffers %s takes", prof.Name)
	}
	w, err := emu.New(emu.Config{Seed: 1, Device: prof.Name, Kernel: kernel, MemSize: 256 << 10, QueueSize: 16})
	if err != nil {
		return err
	}
	w.Eng.Log.Keep(engine.KindInvariant)
	k := w.Guest
	l := k.Socket()
	if flags&flagHybridNoListener == 0 {
		if err := k.Bind(l, virtio.CIDAny, port, true); err != nil {
			return fmt.Errorf("bind %d: %w", port, err)
		}
		if err := k.Listen(l, 16); err != nil {
			return err
		}
	}
	host, err := w.Host.Connect(w.Config().UDSPath)
	if err != nil {
		return err
	}

	// The device reads the line at the first readiness of the stream: with
	// everything the host wrote before the world ran.
	avail := msg
	if flags&flagHybridPieces != 0 {
		a := min(split1, len(msg))
		b := min(max(split2, a), len(msg))
		pieces := [][]byte{msg[:a], msg[a:b], msg[b:]}
		avail = nil
		for _, p := range pieces {
			if len(p) == 0 {
				continue
			}
			if avail == nil {
				avail = p
			}
			if _, err := host.Write(p); err != nil {
				break // the device already closed the stream: legal
			}
			if err := settle(w.Eng); err != nil {
				return err
			}
		}
	} else if len(msg) > 0 {
		if _, err := host.Write(msg); err != nil {
			return fmt.Errorf("host write: %w", err)
		}
	}
	eof := flags&flagHybridCloseWrite != 0
	if eof {
		if err := host.CloseWrite(); err != nil {
			return err
		}
	}
	if err := settle(w.Eng); err != nil {
		return err
	}

	refPort, lineLen, valid := refConnectLine(avail)
	wantOK := valid && refPort == port && flags&flagHybridNoListener == 0
	got, closed := readAll(host)
	switch {
	case wantOK:
		if err := checkAck(got); err != nil {
			return fmt.Errorf("line %q (%s): %w", avail[:lineLen], prof.Name, err)
		}
		child, err := k.Accept(l)
		if err != nil {
			return fmt.Errorf("line %q accepted by the device, but no connection in the guest: %v", avail[:lineLen], err)
		}
		var rest []byte
		buf := make([]byte, hybridMaxBytes)
		for {
			n, err := k.Recv(child, buf, false)
			rest = append(rest, buf[:n]...)
			if n == 0 || err != nil {
				break
			}
		}
		if want := msg[lineLen:]; !bytes.Equal(rest, want) {
			return fmt.Errorf("line %q: the guest received %q after it, want %q", avail[:lineLen], rest, want)
		}
	case len(got) > 0:
		return fmt.Errorf("the device wrote %q to the host for %q (%s; reference: valid %v, port %d; listener on %d: %v)",
			got, avail, prof.Name, valid, refPort, port, flags&flagHybridNoListener == 0)
	case !closed && (len(avail) > 0 || eof):
		return fmt.Errorf("the device left the stream open after %q (%s; reference: valid %v, port %d)", avail, prof.Name, valid, refPort)
	}
	if err := checkDevice(w); err != nil {
		return err
	}

	// The device keeps serving.
	if flags&flagHybridNoListener != 0 {
		if err := k.Bind(l, virtio.CIDAny, port, true); err != nil {
			return fmt.Errorf("bind %d: %w", port, err)
		}
		if err := k.Listen(l, 16); err != nil {
			return err
		}
	}
	again, err := w.Host.Connect(w.Config().UDSPath)
	if err != nil {
		return fmt.Errorf("second connect: %w", err)
	}
	if _, err := again.Write([]byte("CONNECT " + strconv.FormatUint(uint64(port), 10) + "\n")); err != nil {
		return err
	}
	if err := settle(w.Eng); err != nil {
		return err
	}
	if got, _ := readAll(again); checkAck(got) != nil {
		return fmt.Errorf("the device stopped serving: a good CONNECT after %q got %q", avail, got)
	}
	return checkDevice(w)
}

// hybridProfiles are the device profiles that read the CONNECT line the
// Firecracker way (vhost-device-vsock uses a BufReader instead).
func hybridProfiles() []device.Profile {
	var out []device.Profile
	for _, p := range device.Profiles() {
		if p.ConnectLine == device.LineFirecracker && p.Ack == device.AckLocalPort {
			out = append(out, p)
		}
	}
	return out
}

// readAll reads what a host connection holds and reports whether the
// stream is over (EOF or reset).
func readAll(c *uds.Conn) ([]byte, bool) {
	var out []byte
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		out = append(out, buf[:n]...)
		if err != nil {
			return out, isEOF(err)
		}
	}
}

// checkAck wants exactly "OK <port>\n" with a host port in [2^30, 2^31).
func checkAck(got []byte) error {
	s := string(got)
	if len(s) < 5 || s[:3] != "OK " || s[len(s)-1] != '\n' {
		return fmt.Errorf("want an OK line, got %q", s)
	}
	p, err := strconv.ParseUint(s[3:len(s)-1], 10, 32)
	if err != nil || p < 1<<30 || p >= 1<<31 || strconv.FormatUint(p, 10) != s[3:len(s)-1] {
		return fmt.Errorf("OK line %q does not name a host port in [2^30, 2^31)", s)
	}
	return nil
}

func checkDevice(w *emu.World) error {
	st := w.Dev.Stats()
	if st.Violations != 0 || st.Halts != 0 {
		return fmt.Errorf("device: %d violations, %d halts:\n%s", st.Violations, st.Halts, w.Eng.Log.String())
	}
	return nil
}

// refConnectLine is an independent reading of Firecracker's CONNECT rules
// (docs/sources.md#fc-connect-line, FC unix/muxer.rs read_local_stream_port): it is given the
// bytes the socket holds when the device first reads and returns the port
// and the length of the line, or valid false. Ten bytes are read at once,
// then one at a time until the last one read is '\n' or 32 were read; the
// line must be UTF-8; its whitespace-separated words (Unicode White_Space)
// are "connect" in any case, then a u32 in Rust's syntax (an optional '+',
// ASCII digits, leading zeros allowed); further words are ignored.
func refConnectLine(avail []byte) (port uint32, lineLen int, valid bool) {
	if len(avail) < 10 {
		return 0, 0, false
	}
	n := 10
	for avail[n-1] != '\n' && n < 32 {
		if n == len(avail) {
			return 0, 0, false // the next read would block or hit EOF
		}
		n++
	}
	line := avail[:n]
	if !utf8.Valid(line) {
		return 0, n, false
	}
	var words []string
	start := -1
	for i, r := range string(line) {
		if refWhiteSpace(r) {
			if start >= 0 {
				words = append(words, string(line[start:i]))
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		words = append(words, string(line[start:]))
	}
	if len(words) < 2 || !refIsConnect(words[0]) {
		return 0, n, false
	}
	digits := words[1]
	if len(digits) > 0 && digits[0] == '+' {
		digits = digits[1:]
	}
	if digits == "" {
		return 0, n, false
	}
	var v uint64
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, n, false
		}
		if v = v*10 + uint64(c-'0'); v > 1<<32-1 {
			return 0, n, false
		}
	}
	return uint32(v), n, true
}

// refIsConnect: Rust's to_lowercase() == "connect". Only ASCII letters
// lowercase to c, o, n, e and t, so an ASCII case fold is the same test.
func refIsConnect(w string) bool {
	if len(w) != 7 {
		return false
	}
	for i := 0; i < 7; i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != "connect"[i] {
			return false
		}
	}
	return true
}

// refWhiteSpace is Rust's char::is_whitespace: the Unicode White_Space
// property, listed.
func refWhiteSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0d, r == 0x20, r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// isEOF reports whether a host read says the stream is over.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
