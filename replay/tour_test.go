package replay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/emu/lab"
)

// TestTourReplaysAsWritten replays every step of docs/tour.md, as
// `vsocklab replay --check docs/tour/*.trace` does: the outputs the tour
// shows are the ones the reader gets. -rewrite writes them back.
func TestTourReplaysAsWritten(t *testing.T) {
	files, err := filepath.Glob("../docs/tour/*.trace")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no trace files in docs/tour")
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			text, err := os.ReadFile(path)
			require.NoError(t, err)
			f, err := Parse(filepath.Base(path), string(text))
			require.NoError(t, err)
			res := RunFile(lab.T(t), f, Options{}) // every scenario, under -race too: they are short
			if *rewrite {
				require.False(t, raceEnabled, "-rewrite under -race")
				require.NoError(t, os.WriteFile(path, []byte(res.Text()), 0o644))
				return
			}
			require.Empty(t, res.Diff(), "replay differs from %s (go test ./replay -run TestTour -rewrite to accept)", path)
		})
	}
}
