package lab

import (
	"bytes"
	"testing"
)

// FuzzYamuxBubbles runs every input in its own bubble with a yamux session
// over the emulated vsock: the number of streams and the message sizes come
// from the input, every stream must echo its message byte for byte. Under
// go test -fuzz a worker process runs thousands of bubbles in a row, which
// is exactly what yamux's package-level timer pool breaks unless the lab
// gives each bubble a pool of its own (docs/sources.md#go-yamux-timer-pool).
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
			msgs := make([][]byte, len(sizes))
			for i, n := range sizes {
				msgs[i] = bytes.Repeat([]byte{byte(i)}, n)
			}
			sess := yamuxEcho(t, l, msgs)
			sess.Close()
		})
	})
}
