package plots

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/guest"
	"github.com/vsocklab/vsocklab/replay"
)

// scenarios are two of a resume matrix (one growing, one bounded) and a
// wedged writer with its stalled connection, as a replay measures them.
func scenarios() []*replay.Scenario {
	grow := &replay.Scenario{Report: replay.Report{File: "testdata/m.trace", Name: "grows", Verdict: "grows",
		Resumes: []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 350 * time.Millisecond, 750 * time.Millisecond}}}
	flat := &replay.Scenario{Report: replay.Report{File: "testdata/m.trace", Name: "flat", Verdict: "bounded",
		Resumes: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}}}
	conn := guest.Credit{Local: guest.Addr{CID: 3, Port: 1024}, Remote: guest.Addr{CID: 2, Port: 10001}, PeerBufAlloc: 65536}
	sent := conn
	sent.TxCnt, sent.Free = 65536, 0
	wedge := &replay.Scenario{End: time.Minute, Report: replay.Report{File: "testdata/w.trace", Name: "wedge/1", Verdict: "wedged"},
		Series: &replay.Series{
			Credit: []replay.CreditSample{{At: 0, Credit: conn}, {At: 20 * time.Millisecond, Credit: sent}},
			Stdout: []replay.StdoutSample{{At: 0}, {At: 20 * time.Millisecond, Written: 131072, Blocked: 0},
				{At: time.Minute, Written: 131072, Blocked: time.Minute - 20*time.Millisecond}},
		}}
	return []*replay.Scenario{grow, flat, wedge}
}

// Two files with a scenario of the same name: their pictures are told
// apart by the file's name.
func TestPictureNamesAreUnique(t *testing.T) {
	a, b := scenarios()[2], *scenarios()[2]
	b.Report.File = "testdata/other.trace"
	pics, err := Pictures([]*replay.Scenario{a, &b})
	require.NoError(t, err)
	var names []string
	for _, p := range pics {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"w-wedge_1-stdout", "w-wedge_1-credit", "other-wedge_1-stdout", "other-wedge_1-credit"}, names)
}

func TestPictures(t *testing.T) {
	pics, err := Pictures(scenarios())
	require.NoError(t, err)
	var names []string
	for _, p := range pics {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"m-resume", "wedge_1-stdout", "wedge_1-credit"}, names, "one resume picture per file; a scenario's name made safe for a file")
	for _, p := range pics {
		var a, b bytes.Buffer
		require.NoError(t, p.Write(&a, "png"))
		require.NoError(t, p.Write(&b, "png"))
		require.Equal(t, a.Bytes(), b.Bytes(), "%s: the same picture twice", p.Name)
		img, err := png.Decode(&a)
		require.NoError(t, err, p.Name)
		require.Equal(t, 672, img.Bounds().Dx(), "%s: 7 inches at 96 dpi", p.Name)

		var svg bytes.Buffer
		require.NoError(t, p.Write(&svg, "svg"))
		require.True(t, strings.Contains(svg.String(), "<svg"), p.Name)
	}
}

func TestBusiestConnection(t *testing.T) {
	a := guest.Credit{Local: guest.Addr{CID: 3, Port: 1}, Remote: guest.Addr{CID: 2, Port: 9}}
	b := guest.Credit{Local: guest.Addr{CID: 3, Port: 2}, Remote: guest.Addr{CID: 2, Port: 9}}
	a1, b1 := a, b
	a1.TxCnt, b1.TxCnt = 10, 4096
	name, got := busiest([]replay.CreditSample{{Credit: a}, {Credit: b}, {Credit: a1}, {Credit: b1}})
	require.Equal(t, "3:2->2:9", name)
	require.Len(t, got, 2)

	name, got = busiest([]replay.CreditSample{{Credit: a}})
	require.Empty(t, name, "a connection that sent nothing is not drawn")
	require.Empty(t, got)
}
