package device

import "strconv"

// pktErr is a chain parse failure, named and rendered as the modelled
// device's error enum prints with Rust's {:?}: "BufDescTooSmall",
// "HdrDescTooSmall(43)", "DescChainTooShortForPacket(44, 1024)". A value
// type, so that the accept path allocates nothing.
type pktErr struct {
	name string // "" means no error
	args [2]uint64
	n    uint8 // how many args are shown
	text string
}

func (e pktErr) ok() bool { return e.name == "" }

func (e pktErr) String() string {
	if e.n == 0 {
		if e.text != "" {
			return e.name + "(" + e.text + ")"
		}
		return e.name
	}
	s := e.name + "(" + strconv.FormatUint(e.args[0], 10)
	if e.n > 1 {
		s += ", " + strconv.FormatUint(e.args[1], 10)
	}
	return s + ")"
}

func perr(name string) pktErr               { return pktErr{name: name} }
func perr1(name string, a uint64) pktErr    { return pktErr{name: name, args: [2]uint64{a}, n: 1} }
func perr2(name string, a, b uint64) pktErr { return pktErr{name: name, args: [2]uint64{a, b}, n: 2} }
func perrText(name, text string) pktErr     { return pktErr{name: name, text: text} }

// Error names, as spelled by the sources (FC@v1.16.1 mod.rs VsockError,
// FC@v1.5.1 mod.rs, CH@v50.0 mod.rs VsockError, rust-vmm virtio-vsock
// src/lib.rs Error).
const (
	errUnreadable       = "UnreadableDescriptor"
	errUnwritable       = "UnwritableDescriptor"
	errMemBounds        = "GuestMemoryBounds"
	errMemMmap          = "GuestMemoryMmap"
	errMemCH            = "GuestMemory"
	errHdrDescTooSmall  = "HdrDescTooSmall"
	errHdrDescMissing   = "HdrDescMissing"
	errInvalidPktLen    = "InvalidPktLen"
	errBufDescMissing   = "BufDescMissing"
	errBufDescTooSmall  = "BufDescTooSmall"
	errChainShortHeader = "DescChainTooShortForHeader"
	errChainShortPacket = "DescChainTooShortForPacket"
	errChainOverflow    = "DescChainOverflow"
	errChainWalk        = "ChainWalk" // not a device error: the lab's walker could not describe the chain

	errRVChainTooShort = "DescriptorChainTooShort"
	errRVWriteOnly     = "UnexpectedWriteOnlyDescriptor"
	errRVReadOnly      = "UnexpectedReadOnlyDescriptor"
	errRVLenTooSmall   = "DescriptorLengthTooSmall"
	errRVLenTooLong    = "DescriptorLengthTooLong"
	errRVInvalidLen    = "InvalidHeaderLen"
	errRVMemory        = "InvalidMemoryAccess"
)
