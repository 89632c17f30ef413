package fuzz

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed files under testdata/fuzz from the seeds in the code")

// codeSeeds are the seeds the native targets add with f.Add, by target.
// OSS-Fuzz and ClusterFuzzLite ignore f.Add, so the same seeds are
// committed as corpus files (seed-NN) and zipped from there.
func codeSeeds() map[string][]string {
	bs := func(seeds [][]byte) []string {
		out := make([]string, len(seeds))
		for i, s := range seeds {
			out[i] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		}
		return out
	}
	var traces []string
	for _, s := range traceSeeds() {
		traces = append(traces, fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s))
	}
	// Target names are spelt "Fuzz" + name so that each stays in one Go
	// file of the package (TestTargetNamesUnique).
	return map[string][]string{
		"Fuzz" + "TXChain":       bs(txChainSeeds()),
		"Fuzz" + "Credit":        bs(creditSeeds()),
		"Fuzz" + "HybridConnect": bs(hybridSeeds()),
		"Fuzz" + "Trace":         traces,
	}
}

// TestSeedCorpusFiles keeps testdata/fuzz/<target>/seed-NN equal to the
// seeds in the code; run with -update-corpus after changing them.
func TestSeedCorpusFiles(t *testing.T) {
	for target, seeds := range codeSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, f := range old {
				require.NoError(t, os.Remove(f))
			}
			require.NoError(t, os.MkdirAll(dir, 0o755))
		}
		for i, want := range seeds {
			name := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			if *updateCorpus {
				require.NoError(t, os.WriteFile(name, []byte(want), 0o644))
				continue
			}
			got, err := os.ReadFile(name)
			require.NoError(t, err, "run go test ./fuzz -run TestSeedCorpusFiles -update-corpus")
			require.Equal(t, want, string(got), "%s is stale: run go test ./fuzz -run TestSeedCorpusFiles -update-corpus", name)
		}
		extra, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("seed-%02d", len(seeds))))
		require.Empty(t, extra, "stale seed files in %s: run with -update-corpus", dir)
	}
}

// TestTargetNamesUnique: OSS-Fuzz's compile_native_go_fuzzer greps the
// package directory for a target's name and needs exactly one Go file to
// hold it (the go-fuzz entry points are therefore FuzzGoXxx).
func TestTargetNamesUnique(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	texts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		texts[f] = string(b)
	}
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	n := 0
	for f, text := range texts {
		for _, m := range decl.FindAllStringSubmatch(text, -1) {
			n++
			var holders []string
			for g, other := range texts {
				if strings.Contains(other, m[1]) {
					holders = append(holders, g)
				}
			}
			require.Equal(t, []string{f}, holders, "%s must appear in exactly one Go file of the package", m[1])
		}
	}
	require.GreaterOrEqual(t, n, 6)
}
