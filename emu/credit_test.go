package emu_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu"
	"github.com/vsocklab/vsocklab/emu/engine"
	"github.com/vsocklab/vsocklab/emu/guest"
)

// TestCreditRecords: a guest send reserves tx_cnt, the device's credit
// update brings peer_fwd_cnt level with it; each change is one credit
// record in the log and one call of the credit tap, with the same values.
func TestCreditRecords(t *testing.T) {
	w := newWorld(t, emu.Config{Device: "firecracker-1.14"})
	type sample struct {
		at time.Duration
		c  guest.Credit
	}
	var taps []sample
	w.AddCreditTap(func(at time.Duration, c guest.Credit) { taps = append(taps, sample{at, c}) })
	s, hc := guestInitiated(t, w, 9000)
	require.NotEmpty(t, taps, "the connect sets the credit first")
	first := taps[0].c
	require.Zero(t, first.TxCnt)
	require.Equal(t, w.Config().GuestCID, first.Local.CID, "a record names the guest's CID, not the auto-bind's CID_ANY")
	require.NotZero(t, first.PeerBufAlloc)

	taps = nil
	n, err := w.Guest.Send(s, make([]byte, 4096), false)
	require.NoError(t, err)
	require.Equal(t, 4096, n)
	require.Len(t, taps, 1)
	require.Equal(t, uint32(4096), taps[0].c.TxCnt)
	require.Equal(t, uint32(4096), taps[0].c.InFlight())

	// The rest of the peer's 64 KiB buffer; the host reads it all, and the
	// device's credit update brings peer_fwd_cnt level with tx_cnt.
	for sent := n; sent < 64*1024; sent += n {
		n, err = w.Guest.Send(s, make([]byte, 64*1024-sent), false)
		require.NoError(t, err)
		w.Settle()
	}
	buf := make([]byte, 64*1024)
	for got := 0; got < 64*1024; {
		w.Settle()
		m, err := hc.Read(buf)
		require.NoError(t, err)
		got += m
	}
	w.RunFor(time.Second)
	last := taps[len(taps)-1].c
	require.Equal(t, uint32(64*1024), last.TxCnt)
	require.Equal(t, uint32(64*1024), last.PeerFwdCnt, "%s", last)
	require.Zero(t, last.InFlight())

	var credit []string
	for _, r := range w.Eng.Log.Records() {
		if r.Kind == engine.KindCredit {
			credit = append(credit, r.Text)
		}
	}
	require.NotEmpty(t, credit)
	require.True(t, strings.HasPrefix(credit[len(credit)-1], "credit 3:"), credit[len(credit)-1])
	require.Equal(t, last.String(), credit[len(credit)-1], "the log's last credit record and the tap's last sample agree")
}
