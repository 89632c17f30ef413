package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOrderByTimeThenSequence(t *testing.T) {
	e := New(1)
	var got []string
	add := func(at time.Duration, name string) *Timer {
		return e.At(at, func() { got = append(got, name) })
	}
	add(2*time.Second, "b1")
	add(time.Second, "a")
	add(2*time.Second, "b2")
	stopped := add(2*time.Second, "never")
	add(3*time.Second, "c")
	require.True(t, e.Stop(stopped))
	require.False(t, e.Stop(stopped))
	require.False(t, stopped.Pending())
	e.At(2*time.Second, func() {
		got = append(got, "b3")
		e.At(0, func() { got = append(got, "now, scheduled in the past") })
	})
	e.RunUntil(2 * time.Second)
	require.Equal(t, []string{"a", "b1", "b2", "b3", "now, scheduled in the past"}, got)
	require.Equal(t, 2*time.Second, e.Now())
	next, ok := e.Next()
	require.True(t, ok)
	require.Equal(t, 3*time.Second, next)
	require.True(t, e.Step())
	require.False(t, e.Step())
	e.RunUntil(10 * time.Second)
	require.Equal(t, 10*time.Second, e.Now())
}

func TestSeededRandomness(t *testing.T) {
	draw := func(seed uint64) []uint32 {
		e := New(seed)
		out := make([]uint32, 8)
		for i := range out {
			out[i] = e.Rand().Uint32()
		}
		return out
	}
	require.Equal(t, draw(42), draw(42))
	require.NotEqual(t, draw(42), draw(43))
}

func TestLogKeepsChosenKindsAndHashesItsText(t *testing.T) {
	e := New(0)
	e.Logf(KindWorld, "world", "boot %d", 1)
	e.RunUntil(1500 * time.Millisecond)
	e.Log.Keep(KindAll &^ KindPacket)
	e.Logf(KindPacket, "device", "dropped: packets are not kept")
	e.Logf(KindConn, "guest", "connected")
	require.Equal(t, "   0.000000000 world   boot 1\n   1.500000000 guest   connected\n", e.Log.String())
	require.Equal(t, 2, e.Log.Len())
	// The hash is of exactly the rendered text.
	other := New(9)
	other.Log.Add(0, KindWorld, "world", "boot 1")
	other.Log.Add(1500*time.Millisecond, KindConn, "guest", "connected")
	require.Equal(t, e.Log.Hash(), other.Log.Hash())
	sum := sha256.Sum256([]byte(e.Log.String()))
	require.Equal(t, hex.EncodeToString(sum[:]), e.Log.Hash())
	require.Equal(t, "  -0.000000001", FormatTime(-1))
}

func TestLogLimitKeepsTheLastRecords(t *testing.T) {
	full, ring := NewLog(), NewLog()
	ring.Limit(3)
	for i := range 10 {
		for _, l := range []*Log{full, ring} {
			l.Add(time.Duration(i), KindWorld, "world", fmt.Sprint("step ", i))
		}
		require.LessOrEqual(t, ring.Len(), 3)
	}
	require.Equal(t, full.Records()[7:], ring.Records(), "the newest three, oldest first")
	require.Equal(t, uint64(7), ring.Dropped())
	require.Equal(t, full.Hash(), ring.Hash(), "the hash covers the dropped records too")
	require.Equal(t, "   0.000000007 world   step 7\n   0.000000008 world   step 8\n   0.000000009 world   step 9\n", ring.String())

	// Tightening a limit drops the oldest; lifting it keeps what is left.
	ring.Limit(2)
	require.Equal(t, full.Records()[8:], ring.Records())
	require.Equal(t, uint64(8), ring.Dropped())
	ring.Limit(0)
	ring.Add(10, KindWorld, "world", "step 10")
	require.Len(t, ring.Records(), 3)
	require.Equal(t, "step 10", ring.Records()[2].Text)
}

func TestLogRetainAndForget(t *testing.T) {
	full, some := NewLog(), NewLog()
	some.Retain(KindWorld | KindFault)
	for i, k := range []Kind{KindWorld, KindPacket, KindFault, KindPacket, KindWorld} {
		full.Add(time.Duration(i), k, "c", fmt.Sprint(i))
		some.Add(time.Duration(i), k, "c", fmt.Sprint(i))
	}
	require.Equal(t, full.Hash(), some.Hash(), "records not stored are still hashed")
	require.Equal(t, []Record{full.Records()[0], full.Records()[2], full.Records()[4]}, some.Records())
	some.Forget(2)
	require.Equal(t, full.Records()[4:], some.Records())
	require.Equal(t, uint64(2), some.Dropped())
	some.Forget(5)
	require.Empty(t, some.Records())
}

func TestPostOrdersWithAtAndRecyclesTimers(t *testing.T) {
	e := New(1)
	var got []string
	e.At(time.Second, func() { got = append(got, "at") })
	e.Post(time.Second, func() { got = append(got, "post") })
	e.Post(0, func() { got = append(got, "post-now") })
	e.RunUntil(time.Second)
	require.Equal(t, []string{"post-now", "at", "post"}, got)
	require.Len(t, e.free, 2, "fired Post timers are kept for reuse")
	e.Post(2*time.Second, func() { got = append(got, "reused") })
	require.Len(t, e.free, 1)
	e.RunUntil(2 * time.Second)
	require.Equal(t, "reused", got[len(got)-1])
}

// TestLineRenderingAsFmtDidIt: the hand-made rendering of every line's
// time and component is byte for byte the fmt rendering it replaced, on
// which every recorded log hash rests.
func TestLineRenderingAsFmtDidIt(t *testing.T) {
	old := func(r Record) string {
		d, sign := r.At, ""
		if d < 0 {
			sign, d = "-", -d
		}
		return fmt.Sprintf("%14s", fmt.Sprintf("%s%d.%09d", sign, d/time.Second, d%time.Second)) + " " + fmt.Sprintf("%-7s", r.Comp) + " " + r.Text
	}
	for _, at := range []time.Duration{0, 1, -1, 999_999_999, time.Second, 1500 * time.Millisecond, -90 * time.Second,
		24 * time.Hour, 99999 * time.Hour, math.MaxInt64, math.MinInt64, math.MinInt64 + 1} {
		for _, comp := range []string{"", "guest", "device", "world", "hostd-x", "longer than seven", "gäst"} {
			r := Record{At: at, Comp: comp, Text: "text"}
			require.Equal(t, old(r), r.String(), "at %d, comp %q", int64(at), comp)
		}
	}
}

// TestUnhashedLogSkipsWhatNobodyReads: without the hash, only the kinds
// the log retains, or a live hook, are enabled; records of the others are
// not formatted, and Hash is empty.
func TestUnhashedLogSkipsWhatNobodyReads(t *testing.T) {
	l := NewLog()
	l.HashLines(false)
	l.Retain(KindFault)
	require.False(t, l.Enabled(KindPacket))
	require.True(t, l.Enabled(KindFault))
	l.Add(time.Second, KindPacket, "device", "not read")
	l.Add(time.Second, KindFault, "device", "read")
	require.Equal(t, "   1.000000000 device  read\n", l.String())
	require.Empty(t, l.Hash())

	var hooked []string
	l.OnRecord(func(r Record) { hooked = append(hooked, r.Text) })
	require.True(t, l.Enabled(KindPacket))
	l.Add(2*time.Second, KindPacket, "device", "hooked")
	require.Equal(t, []string{"hooked"}, hooked)

	l.HashLines(true)
	l.Add(3*time.Second, KindFault, "device", "hashed")
	sum := sha256.Sum256([]byte("   3.000000000 device  hashed\n"))
	require.Equal(t, hex.EncodeToString(sum[:]), l.Hash())
}
