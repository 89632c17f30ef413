package realkernel

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

type cpioEntry struct {
	name       string
	mode       uint32
	rmaj, rmin uint32
	data       []byte
}

// readNewc parses a newc archive, checking the alignment rules the kernel
// relies on (init/initramfs.c).
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		require.LessOrEqual(t, off+110, len(b), "header at %d runs past the end", off)
		require.Equal(t, "070701", string(b[off:off+6]), "magic at %d", off)
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			require.NoError(t, err)
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(namesize)-1])
		require.Equal(t, byte(0), b[off+110+int(namesize)-1], "name of %q is NUL-terminated", name)
		off += 110 + int(namesize)
		off = (off + 3) &^ 3
		data := b[off : off+int(size)]
		off += int(size)
		off = (off + 3) &^ 3
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "nothing after the trailer")
			return out
		}
		out = append(out, cpioEntry{name, mode, rmaj, rmin, data})
	}
}

func TestCPIONewc(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.CharDev("dev/console", 0o600, 5, 1)
	c.File("/lib/modules/vsock.ko.xz", 0o644, []byte("abcde"))
	c.File("init", 0o755, []byte("1234"))
	require.NoError(t, c.Close())
	got := readNewc(t, buf.Bytes())
	var names []string
	for _, e := range got {
		names = append(names, e.name)
	}
	require.Equal(t, []string{"dev", "dev/console", "lib", "lib/modules", "lib/modules/vsock.ko.xz", "init"}, names)
	require.Equal(t, uint32(modeChar|0o600), got[1].mode)
	require.Equal(t, [2]uint32{5, 1}, [2]uint32{got[1].rmaj, got[1].rmin})
	require.Equal(t, uint32(modeDir|0o755), got[2].mode)
	require.Equal(t, "abcde", string(got[4].data))
	require.Equal(t, "1234", string(got[5].data))
}

func TestCPIODuplicate(t *testing.T) {
	c := newCPIOWriter(&bytes.Buffer{})
	c.File("init", 0o755, nil)
	c.File("init", 0o755, nil)
	require.ErrorContains(t, c.Close(), `"init" added twice`)
}
