package device

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/vsocklab/vsocklab/emu/uds"
)

// connectLineErr names why a CONNECT line was refused, in the source's
// error spelling.
type connectLineErr struct{ name string }

func (e *connectLineErr) Error() string { return e.name }

var errInvalidPortRequest = &connectLineErr{"InvalidPortRequest"}

func unixReadErr(err error) error {
	switch {
	case err == io.EOF:
		return &connectLineErr{"UnixRead(UnexpectedEof)"}
	case errors.Is(err, syscall.EAGAIN):
		return &connectLineErr{"UnixRead(WouldBlock)"}
	}
	return &connectLineErr{"UnixRead(" + err.Error() + ")"}
}

// connectMinRead is b"connect 0\n".len(): what Firecracker reads with
// read_exact before going byte by byte.
const connectMinRead = 10

// connectMaxLine is the size of Firecracker's line buffer.
const connectMaxLine = 32

// readConnectLine reads and parses the host's "CONNECT <port>\n" line, the
// way the profile's device does. It returns the port and the line as read.
func readConnectLine(r ConnectLineReader, s *uds.Conn) (uint32, string, error) {
	var line []byte
	var err error
	if r == LineBufReader {
		line, err = readLineBufReader(s)
	} else {
		line, err = readLineFirecracker(s)
	}
	if err != nil {
		return 0, string(line), err
	}
	port, err := parseConnectLine(line)
	return port, string(line), err
}

// readLineFirecracker is FC@v1.14.0 unix/muxer.rs read_local_stream_port:
// read_exact of 10 bytes on the non-blocking stream, then one byte at a time
// until '\n' or 32 bytes (docs/sources.md#fc-connect-line). Bytes after '\n' stay in the stream.
func readLineFirecracker(s *uds.Conn) ([]byte, error) {
	var buf [connectMaxLine]byte
	if err := readExact(s, buf[:connectMinRead]); err != nil {
		return nil, err
	}
	n := connectMinRead
	for buf[n-1] != '\n' && n < len(buf) {
		if err := readExact(s, buf[n:n+1]); err != nil {
			return buf[:n], err
		}
		n++
	}
	return append([]byte(nil), buf[:n]...), nil
}

// readExact is Rust's Read::read_exact on a non-blocking socket: a read
// that would block or hits EOF before p is full is an error.
func readExact(s *uds.Conn, p []byte) error {
	for len(p) > 0 {
		k, err := s.Read(p)
		if err != nil {
			return unixReadErr(err)
		}
		if k == 0 {
			return unixReadErr(io.EOF)
		}
		p = p[k:]
	}
	return nil
}

// bufReaderSize is std::io::BufReader's default capacity.
const bufReaderSize = 8 * 1024

// readLineBufReader is VD@d7ec5e4 vhu_vsock_thread.rs
// read_local_stream_port: BufReader::new(stream).read_until(b'\n'). The
// BufReader pulls whatever the socket holds, 8 KiB at a time, and is dropped
// afterwards, so bytes after the '\n' are lost. EOF ends the line; a read
// that would block before '\n' is an error.
func readLineBufReader(s *uds.Conn) ([]byte, error) {
	var line []byte
	chunk := make([]byte, bufReaderSize)
	for {
		k, err := s.Read(chunk)
		if err == io.EOF {
			return line, nil
		}
		if err != nil {
			return line, unixReadErr(err)
		}
		if i := bytes.IndexByte(chunk[:k], '\n'); i >= 0 {
			return append(line, chunk[:i+1]...), nil
		}
		line = append(line, chunk[:k]...)
	}
}

// parseConnectLine splits on Unicode whitespace (Rust split_whitespace,
// the White_Space property, as Go's unicode.IsSpace), wants "connect" in
// any case first and a Rust-style u32 second; further words are ignored.
func parseConnectLine(line []byte) (uint32, error) {
	if !utf8.Valid(line) {
		return 0, errInvalidPortRequest
	}
	words := strings.FieldsFunc(string(line), unicode.IsSpace)
	if len(words) < 2 || strings.ToLower(words[0]) != "connect" {
		return 0, errInvalidPortRequest
	}
	port, ok := parseRustU32(words[1])
	if !ok {
		return 0, errInvalidPortRequest
	}
	return port, nil
}

// parseRustU32 is <u32 as FromStr>::from_str: an optional '+', then at
// least one ASCII digit, leading zeros allowed, at most 4294967295.
func parseRustU32(s string) (uint32, bool) {
	if strings.HasPrefix(s, "+") {
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > 0xffffffff {
			return 0, false
		}
	}
	return uint32(v), true
}
