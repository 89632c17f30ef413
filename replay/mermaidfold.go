package replay

import (
	"fmt"
	"strings"
	"time"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// A long scenario logs thousands of exchanges (the 50-cycle resume matrix
// entry 8,604), most of them the same few packets again: a metrics line
// every second, a status check retried on the next port. The diagram folds
// such runs into a Mermaid loop drawn once, and when even the folded
// diagram is over its limit it samples the whole time span, so that what
// grows from the first cycle to the last stays visible.

// diagramLine is one drawable event: its time, its diagram line, and the
// key it repeats by (the line without its time and with every number
// blanked: the same exchange on the next port, or with a larger count, is
// the same pattern).
type diagramLine struct {
	at   time.Duration
	text string
	key  string
}

// diagramItem is a line, or a block of lines repeated reps times in a row
// (reps >= 2), drawn once as a loop.
type diagramItem struct {
	lines []diagramLine
	reps  int
	last  time.Duration // the time of the block's last repetition's last line
}

// weight is how many diagram lines the item takes.
func (it diagramItem) weight() int {
	if it.reps >= 2 {
		return len(it.lines) + 2 // loop and end
	}
	return len(it.lines)
}

// maxFoldBlock is the longest block of lines the diagram looks for
// repetitions of.
const maxFoldBlock = 24

func diagramLines(recs []engine.Record) []diagramLine {
	var out []diagramLine
	for _, r := range recs {
		line := mermaidLine(r)
		if line == "" {
			continue
		}
		out = append(out, diagramLine{at: r.At, text: line, key: patternKey(r)})
	}
	return out
}

// patternKey is the record without its time, with digit runs blanked.
func patternKey(r engine.Record) string {
	var b strings.Builder
	b.WriteString(r.Comp)
	b.WriteByte(' ')
	digits := false
	for _, c := range r.Text {
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	return b.String()
}

// fold run-length encodes lines: at each position, the block of up to
// maxFoldBlock lines whose consecutive repetitions cover the most lines
// (the shortest such block on a tie) becomes one item.
func fold(lines []diagramLine) []diagramItem {
	var out []diagramItem
	for i := 0; i < len(lines); {
		bestK, bestR := 1, 1
		for k := 1; k <= maxFoldBlock && i+2*k <= len(lines); k++ {
			r := 1
			for i+(r+1)*k <= len(lines) && sameBlock(lines, i, i+r*k, k) {
				r++
			}
			if r >= 2 && k*r > bestK*bestR {
				bestK, bestR = k, r
			}
		}
		n := bestK * bestR
		out = append(out, diagramItem{lines: lines[i : i+bestK], reps: bestR, last: lines[i+n-1].at})
		i += n
	}
	return out
}

func sameBlock(lines []diagramLine, a, b, k int) bool {
	for j := 0; j < k; j++ {
		if lines[a+j].key != lines[b+j].key {
			return false
		}
	}
	return true
}

// sampleChunk is how many diagram lines the sample draws in a row at each
// point of the time span it visits: enough for an exchange to read.
const sampleChunk = 8

// sample keeps items worth at most limit diagram lines (0: all), gap notes
// included: the first quarter of the budget goes to the scenario's start,
// in order; the rest to runs of about sampleChunk lines in equal steps of
// the remaining time span, each starting at the step's most repeated
// exchange (or its first line), so the diagram reaches the end and shows
// how the repetitions grow. Each gap becomes a note saying how many events
// it leaves out.
func sample(items []diagramItem, limit int) []diagramItem {
	total := 0
	for _, it := range items {
		total += it.weight()
	}
	if limit <= 0 || total <= limit {
		return items
	}
	keep := make([]bool, len(items))
	used, head := 0, 0
	for head < len(items) && used+items[head].weight()+1 <= limit/4 {
		keep[head] = true
		used += items[head].weight()
		head++
	}
	if rest := items[head:]; len(rest) > 0 {
		chunks := max((limit-used)/(sampleChunk+1), 1)
		start, end := rest[0].lines[0].at, rest[len(rest)-1].lines[0].at
		next := 0
		for j := 0; j < chunks && next < len(rest); j++ {
			t := start + time.Duration(float64(end-start)*float64(j)/float64(chunks))
			for next < len(rest) && rest[next].lines[0].at < t {
				next++
			}
			// Within the step, start at the most repeated exchange if
			// there is one: its count is what changes from step to step.
			tNext := start + time.Duration(float64(end-start)*float64(j+1)/float64(chunks))
			best := next
			for k := next; k < len(rest) && rest[k].lines[0].at < tNext; k++ {
				if rest[k].reps > rest[best].reps && rest[k].weight() <= sampleChunk {
					best = k
				}
			}
			next = best
			budget := min(sampleChunk, limit-used-1) // the gap note before
			for next < len(rest) && rest[next].weight() <= budget {
				keep[head+next] = true
				budget -= rest[next].weight()
				used += rest[next].weight()
				next++
			}
			used++
			if budget == sampleChunk { // an item too large for a chunk: skip it
				next++
			}
		}
	}
	var out []diagramItem
	skipped, from := 0, time.Duration(0)
	for i, it := range items {
		if !keep[i] {
			if skipped == 0 {
				from = it.lines[0].at
			}
			skipped += len(it.lines) * it.reps
			continue
		}
		if skipped > 0 {
			out = append(out, gapNote(skipped, from, items[i-1].last))
			skipped = 0
		}
		out = append(out, it)
	}
	if skipped > 0 {
		out = append(out, gapNote(skipped, from, items[len(items)-1].last))
	}
	return out
}

func gapNote(n int, from, to time.Duration) diagramItem {
	text := fmt.Sprintf("Note over G,H: %d events not drawn, %s to %s", n, seconds(from), seconds(to))
	return diagramItem{lines: []diagramLine{{at: from, text: text}}, reps: 1, last: to}
}

func seconds(d time.Duration) string { return strings.TrimSpace(engine.FormatTime(d)) }
