package hybrid

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConnect plays the device on a net.Pipe: it reads the CONNECT line,
// answers with reply and, when close is set, ends the stream.
func TestConnect(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		close       bool
		port        uint32
		err         string
	}{
		{"ok", "OK 1073741824\n", false, 1073741824, ""},
		{"ok with the stream's first bytes behind it", "OK 7\nhello", false, 7, ""},
		{"refused: closed without a word", "", true, 0, ErrRefused.Error()},
		{"cut short", "OK 12", true, 0, `acknowledgement "OK 12" cut short`},
		{"not OK", "NO 5\n", false, 0, `unexpected acknowledgement "NO 5"`},
		{"bad port", "OK 99999999999\n", false, 0, `acknowledgement "OK 99999999999": bad port`},
		{"too long", "OK 0000000000000000000000000000000000000001\n", false, 0, "acknowledgement longer than 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, dev := net.Pipe()
			defer dev.Close()
			lines := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(dev).ReadString('\n')
				lines <- line
				_, _ = io.WriteString(dev, tc.reply)
				if tc.close {
					dev.Close()
				}
			}()
			c, err := Connect(context.Background(), func(context.Context) (net.Conn, error) { return host, nil }, 5000)
			require.Equal(t, "CONNECT 5000\n", <-lines)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.port, c.HostPort)
			if tc.reply == "OK 7\nhello" {
				b := make([]byte, 5)
				_, err := io.ReadFull(c, b)
				require.NoError(t, err)
				require.Equal(t, "hello", string(b), "the handshake swallowed the stream's first bytes")
			}
			c.Close()
		})
	}
}

// A context cancelled while the device has not answered ends Connect with
// the context's cause.
func TestConnectCancelled(t *testing.T) {
	host, dev := net.Pipe()
	defer dev.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = bufio.NewReader(dev).ReadString('\n')
		cancel()
	}()
	_, err := Connect(ctx, func(context.Context) (net.Conn, error) { return host, nil }, 5000)
	require.ErrorIs(t, err, context.Canceled)
}
