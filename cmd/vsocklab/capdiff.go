package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/vsocklab/vsocklab/internal/conform"
	"github.com/vsocklab/vsocklab/replay"
)

// capdiffMain compares two LINKTYPE_VSOCK captures (a real guest's through
// the vhost-user back-end, a lab run's) and shows the first packet where
// they part, after normalising what must differ: times, and the guest's
// ports, which a real kernel picks at random. Exit 0: they agree; 1: they
// part; 2: bad input.
func capdiffMain(args []string) int {
	fs := flag.NewFlagSet("capdiff", flag.ContinueOnError)
	perConn := fs.Bool("per-connection", false, "group packets by connection (host port) before comparing, keeping their order within each")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: vsocklab capdiff [--per-connection] A.pcap B.pcap")
		return 2
	}
	var caps [2][]conform.Normalised
	for i, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "capdiff: %v\n", err)
			return 2
		}
		ps, err := replay.ReadPcap(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "capdiff: %s: %v\n", path, err)
			return 2
		}
		caps[i] = conform.Normalise(ps, *perConn)
	}
	i, diff := conform.FirstDifference(caps[0], caps[1])
	if i < 0 {
		fmt.Printf("capdiff: the captures agree: %d packets\n", len(caps[0]))
		return 0
	}
	fmt.Printf("capdiff: A (%s, %d packets) and B (%s, %d packets) agree on %d packets, then part at %s\n",
		fs.Arg(0), len(caps[0]), fs.Arg(1), len(caps[1]), i, diff)
	return 1
}
