package realkernel

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an
// initramfs (Linux Documentation/driver-api/early-userspace/buffer-format.rst
// and init/initramfs.c, v6.12): a 110-byte ASCII header of "070701" and
// thirteen 8-digit hex fields, the NUL-terminated name padded to 4 bytes,
// the data padded to 4 bytes, and a "TRAILER!!!" entry at the end.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	seen map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriter(w), ino: 1, seen: map[string]bool{}}
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

// Dir adds a directory, and its parents when missing.
func (c *cpioWriter) Dir(name string, perm uint32) {
	name = strings.Trim(name, "/")
	if name == "" || c.seen[name] {
		return
	}
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		c.Dir(name[:i], 0o755)
	}
	c.entry(name, modeDir|perm, 0, 0, nil)
}

// File adds a regular file with its parents.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	name = strings.Trim(name, "/")
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		c.Dir(name[:i], 0o755)
	}
	c.entry(name, modeFile|perm, 0, 0, data)
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	name = strings.Trim(name, "/")
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		c.Dir(name[:i], 0o755)
	}
	c.entry(name, modeChar|perm, major, minor, nil)
}

// Close writes the trailer and flushes.
func (c *cpioWriter) Close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

func (c *cpioWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) {
	if c.err != nil {
		return
	}
	if c.seen[name] {
		c.err = fmt.Errorf("cpio: %q added twice", name)
		return
	}
	c.seen[name] = true
	nlink := uint32(1)
	if mode&modeDir != 0 {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino = 0
	}
	fields := []uint32{
		ino, mode, 0, 0, nlink, 0, uint32(len(data)),
		0, 0, // device of the file itself
		rmajor, rminor,
		uint32(len(name) + 1),
		0, // check, unused by newc
	}
	var hdr strings.Builder
	hdr.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&hdr, "%08x", f)
	}
	c.write([]byte(hdr.String()))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad(110 + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
