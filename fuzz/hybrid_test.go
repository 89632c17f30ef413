package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func hybridSeed(profile, portIdx, flags byte, split1, split2 byte, msg string) []byte {
	return append([]byte{profile, portIdx | flags, split1, split2}, msg...)
}

func hybridSeeds() [][]byte {
	const fc14, ch51, fly = 2, 8, 6 // indexes into hybridProfiles()
	return [][]byte{
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT 52\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "connect 52\r\n"),
		hybridSeed(ch51, 0, 0, 0, 0, "  Connect\t52 junk\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT 52\nhello, guest"),
		hybridSeed(fc14, 0, flagHybridPieces, 11, 14, "CONNECT 52\nhello, guest"),
		hybridSeed(fly, 2, 0, 0, 0, "connect 0\nxyz"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT +0052\n"),
		hybridSeed(fc14, 3, 0, 0, 0, "CONNECT 4294967294\n"),
		hybridSeed(fc14, 3, 0, 0, 0, "CONNECT 4294967296\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT -52\n"),
		hybridSeed(fc14, 0, flagHybridCloseWrite, 0, 0, "CONNECT 52"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT\u00a052\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT\u200952\u3000\n"),
		hybridSeed(fc14, 0, flagHybridPieces, 4, 4, "CONNECT 52\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT                     52\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT 52 \xff\n"),
		hybridSeed(fc14, 0, 0, 0, 0, "CONNECT 52                    \xe2\x80\x83\n"),
		hybridSeed(fc14, 0, flagHybridNoListener, 0, 0, "CONNECT 52\n"),
		hybridSeed(fc14, 5, 0, 0, 0, "CONNECT 52\n"),
		hybridSeed(fc14, 0, flagHybridCloseWrite, 0, 0, ""),
		hybridSeed(fc14, 0, 0, 0, 0, "connect\n52\nmore"),
		hybridSeed(fc14, 0, 0, 0, 0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	}
}

func FuzzHybridConnect(f *testing.F) {
	for _, s := range hybridSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		require.NoError(t, CheckHybridConnect(data))
	})
}

func TestRefConnectLine(t *testing.T) {
	for _, tc := range []struct {
		in    string
		port  uint32
		n     int
		valid bool
	}{
		{"CONNECT 52\n", 52, 11, true},
		{"connect 52\r\n", 52, 12, true},
		{"  Connect\t52 junk\n", 52, 18, true},
		{"connect 0\n", 0, 10, true},
		{"connect 0\nxyz", 0, 10, true},
		{"CONNECT 52\nrest", 52, 11, true},
		{"CONNECT +0052\n", 52, 14, true},
		{"CONNECT 4294967295\n", 4294967295, 19, true},
		{"CONNECT 4294967296\n", 0, 19, false},
		{"CONNECT -52\n", 0, 12, false},
		{"CONNECT +\n", 0, 10, false},
		{"CONNECT 52", 0, 0, false},                          // needs an 11th byte that never comes
		{"CONNECT 5", 0, 0, false},                           // fewer than ten bytes
		{"CONNECT\u00a052\n", 52, 12, true},                  // NBSP is White_Space
		{"CONNECT\u200b52\n", 0, 13, false},                  // ZERO WIDTH SPACE is not
		{"connect\n52\nmore", 52, 11, true},                  // ten bytes end in "2": one more
		{"CONNECT                        52\n", 5, 32, true}, // cut at 32 bytes: port 5
		{"CONNECT 52                    xy", 52, 32, true},   // no newline in 32 bytes
		{"CONNECT 52 \xff\n", 0, 13, false},
	} {
		port, n, valid := refConnectLine([]byte(tc.in))
		require.Equal(t, tc.valid, valid, "%q", tc.in)
		require.Equal(t, tc.n, n, "%q", tc.in)
		require.Equal(t, tc.port, port, "%q", tc.in)
	}
}

func TestHybridSeeds(t *testing.T) {
	require.Equal(t, "firecracker-1.14", hybridProfiles()[2].Name)
	require.Equal(t, "cloud-hypervisor-51", hybridProfiles()[8].Name)
	require.Equal(t, "firecracker-fly", hybridProfiles()[6].Name)
	for _, s := range hybridSeeds() {
		require.NoError(t, CheckHybridConnect(s), "%q", s)
	}
}
