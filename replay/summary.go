package replay

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
)

// WriteSummary prints one line per scenario, aligned in columns: file
// (its base name),
// scenario, device, kernel, verdict and the figure the verdict weighs most
// (see KeyFigure). A scenario stopped by a limit shows "error" as its
// verdict; one without a verdict directive shows "-".
func WriteSummary(w io.Writer, scs []*Scenario) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSCENARIO\tDEVICE\tKERNEL\tVERDICT\tKEY FIGURE")
	for _, sc := range scs {
		r := &sc.Report
		verdict := r.Verdict
		switch {
		case sc.Err != nil:
			verdict = "error"
		case verdict == "":
			verdict = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", filepath.Base(r.File), r.Name, r.Device, r.Kernel, verdict, KeyFigure(sc))
	}
	return tw.Flush()
}

// KeyFigure is the one number a reader of a scenario's verdict looks for:
// the limit that stopped it; else a stream's bytes delivered (and where
// they went wrong); else hostd's time-to-started across the resumes; else
// the workload's stdout, written against delivered and dropped; "-" when
// the scenario measured none of these.
func KeyFigure(sc *Scenario) string {
	r := &sc.Report
	switch {
	case sc.Err != nil:
		return sc.Err.Error()
	case r.StreamTotal > 0:
		st := r.Stream
		s := fmt.Sprintf("stream delivered %d of %d", st.Delivered, r.StreamTotal)
		if st.OutOfOrderAt >= 0 && st.Delivered > 0 {
			s += fmt.Sprintf(", wrong from byte %d", st.OutOfOrderAt)
		}
		return s
	case len(r.Resumes) > 0:
		rs := r.Resumes
		return fmt.Sprintf("%d resumes, time-to-started %s to %s (longest %s)", len(rs), rs[0], rs[len(rs)-1], slices.Max(rs))
	case r.WorkloadTotal > 0:
		st := r.Stdout
		s := fmt.Sprintf("stdout written %d of %d, delivered %d", st.Written, r.WorkloadTotal, st.Delivered)
		if st.DroppedByInit > 0 {
			s += fmt.Sprintf(", dropped %d", st.DroppedByInit)
		}
		if st.DroppedByDevice > 0 {
			s += fmt.Sprintf(", lost in the device %d", st.DroppedByDevice)
		}
		return s
	}
	return "-"
}
