package programs

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vsocklab/vsocklab/guestinit/labenv"
	"github.com/vsocklab/vsocklab/internal/pattern"
)

// orderCheck, given a stream as it grows, finds what checking the whole
// stream each time finds: in order, a wrong byte, one past a wrong byte.
func TestOrderCheckFollowsAGrowingStream(t *testing.T) {
	for _, wrong := range []int{-1, 0, 5000, 70000, 199999} {
		data := make([]byte, 200000)
		pattern.Fill(data, 0)
		if wrong >= 0 {
			data[wrong]++
		}
		var c orderCheck
		for _, n := range []int{0, 1, 4096, 4096, 65536, 70000, 70001, 150000, 200000} {
			require.Equal(t, labenv.CheckPattern(data[:n]), c.check(data[:n]), "wrong byte %d, %d bytes", wrong, n)
		}
	}
}
