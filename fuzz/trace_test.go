package fuzz

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vsocklab/vsocklab/emu/lab"
)

func traceSeeds() []string {
	return []string{
		"# A comment.\nworld name=a device=firecracker-1.14 seed=7\n----\nworld a\n\n" +
			"init no-write-timeout ports=(10000, 10001)\nwriter total=1MiB\n----\n----\nline one\n\nline three\n----\n----\n" +
			"run 5s\n----\n\n# trailing comment\n",
		"world name=wedge device=cloud-hypervisor-50 kernel=linux-6.12.68\n----\nworld wedge: device cloud-hypervisor-50, guest linux-6.12.68, seed 1\n\n" +
			"timeline kinds=(packet, fault) limit=14\n----\n   0.000000000 device  rx REQUEST 2:1073741824->3:10000 buf_alloc=65536 fwd_cnt=0\n" +
			"   0.000000000 device  vsock: error reading TX packet: BufDescTooSmall\n",
		"a\n----\nold\n\nb\n----\n",
		"run\n----\n----\nx\n----\n",
		"world a=(1, 2\n----\n",
		"world a=\n----\n",
		"wor!d\n----\n",
		"world\n\n----\n",
		"a b=c=d e=(f) g=()\n----\n\r\n",
		"a\r\n----\r\nx\r\n",
		"a\n----\n----\n----\n----\n",
		// Regressions of round-trip bugs FuzzTrace found in trace.Format:
		// output holding "----" lines, a lone empty or spaced list value,
		// a line ending in two CRs.
		"a\n----\nx\n----\n",
		"a\n----\nx\n----\n----\ny\n",
		"a k=() l=(b c) m=((x)\n----\n",
		"a\n----\n0\r\r\n",
		// Files that validate, so that mutations reach the replay.
		"world\n----\n\nhostd\n----\n\ninit\nidle\n----\n\nboot\n----\n\nwait-started\n----\n\n" +
			"cycles n=2 dwell=1s\n----\n\nconnect port=10000\n----\n\nreport\n----\n",
		"world device=cloud-hypervisor-50 seed=3\n----\n\ninit no-write-timeout\nwriter total=64KiB size=16KiB every=1ms\n----\n\n" +
			"boot\n----\n\nrun 2s\n----\n\nsuspend\n----\n\nresume\n----\n\nwait-started cycle=1 timeout=1s\n----\n\n" +
			"timeline kinds=(fault) limit=3\n----\n\nsockets limit=2\n----\n\nfault drop-tx n=2\n----\n\nverdict wedge\n----\n",
	}
}

func FuzzTrace(f *testing.F) {
	for _, s := range traceSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		require.NoError(t, CheckTraceReplay(lab.T(t), text))
	})
}
