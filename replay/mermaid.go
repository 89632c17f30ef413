package replay

import (
	"fmt"
	"strings"

	"github.com/vsocklab/vsocklab/emu/engine"
)

// Mermaid renders a scenario's packet exchange, with the device's faults
// and the programs' log lines as notes, as a Mermaid sequence diagram for a
// design review. Consecutive repetitions of the same exchange (the same
// lines but for their numbers) are drawn once, in a loop that says how
// many times and until when; a diagram still over limit lines (0: no
// limit) keeps the scenario's start and samples the rest of its time span,
// with a note for each gap.
func (sc *Scenario) Mermaid(limit int) string {
	var b strings.Builder
	b.WriteString("sequenceDiagram\n")
	fmt.Fprintf(&b, "    title %s: %s / %s\n", sc.Report.Name, sc.Report.Device, sc.Report.Kernel)
	b.WriteString("    participant G as guest (kernel and init)\n")
	b.WriteString("    participant D as vsock device\n")
	b.WriteString("    participant H as host (hostd)\n")
	for _, it := range sample(fold(diagramLines(sc.records)), limit) {
		indent := "    "
		if it.reps >= 2 {
			fmt.Fprintf(&b, "    loop %d times, until %s\n", it.reps, seconds(it.last))
			indent = "        "
		}
		for _, l := range it.lines {
			fmt.Fprintf(&b, "%s%s\n", indent, l.text)
		}
		if it.reps >= 2 {
			b.WriteString("    end\n")
		}
	}
	return b.String()
}

// mermaidLine turns one log record into a diagram line, or "".
func mermaidLine(r engine.Record) string {
	at := strings.TrimSpace(engine.FormatTime(r.At))
	text := mermaidEscape(r.Text)
	switch {
	case r.Kind == engine.KindPacket && strings.HasPrefix(r.Text, "tx "):
		return fmt.Sprintf("G->>D: %s %s", at, text[3:])
	case r.Kind == engine.KindPacket && strings.HasPrefix(r.Text, "rx "):
		return fmt.Sprintf("D->>G: %s %s", at, text[3:])
	case r.Kind == engine.KindFault && r.Comp == "device":
		return fmt.Sprintf("Note over D: %s %s", at, text)
	case r.Kind == engine.KindHost:
		return fmt.Sprintf("Note over D,H: %s %s", at, text)
	case r.Kind == engine.KindProgram && r.Comp == "init":
		return fmt.Sprintf("Note over G: %s %s", at, text)
	case r.Kind == engine.KindProgram && r.Comp == "hostd":
		return fmt.Sprintf("Note over H: %s %s", at, text)
	case r.Kind == engine.KindWorld:
		return fmt.Sprintf("Note over G,H: %s %s", at, text)
	}
	return ""
}

// mermaidEscape keeps a log line from breaking the diagram's syntax.
func mermaidEscape(s string) string {
	return strings.NewReplacer(";", ",", "#", "no.", "\n", " ").Replace(s)
}
