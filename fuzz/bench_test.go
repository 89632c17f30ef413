package fuzz

import (
	"testing"

	"github.com/vsocklab/vsocklab/virtio"
)

// The benchmarks live apart from the targets' files: go-118-fuzz-build
// compiles a target's file with its own testing package, which has no B.

// BenchmarkTXChainSeeds: the cost of one CheckTXChain exec over the seed
// inputs, which bounds how long Go's minimizer spends on one new input.
func BenchmarkTXChainSeeds(b *testing.B) {
	seeds := txChainSeeds()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := CheckTXChain(seeds[i%len(seeds)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChainSeeds: the cost of one CheckChain exec.
func BenchmarkChainSeeds(b *testing.B) {
	seeds := [][]byte{
		chainImage(0, []virtio.Desc{{Addr: 0x200, Len: 44, Flags: virtio.DescFNext, Next: 1}, {Addr: 0x240, Len: 64}}),
		chainImage(1, []virtio.Desc{{Addr: 0x200, Len: 32, Flags: virtio.DescFIndirect}}),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := CheckChain(seeds[i%len(seeds)]); err != nil {
			b.Fatal(err)
		}
	}
}
