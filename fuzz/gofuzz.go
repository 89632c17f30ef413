//go:build gofuzz

package fuzz

// go-fuzz style entry points (dvyukov/go-fuzz, and libFuzzer drivers built
// with go-fuzz-build -libfuzzer): func(data []byte) int, returning 1 for an
// input worth keeping, 0 for a neutral one and -1 for one the corpus
// should not keep. A failing oracle panics, which every such driver
// reports as a crash. They call the same Check functions as the native
// targets in the test files. They are named FuzzGoXxx, not FuzzXxx: the
// native target FuzzXxx(*testing.F) lives in the same package, and
// OSS-Fuzz's compile_native_go_fuzzer finds a target's file by grepping the
// package for its name, so no other Go file may contain "FuzzXxx".
//
// Build one, for example: go-fuzz-build -tags gofuzz -func FuzzGoTXChain ./fuzz

import "fmt"

func goFuzz(err error) {
	if err != nil {
		panic(fmt.Sprintf("fuzz oracle failed: %v", err))
	}
}

// FuzzGoHeader wraps CheckHeader. Inputs shorter than a header only
// exercise the length check.
func FuzzGoHeader(data []byte) int {
	goFuzz(CheckHeader(data))
	if len(data) < 44 {
		return 0
	}
	return 1
}

// FuzzGoChain wraps CheckChain.
func FuzzGoChain(data []byte) int {
	if len(data) < 4 {
		return -1 // CheckChain ignores it
	}
	goFuzz(CheckChain(data))
	return 1
}

// FuzzGoTXChain wraps CheckTXChain.
func FuzzGoTXChain(data []byte) int {
	if len(data) < 6 {
		return -1 // no round: nothing reaches the TX queue
	}
	goFuzz(CheckTXChain(data))
	return 1
}

// FuzzGoCredit wraps CheckCredit.
func FuzzGoCredit(data []byte) int {
	if len(data) < 4 {
		return -1 // no operation
	}
	goFuzz(CheckCredit(data))
	return 1
}

// FuzzGoHybridConnect wraps CheckHybridConnect.
func FuzzGoHybridConnect(data []byte) int {
	goFuzz(CheckHybridConnect(data))
	if len(data) < 4+10 {
		return 0 // shorter than any CONNECT line Firecracker accepts
	}
	return 1
}

// FuzzGoTrace wraps CheckTrace.
func FuzzGoTrace(data []byte) int {
	goFuzz(CheckTrace(string(data)))
	return 1
}
