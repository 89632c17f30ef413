package conform

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse: a case list from a command line parses or fails with an
// error, never a panic, and what parses formats back to a list that
// parses to the same cases.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"w1,h65536,n", "r100x7,b262144,c4096", "w0", "r1x", "x", ",", Format(Suite(3)), "o,u,x,l1,k,tc,tl,ts,tr,tv,p70,f12x129,a400000", "t", "tcx", "f1x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(Format(cs))
		require.NoError(t, err)
		require.Equal(t, cs, back)
	})
}
