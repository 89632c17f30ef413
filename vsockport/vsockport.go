// Package vsockport names the vsock ports this repository's programs agree
// on: guestinit serves its API on one and connects to the host's log
// collector on the other, and hostd dials and listens to match. Both
// programs import it; it imports nothing, so neither program reaches into
// the emulator through it.
package vsockport

const (
	// API is the guest port of init's API (status, metrics sessions).
	API = 10000
	// Log is the host port of hostd's log collector; init connects to it
	// from the guest with stdout and stderr.
	Log = 10001
)
