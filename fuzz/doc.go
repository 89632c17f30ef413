// Package fuzz holds the lab's fuzz targets and the oracles they check.
//
// Each target is a Check function that takes the fuzzer's bytes and returns
// an error when an oracle fails. The native targets (FuzzXxx in the test
// files, run with go test -fuzz) and the go-fuzz style entry points (build
// tag gofuzz) both call the same Check functions, so every driver tests the
// same thing. README.md lists the targets, how to run them natively and
// as libFuzzer binaries, and the modelled behaviours the oracles exclude.
package fuzz
