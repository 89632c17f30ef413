package lab

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
)

func cfgSeed(seed uint64) emu.Config   { return emu.Config{Seed: seed} }
func cfgDevice(name string) emu.Config { return emu.Config{Device: name} }

// yamuxEcho runs a yamux echo server on guest port 6000, dials it from the
// host over the hybrid protocol, sends each message on its own stream, all
// at once, and checks that every stream echoes its message byte for byte.
// It returns the client session, still open.
func yamuxEcho(t *testing.T, l *Lab, msgs [][]byte) *yamux.Session {
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
	require.True(t, strings.HasPrefix(ok, "OK "), ok)
	sess, err := yamux.Client(c, cfg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i, msg := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := sess.Open()
			if err != nil {
				t.Error(err)
				return
			}
			go st.Write(msg)
			back := make([]byte, len(msg))
			if _, err := io.ReadFull(st, back); err != nil || !bytes.Equal(back, msg) {
				t.Errorf("stream %d: echo of %d bytes came back wrong (%v)", i, len(msg), err)
			}
			st.Close()
		}()
	}
	wg.Wait()
	return sess
}
