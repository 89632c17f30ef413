//go:build race

package replay

// raceEnabled: this test binary has the race detector, which makes a
// replay some ten times slower; the tests then replay raceScenarios only.
const raceEnabled = true
