// Command vsocklab is the lab's front door.
//
//	vsocklab replay [flags] FILE...   replay trace files (the incident library)
//	vsocklab diff --a SETTING --b SETTING FILE[:SCENARIO]  one scenario under two configurations
//	vsocklab new [--kind K] FILE      write a commented trace file to start from
//	vsocklab serve --uds PATH [flags] run a world in real time behind a real Unix socket
//	vsocklab vhost-user --socket PATH --uds PATH [flags]  serve the device to a real kernel under QEMU
//	vsocklab profiles                 list the device and guest kernel profiles
//	vsocklab capdiff A.pcap B.pcap    the first packet where two vsock captures part
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "replay":
		code = replayMain(os.Args[2:])
	case "diff":
		code = diffMain(os.Args[2:])
	case "new":
		code = newMain(os.Args[2:])
	case "serve":
		code = serveMain(os.Args[2:])
	case "vhost-user":
		code = vhostUserMain(os.Args[2:])
	case "profiles":
		code = profilesMain()
	case "capdiff":
		code = capdiffMain(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "vsocklab: unknown command %q\n", os.Args[1])
		usage()
		code = 2
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  vsocklab replay [--check] [--json] [--pcap FILE] [--mermaid] [--seed N] [--rewrite] [--summary=false] FILE...
  vsocklab diff [--a SETTING]... [--b SETTING]... [--context N] FILE[:SCENARIO]
  vsocklab new [--kind wedge|resume|stream] [--force] FILE
  vsocklab serve --uds PATH [--device NAME] [--kernel NAME] [--workload SPEC] [--log KINDS]   (serve --help for signals)
  vsocklab vhost-user --socket PATH --uds PATH [--device NAME] [--cid N] [--buf-alloc BYTES] [--pcap FILE] [--log KINDS]
  vsocklab profiles
  vsocklab capdiff [--per-connection] A.pcap B.pcap
`)
}
