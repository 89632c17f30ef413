package replay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/engine"
)

func rec(at time.Duration, text string) engine.Record {
	return engine.Record{At: at, Kind: engine.KindPacket, Comp: "device", Text: text}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs []string
		want []string // each item: its lines' texts joined by "+", "×N" for N repetitions
	}{
		{"nothing repeats", []string{"tx A", "tx B", "tx C"}, []string{"A", "B", "C"}},
		{"a pair three times, then something else", []string{"tx A 1", "rx B 1", "tx A 2", "rx B 2", "tx A 3", "rx B 3", "tx C"},
			[]string{"A 1+B 1 ×3", "C"}},
		{"numbers do not make an exchange different", []string{"tx RST 3:10000->2:1073741824", "tx RST 3:10000->2:1073741825"},
			[]string{"RST 3:10000->2:1073741824 ×2"}},
		{"the block covering most lines wins", []string{"tx A", "tx A", "tx A", "tx A", "rx B"},
			[]string{"A ×4", "B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var recs []engine.Record
			for i, r := range tc.recs {
				recs = append(recs, rec(time.Duration(i)*time.Second, r))
			}
			var got []string
			for _, it := range fold(diagramLines(recs)) {
				var texts []string
				for _, l := range it.lines {
					texts = append(texts, strings.SplitN(l.text, " ", 3)[2]) // "G->>D: <time> A": the packet without arrow and time
				}
				s := strings.Join(texts, "+")
				if it.reps >= 2 {
					s += fmt.Sprintf(" ×%d", it.reps)
				}
				got = append(got, s)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// TestSampleSpansTheRun: a long run of distinct exchanges over an hour is
// cut to the limit, reaches its last minutes, and accounts for every event
// in its gap notes.
func TestSampleSpansTheRun(t *testing.T) {
	var recs []engine.Record
	for i := 0; i < 5000; i++ {
		recs = append(recs, rec(time.Duration(i)*time.Second*3600/5000, fmt.Sprintf("tx %s", strings.Repeat("x", i%97+1))))
	}
	items := sample(fold(diagramLines(recs)), 60)
	drawn, skipped := 0, 0
	for _, it := range items {
		drawn += it.weight()
		if strings.Contains(it.lines[0].text, "events not drawn") {
			var n int
			_, err := fmt.Sscanf(strings.TrimPrefix(it.lines[0].text, "Note over G,H: "), "%d events", &n)
			require.NoError(t, err)
			skipped += n
		}
	}
	require.LessOrEqual(t, drawn, 60)
	gaps := 0
	for _, it := range items {
		if strings.Contains(it.lines[0].text, "events not drawn") {
			gaps++
		}
	}
	require.Equal(t, 5000, drawn-gaps+skipped, "every event is drawn or counted in a gap")
	last := items[len(items)-1]
	require.Greater(t, last.last, 50*time.Minute, "the sample reaches the end of the run")

	require.Len(t, sample(fold(diagramLines(recs[:10])), 60), 10, "under the limit nothing is left out")
}
