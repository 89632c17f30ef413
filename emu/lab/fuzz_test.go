package lab

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"
)

// FuzzYamuxBubbles runs every input in its own bubble with a yamux session
// over the emulated vsock: the number of streams and the message sizes come
// from the input, every stream must echo its message byte for byte. Under
// go test -fuzz a worker process runs thousands of bubbles in a row, which
// is exactly what yamux's package-level timer pool breaks unless the lab
// empties it between bubbles (go-notes.md).
func FuzzYamuxBubbles(f *testing.F) {
	f.Add([]byte{1, 10})
	f.Add([]byte{4, 200, 3, 0, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		streams := int(data[0]%6) + 1
		sizes := make([]int, streams)
		for i := range sizes {
			b := 1
			if i+1 < len(data) {
				b = int(data[i+1])
			}
			sizes[i] = 1 + b*257 // up to about 64 KiB
		}
		Run(t, Config{}, func(l *Lab) {
			cfg := yamux.DefaultConfig()
			cfg.LogOutput = io.Discard
			guestAccept(t, l, 6000, func(c net.Conn) {
				sess, err := yamux.Server(c, cfg)
				if err != nil {
					return
				}
				for {
					st, err := sess.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(st, st); st.Close() }()
				}
			})
			c, ok := hybridDial(t, l, 6000)
			require.Equal(t, "OK 1073741824", ok)
			sess, err := yamux.Client(c, cfg)
			require.NoError(t, err)
			var wg sync.WaitGroup
			for i, n := range sizes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, err := sess.Open()
					if err != nil {
						t.Error(err)
						return
					}
					msg := bytes.Repeat([]byte{byte(i)}, n)
					go st.Write(msg)
					back := make([]byte, n)
					if _, err := io.ReadFull(st, back); err != nil || !bytes.Equal(back, msg) {
						t.Errorf("stream %d: echo of %d bytes came back wrong (%v)", i, n, err)
					}
					st.Close()
				}()
			}
			wg.Wait()
			sess.Close()
		})
	})
}
