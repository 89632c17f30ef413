// Package plots draws replayed scenarios as pictures, PNG or SVG, with
// gonum.org/v1/plot: the time-to-started of every suspend/resume cycle for
// each configuration of a file's matrix; a scenario's stdout (bytes written
// and delivered, how long the waiting write has waited) over virtual time;
// and the credit of its busiest guest connection over virtual time. It
// reads what the replay measured (replay.Report, and replay.Series with
// replay.Options.Plot), never the printed output. `vsocklab replay --plot
// DIR` writes them.
package plots

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/vsocklab/vsocklab/replay"
)

// Picture is one figure: one panel, or several stacked that share their
// time axis.
type Picture struct {
	Name   string // file name without extension
	panels []*plot.Plot
}

// Size of every picture: small enough for a README, large enough to read.
const (
	width       = 7 * vg.Inch
	panelHeight = 2.4 * vg.Inch
)

// Write renders the picture in format, "png" or "svg".
func (p Picture) Write(w io.Writer, format string) error {
	h := panelHeight * vg.Length(len(p.panels))
	if len(p.panels) == 1 {
		h = 3.6 * vg.Inch
	}
	c, err := draw.NewFormattedCanvas(width, h, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(p.panels), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(6)}
	grid := make([][]*plot.Plot, len(p.panels))
	for i, pl := range p.panels {
		grid[i] = []*plot.Plot{pl}
	}
	for i, cs := range plot.Align(grid, tiles, dc) {
		p.panels[i].Draw(cs[0])
	}
	_, err = c.WriteTo(w)
	return err
}

// Pictures are the figures of scs: a resume picture for every file with
// scenarios that resumed, and, for every scenario replayed with
// Options.Plot, a stdout picture when it ran a writer and a credit picture
// when a guest connection carried data.
func Pictures(scs []*replay.Scenario) ([]Picture, error) {
	var out []Picture
	var files []string
	byFile := map[string][]*replay.Scenario{}
	for _, sc := range scs {
		if len(sc.Report.Resumes) == 0 {
			continue
		}
		if byFile[sc.Report.File] == nil {
			files = append(files, sc.Report.File)
		}
		byFile[sc.Report.File] = append(byFile[sc.Report.File], sc)
	}
	for _, f := range files {
		p, err := Resumes(byFile[f])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	// A scenario's pictures are named after it; two files may use one name.
	names := map[string]int{}
	for _, sc := range scs {
		names[sc.Report.Name]++
	}
	for _, sc := range scs {
		if sc.Series == nil {
			continue
		}
		prefix := fileName(sc.Report.Name)
		if names[sc.Report.Name] > 1 {
			prefix = fileBase(sc.Report.File) + "-" + prefix
		}
		if len(sc.Series.Stdout) > 0 {
			p, err := Stdout(sc)
			if err != nil {
				return nil, err
			}
			p.Name = prefix + "-stdout"
			out = append(out, p)
		}
		if p, ok, err := Credit(sc); err != nil {
			return nil, err
		} else if ok {
			p.Name = prefix + "-credit"
			out = append(out, p)
		}
	}
	return out, nil
}

// WriteDir writes every picture of scs into dir in each format, and
// returns the paths written.
func WriteDir(dir string, scs []*replay.Scenario, formats ...string) ([]string, error) {
	pics, err := Pictures(scs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range pics {
		for _, format := range formats {
			path := filepath.Join(dir, p.Name+"."+format)
			f, err := os.Create(path)
			if err != nil {
				return paths, err
			}
			err = p.Write(f, format)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return paths, fmt.Errorf("%s: %w", path, err)
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

// Resumes draws time-to-started per cycle, one line per scenario: the
// configurations of a suspend/resume matrix side by side.
func Resumes(scs []*replay.Scenario) (Picture, error) {
	p := newPanel("time-to-started after each resume: "+filepath.Base(scs[0].Report.File), "resume cycle", "time-to-started (s)")
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(7)
	p.Legend.ThumbnailWidth = vg.Points(18)
	var lines []*plotter.Line
	for i, sc := range scs {
		xys := make(plotter.XYs, len(sc.Report.Resumes))
		for j, d := range sc.Report.Resumes {
			xys[j] = plotter.XY{X: float64(j + 1), Y: d.Seconds()}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return Picture{}, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		l.Width = vg.Points(1.5)
		p.Add(l)
		lines = append(lines, l)
		p.Legend.Add(fmt.Sprintf("%s (%s)", sc.Report.Name, sc.Report.Verdict), l)
	}
	p.X.Min = 1
	// Below, the same lines up to two seconds: a bounded resume starts
	// within one, and a growing one's first cycles show where it parts.
	zoom := newPanel("", "resume cycle", "time-to-started (s), up to 2 s")
	for _, l := range lines {
		zoom.Add(l)
	}
	zoom.X.Min, zoom.X.Max = p.X.Min, p.X.Max
	zoom.Y.Min, zoom.Y.Max = 0, 2
	p.X.Label.Text = ""
	return Picture{Name: fileBase(scs[0].Report.File) + "-resume", panels: []*plot.Plot{p, zoom}}, nil
}

// Stdout draws the workload's stdout over virtual time: bytes written,
// delivered to hostd and dropped by init above; below, how long the write
// waiting for room in the pipe has waited.
func Stdout(sc *replay.Scenario) (Picture, error) {
	s := sc.Series.Stdout
	end := window(sc.End, stdoutSettled(s))
	s = upTo(s, end, func(x replay.StdoutSample) time.Duration { return x.At })
	top := newPanel(title(sc, "stdout"), "", "KiB")
	bytes := []struct {
		name  string
		value func(replay.StdoutSample) int64
		show  bool
	}{
		{"written by the workload", func(s replay.StdoutSample) int64 { return s.Written }, true},
		{"delivered to hostd", func(s replay.StdoutSample) int64 { return s.Delivered }, true},
		{"dropped by init", func(s replay.StdoutSample) int64 { return s.DroppedByInit }, s[len(s)-1].DroppedByInit > 0},
	}
	for i, b := range bytes {
		if !b.show {
			continue
		}
		xys := make(plotter.XYs, 0, len(s)+1)
		for _, x := range s {
			xys = append(xys, plotter.XY{X: x.At.Seconds(), Y: float64(b.value(x)) / 1024})
		}
		xys = append(xys, plotter.XY{X: end.Seconds(), Y: xys[len(xys)-1].Y})
		if err := addStep(top, b.name, xys, i); err != nil {
			return Picture{}, err
		}
	}
	headroom(top)

	bottom := newPanel("", "virtual time (s)", "write blocked (s)")
	xys := make(plotter.XYs, 0, len(s))
	for _, x := range s {
		xys = append(xys, plotter.XY{X: x.At.Seconds(), Y: x.Blocked.Seconds()})
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return Picture{}, err
	}
	l.Color, l.Width = plotutil.Color(3), vg.Points(1.5)
	bottom.Add(l)
	bottom.Legend.Add("the waiting stdout write has waited", l)
	headroom(bottom)
	sameTime(end, top, bottom)
	return Picture{Name: fileName(sc.Report.Name) + "-stdout", panels: []*plot.Plot{top, bottom}}, nil
}

// Credit draws the credit of the scenario's busiest guest connection (the
// one that sent the most bytes) over virtual time: above, the bytes in
// flight against the peer's buf_alloc; below, tx_cnt against the
// peer's fwd_cnt, whose gap is the bytes in flight. ok is false when no
// connection sent data.
func Credit(sc *replay.Scenario) (Picture, bool, error) {
	conn, samples := busiest(sc.Series.Credit)
	if len(samples) == 0 {
		return Picture{}, false, nil
	}
	last := samples[len(samples)-1]
	settled := last.At
	if last.Free == 0 { // no credit left at the end: the whole run is the story
		settled = -1
	}
	end := window(sc.End, settled)
	series := func(v func(replay.CreditSample) uint32) plotter.XYs {
		xys := make(plotter.XYs, 0, len(samples)+1)
		for _, c := range samples {
			xys = append(xys, plotter.XY{X: c.At.Seconds(), Y: float64(v(c)) / 1024})
		}
		return append(xys, plotter.XY{X: end.Seconds(), Y: xys[len(xys)-1].Y})
	}
	top := newPanel(title(sc, "credit of "+conn), "", "KiB")
	if err := addStep(top, "peer's buf_alloc", series(func(c replay.CreditSample) uint32 { return c.PeerBufAlloc }), 0); err != nil {
		return Picture{}, false, err
	}
	if err := addStep(top, "in flight (tx_cnt - peer_fwd_cnt)", series(func(c replay.CreditSample) uint32 { return c.InFlight() }), 1); err != nil {
		return Picture{}, false, err
	}
	headroom(top)
	bottom := newPanel("", "virtual time (s)", "KiB")
	if err := addStep(bottom, "tx_cnt (sent)", series(func(c replay.CreditSample) uint32 { return c.TxCnt }), 2); err != nil {
		return Picture{}, false, err
	}
	if err := addStep(bottom, "peer's fwd_cnt (consumed)", series(func(c replay.CreditSample) uint32 { return c.PeerFwdCnt }), 3); err != nil {
		return Picture{}, false, err
	}
	headroom(bottom)
	sameTime(end, top, bottom)
	return Picture{Name: fileName(sc.Report.Name) + "-credit", panels: []*plot.Plot{top, bottom}}, true, nil
}

// busiest picks the connection whose tx_cnt went highest (the first such
// on a tie) and returns its name and samples; none when nothing was sent.
func busiest(all []replay.CreditSample) (string, []replay.CreditSample) {
	sent := map[string]uint32{}
	var order []string
	for _, c := range all {
		k := connName(c)
		if _, ok := sent[k]; !ok {
			order = append(order, k)
		}
		sent[k] = max(sent[k], c.TxCnt)
	}
	best := ""
	for _, k := range order {
		if sent[k] > 0 && (best == "" || sent[k] > sent[best]) {
			best = k
		}
	}
	if best == "" {
		return "", nil
	}
	var out []replay.CreditSample
	for _, c := range all {
		if connName(c) == best {
			out = append(out, c)
		}
	}
	return best, out
}

func connName(c replay.CreditSample) string { return c.Local.String() + "->" + c.Remote.String() }

func newPanel(titleText, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = titleText
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// addStep adds a line that holds each value until the next sample.
func addStep(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.StepStyle = plotter.PostStep
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// window is the time a picture spans: the whole scenario (end) while
// something is still waiting at its end (settled < 0), else up to a
// quarter past the last change, so a burst at the start is not lost in
// the idle minute after it.
func window(end, settled time.Duration) time.Duration {
	if settled < 0 {
		return end
	}
	return min(end, max(settled+settled/4, 10*time.Millisecond))
}

// stdoutSettled is when the stdout samples last moved, or -1 when a write
// is still waiting at the end.
func stdoutSettled(s []replay.StdoutSample) time.Duration {
	if s[len(s)-1].Blocked > 0 {
		return -1
	}
	at := s[0].At
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if a.Written != b.Written || a.Delivered != b.Delivered || a.DroppedByInit != b.DroppedByInit || b.Blocked > 0 || a.Blocked > 0 {
			at = b.At
		}
	}
	return at
}

// upTo keeps the samples at or before end.
func upTo[S any](s []S, end time.Duration, at func(S) time.Duration) []S {
	n := 0
	for n < len(s) && at(s[n]) <= end {
		n++
	}
	return s[:max(n, 1)]
}

// headroom starts p's y axis at 0 and leaves the top third of the panel
// to the legend, above the lines.
func headroom(p *plot.Plot) {
	p.Y.Min = 0
	p.Y.Max = max(p.Y.Max*1.45, 1)
}

// sameTime gives stacked panels one time axis, from 0 to end.
func sameTime(end time.Duration, ps ...*plot.Plot) {
	for _, p := range ps {
		p.X.Min, p.X.Max = 0, max(end.Seconds(), p.X.Max)
	}
}

func title(sc *replay.Scenario, what string) string {
	t := fmt.Sprintf("%s: %s\n%s / %s", sc.Report.Name, what, sc.Report.Device, sc.Report.Kernel)
	if sc.Report.Verdict != "" {
		t += ", verdict " + sc.Report.Verdict
	}
	return t
}

func fileBase(path string) string { return fileName(strings.TrimSuffix(filepath.Base(path), ".trace")) }

// fileName keeps a scenario's name safe as a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
